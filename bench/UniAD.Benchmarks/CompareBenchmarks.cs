using System.Diagnostics;
using System.Globalization;
using UniAD.Core.Metrics;
using static TorchSharp.torch;

/// <summary>
/// Group <c>compare</c>: the library against another implementation's command, ALTERNATED in one run so that both
/// see the same machine. Each round measures the library in this process (<see cref="PaperPipeline"/>: its own
/// median over <c>--runs</c> after the first round's warm-up) and runs the other command once, which prints
/// <c>key value</c> lines (milliseconds) with the same keys as <see cref="PaperPipeline.Keys"/>; odd rounds run the
/// library first, even rounds the other command first. The table gives the median over rounds of each side and the
/// ratio other / library (how many times faster the library is). Lines of the command's output that are not
/// <c>key number</c> pairs are ignored; a key it does not print is shown as "-".
/// </summary>
internal static class CompareBenchmarks
{
    /// <summary>The goals of issue 13: the ratio (other / library) each key should reach.</summary>
    private static readonly Dictionary<string, double> Goals = new(StringComparer.Ordinal)
    {
        [PaperPipeline.ScoreBatch8] = 5,
        [PaperPipeline.TrainStepReconstruction] = 5,
        [PaperPipeline.LatencyBatch1] = 3,
    };

    public static void Run(string? command, int rounds, int runs, int warmup, Func<string, string?> text)
    {
        if (string.IsNullOrWhiteSpace(command))
        {
            throw new ArgumentException("--only compare needs --other \"COMMAND\": a shell command that prints 'key milliseconds' lines (docs/benchmarks.md, group compare).");
        }

        using var pipeline = new PaperPipeline(PaperPipeline.ParseRuntime(text("--runtime")), get_num_threads());
        Console.WriteLine($"library: {pipeline.Description}");
        Console.WriteLine($"other:   {command}");
        var ours = new Dictionary<string, List<double>>(StringComparer.Ordinal);
        var theirs = new Dictionary<string, List<double>>(StringComparer.Ordinal);
        for (int round = 1; round <= Math.Max(1, rounds); round++)
        {
            var order = round % 2 == 1 ? new[] { "library", "other" } : new[] { "other", "library" };
            foreach (var side in order)
            {
                var watch = Stopwatch.StartNew();
                var figures = side == "library" ? pipeline.Measure(runs, round == 1 ? warmup : 1) : RunOther(command);
                Add(side == "library" ? ours : theirs, figures);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"round {round} {side,-7} ({watch.Elapsed.TotalSeconds:F0} s, load {Load()}): {string.Join(", ", figures.Select(f => $"{f.Key} {f.Value:F1}"))}"));
            }
        }

        Console.WriteLine();
        Console.WriteLine("| measurement | library (median of rounds) | other (median of rounds) | other / library | goal |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (var key in PaperPipeline.Keys.Concat(theirs.Keys.Except(PaperPipeline.Keys)))
        {
            double? a = ours.TryGetValue(key, out var la) ? Timing.Median(Sorted(la)) : null;
            double? b = theirs.TryGetValue(key, out var lb) ? Timing.Median(Sorted(lb)) : null;
            string ratio = a is { } x && b is { } y ? (y / x).ToString("F2", CultureInfo.InvariantCulture) + "x" : "-";
            string goal = Goals.TryGetValue(key, out var g) ? string.Create(CultureInfo.InvariantCulture, $">= {g:F0}x{(a is { } x2 && b is { } y2 ? (y2 / x2 >= g ? " met" : " missed") : "")}") : "";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {key} | {Show(a)} | {Show(b)} | {ratio} | {goal} |"));
        }

        using var self = Process.GetCurrentProcess();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"peak working set of this process (the library side): {self.PeakWorkingSet64 / 1048576.0:F0} MiB"));
    }

    private static string Show(double? v) => v is { } x ? x.ToString("F1", CultureInfo.InvariantCulture) : "-";

    private static double[] Sorted(List<double> values)
    {
        var a = values.ToArray();
        Array.Sort(a);
        return a;
    }

    private static void Add(Dictionary<string, List<double>> into, IReadOnlyDictionary<string, double> figures)
    {
        foreach (var (key, value) in figures)
        {
            if (!into.TryGetValue(key, out var list))
            {
                into[key] = list = new List<double>();
            }

            list.Add(value);
        }
    }

    internal static string Load() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "?";

    /// <summary>Runs <paramref name="command"/> with /bin/sh (cmd.exe on Windows) and parses its <c>key number</c> lines.</summary>
    /// <exception cref="InvalidOperationException">The command failed (its exit code and the end of its error output are in the message).</exception>
    internal static Dictionary<string, double> RunOther(string command)
    {
        bool windows = OperatingSystem.IsWindows();
        var start = new ProcessStartInfo(windows ? "cmd.exe" : "/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(windows ? "/c" : "-c");
        start.ArgumentList.Add(command);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start '{command}'.");
        var errors = process.StandardError.ReadToEndAsync();
        var output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            var tail = errors.Result.Length > 2000 ? errors.Result[^2000..] : errors.Result;
            throw new InvalidOperationException($"'{command}' exited with {process.ExitCode}: {tail}");
        }

        var figures = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 2 && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                figures[parts[0]] = value;
            }
        }

        return figures;
    }
}

/// <summary>
/// The paper's pipeline (EfficientNet-B4 layers 1..4 with random weights, MFCN at stride 16, the paper's
/// reconstruction: 272 x 14 x 14, width 256, 4 + 4 layers, 7 x 7 mask, jitter, dropout 0.1) timed the way the
/// <c>compare</c> group's keys define: what the authors' code does for the same step.
/// </summary>
internal sealed class PaperPipeline : IDisposable
{
    /// <summary>B x 3 x 224 x 224 normalized images -> map (224 x 224) and image score, batch 8, eval, no grad: ms per image.</summary>
    public const string ScoreBatch8 = "score-batch8-ms-per-image";

    /// <summary>The same for one image: ms.</summary>
    public const string LatencyBatch1 = "latency-batch1-ms";

    /// <summary>A training step of the reconstruction from given features (jitter, dropout, MSE, backward, clip 0.1, AdamW), batch 8: ms per image.</summary>
    public const string TrainStepReconstruction = "train-step-recon-only-batch8-ms-per-image";

    /// <summary>The authors' whole training iteration: the frozen backbone and neck, then the reconstruction step, batch 8: ms per image.</summary>
    public const string TrainStepWithBackbone = "train-step-batch8-ms-per-image";

    /// <summary>The keys in the order the table prints them.</summary>
    public static readonly string[] Keys = { ScoreBatch8, LatencyBatch1, TrainStepReconstruction, TrainStepWithBackbone };

    private const int Batch = 8;
    private readonly UniAD.Core.Models.UniADModel model;
    private readonly Tensor images8;
    private readonly Tensor images1;
    private readonly Tensor features8;
    private readonly List<TorchSharp.Modules.Parameter> parameters;
    private readonly TorchSharp.Modules.AdamW optimizer;
    private readonly string? onnxFolder;
    private readonly UniAD.Onnx.OnnxAnomalyScorer? onnx;
    private readonly float[] values8 = Array.Empty<float>();
    private readonly float[] values1 = Array.Empty<float>();

    /// <param name="runtime">"torchsharp" (the default: <c>UniADModel.forward</c>, float32, parity-tested), "onnxruntime" (the exported
    /// model on ONNX Runtime's CPU provider, graph optimisations on: maps within about 3e-5 of TorchSharp's) or "onnxruntime-int8"
    /// (the export with <c>OnnxQuantization.DynamicInt8</c>: the reconstruction's linear layers in int8) for the scoring keys.</param>
    /// <param name="threads">ONNX Runtime's intra-op threads (the torch threads' count).</param>
    public PaperPipeline(string runtime, int threads)
    {
        Runtime = runtime;
        model = ScoringBenchmarks.PaperModel();
        model.eval();
        images8 = randn(new long[] { Batch, 3, 224, 224 }, generator: new TorchSharp.torch.Generator(3));
        images1 = images8.narrow(0, 0, 1).contiguous();
        var o = model.Reconstruction.Options;
        features8 = randn(new long[] { Batch, o.InputChannels, o.FeatureSize.Height, o.FeatureSize.Width }, generator: new TorchSharp.torch.Generator(1));
        parameters = model.Reconstruction.parameters().ToList();
        optimizer = optim.AdamW(parameters, lr: 1e-4, weight_decay: 1e-4);
        if (runtime.StartsWith("onnxruntime", StringComparison.Ordinal))
        {
            onnxFolder = Directory.CreateTempSubdirectory("uniad-bench-compare-").FullName;
            var path = Path.Combine(onnxFolder, "paper.onnx");
            using (var detector = new UniAD.Core.Detection.AnomalyDetectorBuilder().Build())
            {
                UniAD.Core.Export.OnnxExport.ExportOnnx(detector, path, new UniAD.Core.Export.OnnxExportOptions
                {
                    Quantization = runtime == "onnxruntime-int8" ? UniAD.Core.Export.OnnxQuantization.DynamicInt8 : UniAD.Core.Export.OnnxQuantization.None,
                });
            }

            onnx = UniAD.Onnx.OnnxAnomalyScorer.Load(path, new UniAD.Onnx.OnnxScorerOptions { IntraOpThreads = threads });
            values8 = images8.contiguous().data<float>().ToArray();
            values1 = images1.contiguous().data<float>().ToArray();
        }
    }

    /// <summary>The scoring runtime: "torchsharp", "onnxruntime" or "onnxruntime-int8".</summary>
    public string Runtime { get; }

    public string Description => $"UniAD.Core, TorchSharp {typeof(TorchSharp.torch).Assembly.GetName().Version}, {get_num_threads()} torch threads, scoring on {Runtime}, training on TorchSharp, float32, EfficientNet-B4 (random weights) + MFCN + paper reconstruction";

    public static string ParseRuntime(string? value) => value switch
    {
        null or "torchsharp" => "torchsharp",
        "onnxruntime" => "onnxruntime",
        "onnxruntime-int8" => "onnxruntime-int8",
        _ => throw new ArgumentException($"--runtime needs torchsharp, onnxruntime or onnxruntime-int8, got '{value}'."),
    };

    /// <summary>Medians (ms) of <paramref name="runs"/> timed calls of each measurement after <paramref name="warmup"/> untimed ones.</summary>
    public Dictionary<string, double> Measure(int runs, int warmup) => new(StringComparer.Ordinal)
    {
        [ScoreBatch8] = Timing.MedianMs(runs, warmup, () => Score(images8)) / Batch,
        [LatencyBatch1] = Timing.MedianMs(runs, warmup, () => Score(images1)),
        [TrainStepReconstruction] = Timing.MedianMs(runs, warmup, () => TrainStep(null)) / Batch,
        [TrainStepWithBackbone] = Timing.MedianMs(runs, warmup, () => TrainStep(images8)) / Batch,
    };

    /// <summary>Images -> map and image score (max of the 16 x 16 average-pooled map), as <c>AnomalyDetector</c> scores a batch.</summary>
    private void Score(Tensor images)
    {
        if (onnx is not null)
        {
            onnx.ScoreNormalized(images.shape[0] == 1 ? values1 : values8, (int)images.shape[0]);
            return;
        }

        using var scope = NewDisposeScope();
        using var _ = no_grad();
        model.eval();
        using var output = model.forward(images);
        var map = output.Pred.contiguous().cpu().data<float>().ToArray();
        int h = (int)output.Pred.shape[2], w = (int)output.Pred.shape[3], plane = h * w;
        for (int i = 0; i < output.Pred.shape[0]; i++)
        {
            MapScore.Of(map.AsSpan(i * plane, plane), h, w, ImageScoreKind.PooledMax, 16);
        }
    }

    /// <summary>One training step of the reconstruction; with <paramref name="images"/>, the frozen backbone and neck first.</summary>
    private void TrainStep(Tensor? images)
    {
        using var scope = NewDisposeScope();
        var features = images is null ? features8 : model.ExtractFeatures(images);
        model.Reconstruction.train();
        optimizer.zero_grad();
        var rec = model.Reconstruction.Reconstruct(features);
        var loss = UniAD.Core.Reconstruction.AnomalyMap.Loss(rec, features);
        loss.backward();
        nn.utils.clip_grad_norm_(parameters, 0.1);
        optimizer.step();
        model.Reconstruction.eval();
    }

    public void Dispose()
    {
        onnx?.Dispose();
        if (onnxFolder is not null)
        {
            Directory.Delete(onnxFolder, recursive: true);
        }

        optimizer.Dispose();
        features8.Dispose();
        images1.Dispose();
        images8.Dispose();
        model.Dispose();
    }
}
