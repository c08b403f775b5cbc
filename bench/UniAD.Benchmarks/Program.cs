// UniAD.Core benchmarks: prints timings of the library's hot paths on this machine.
// Usage: dotnet run -c Release --project bench/UniAD.Benchmarks -- [--only GROUP] [options]
//   groups: reconstruction, backbone, scoring, stages, data, detector, metrics (all of them when --only is absent), real, memory-bank, onnx, compare and quantization (only with --only)
//   reconstruction, backbone, scoring, data, detector: [--runs N] [--warmup N] [--threads N]   (median over runs after a warm-up)
//   any group: [--keep-freed-memory]   (NativeAllocator.KeepFreedMemory() first: glibc reuses freed pages)
//   onnx: [--runs N] [--warmup N] [--threads N] [--onnx-spinning]   (TorchSharp and ONNX Runtime scoring the paper network, alternated; 2 threads by default)
//   stages: [--runs N] [--warmup N] [--threads N]   (where the time goes: scoring per stage, a training step per phase, batch 8)
//   compare: --other "COMMAND" [--rounds 5] [--runtime torchsharp|onnxruntime|onnxruntime-int8] [--runs N] [--warmup N] [--threads N]   (the library and another implementation alternated in one run)
//   quantization: --model FILE [--data-root DIR] [--threads N]   (a saved detector on TorchSharp, ONNX Runtime float32 and int8: AUROC on real test images)
//   metrics: [--metric-runs N] [--images N] [--size N] [--seed N]          (each run in its own process)
//   real: [--data-root DIR] [--classes a,b] [--minutes 30] [--backbone mlnet-resnet18] [--recipe cpu|paper] [--weights FILE]
//         [--curve-points 6] [--seed 133] [--width 256] [--layers 4]   (one model over the real and synthetic classes for a time budget; see RealBenchmarks)
using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using UniAD.Core.Reconstruction;
using static TorchSharp.torch;

var images = ArgValue(args, "--images", 1725);
var size = ArgValue(args, "--size", 224);
var seed = ArgValue(args, "--seed", 1);
if (ArgText(args, "--metrics-child") is { } measurement)
{
    MetricsBenchmarks.Child(measurement, images, size, seed);
    return;
}

var runs = ArgValue(args, "--runs", 20);
var warmup = ArgValue(args, "--warmup", 3);
var threads = ArgValue(args, "--threads", 0);
var groups = new Dictionary<string, Action>(StringComparer.Ordinal)
{
    ["reconstruction"] = () => ReconstructionBenchmarks.Run(runs, warmup),
    ["backbone"] = () => BackboneBenchmarks.Run(runs, warmup),
    ["scoring"] = () => ScoringBenchmarks.Run(runs, warmup),
    ["data"] = () => DataBenchmarks.Run(runs, warmup),
    ["detector"] = () => DetectorBenchmarks.Run(runs, warmup),
    ["metrics"] = () => MetricsBenchmarks.Run(ArgValue(args, "--metric-runs", 3), images, size, seed),
    ["onnx"] = () => OnnxBenchmarks.Run(runs, warmup, threads, args.Contains("--onnx-spinning")),
    ["stages"] = () => StageBenchmarks.Run(runs, warmup),
    ["compare"] = () => CompareBenchmarks.Run(ArgText(args, "--other"), ArgValue(args, "--rounds", 5), runs, warmup, name => ArgText(args, name)),
    ["quantization"] = () => QuantizationBenchmarks.Run(name => ArgText(args, name), threads),
    ["real"] = () => RealBenchmarks.Run(name => ArgText(args, name), (name, fallback) => ArgValue(args, name, fallback)),
    ["memory-bank"] = () => MemoryBankBenchmarks.Run(name => ArgText(args, name)),
    ["bank-stages"] = () => BankStageBenchmarks.Run(name => ArgText(args, name)),
};
var onlyOnRequest = new HashSet<string>(StringComparer.Ordinal) { "real", "memory-bank", "bank-stages", "onnx", "compare", "quantization" }; // a training run or a fit of many minutes; an export and a second runtime; another implementation's command; a saved model
var only = ArgText(args, "--only");
if (only is not null && !groups.ContainsKey(only))
{
    throw new ArgumentException($"--only needs one of {string.Join(", ", groups.Keys)}, got '{only}'.");
}

var keepFreedMemory = args.Contains("--keep-freed-memory") && UniAD.Core.Native.NativeAllocator.KeepFreedMemory();
if (threads > 0)
{
    set_num_threads(threads);
}

Console.WriteLine($"UniAD.Core benchmarks | {Environment.ProcessorCount} logical cores, torch threads {get_num_threads()}, " +
                  $"TorchSharp {typeof(torch).Assembly.GetName().Version}, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}");
Console.WriteLine($"runs {runs}, warm-up {warmup}; timed figures are the median over runs; native allocator keeps freed memory: {(keepFreedMemory ? "yes" : "no")}");
if (File.Exists("/proc/loadavg"))
{
    Console.WriteLine($"load average at start (1, 5, 15 min): {string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3))}");
}

Console.WriteLine();

foreach (var (name, run) in groups)
{
    if (only == name || (only is null && !onlyOnRequest.Contains(name)))
    {
        Console.WriteLine($"== {name}");
        run();
        Console.WriteLine();
    }
}

static string? ArgText(string[] args, string name)
{
    int i = Array.IndexOf(args, name);
    return i < 0 ? null : i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{name} needs a value.");
}

static int ArgValue(string[] args, string name, int fallback)
{
    int i = Array.IndexOf(args, name);
    if (i < 0)
    {
        return fallback;
    }

    if (i + 1 >= args.Length || !int.TryParse(args[i + 1], NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) || value < 0)
    {
        throw new ArgumentException($"{name} needs a non-negative integer, got '{(i + 1 < args.Length ? args[i + 1] : "nothing")}'.");
    }

    return value;
}

/// <summary>Timing helpers shared by the benchmark groups.</summary>
internal static class Timing
{
    public static double MedianMs(int runs, int warmup, Action action) => Median(Runs(runs, warmup, action));

    /// <summary>Times <paramref name="runs"/> calls after <paramref name="warmup"/> untimed ones; milliseconds, sorted ascending.</summary>
    public static double[] Runs(int runs, int warmup, Action action)
    {
        for (int i = 0; i < warmup; i++)
        {
            action();
        }

        var times = new double[Math.Max(runs, 1)];
        for (int i = 0; i < times.Length; i++)
        {
            var sw = Stopwatch.StartNew();
            action();
            times[i] = sw.Elapsed.TotalMilliseconds;
        }

        Array.Sort(times);
        return times;
    }

    public static double Median(double[] sorted) =>
        sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;

    public static void Report(string name, int batch, double ms) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name,-58} {ms,9:F1} ms  ({ms / batch,7:F1} ms/image)"));

    public static void ReportRate(string name, int images, double ms) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name,-58} {ms,9:F1} ms  ({images * 1000.0 / ms,7:F1} images/s)"));
}

/// <summary>The paper-size reconstruction network (272 x 14 x 14 in, 4 + 4 layers, width 256).</summary>
internal static class ReconstructionBenchmarks
{
    public static void Run(int runs, int warmup)
    {
        const int batch = 8;
        var options = new ReconstructionOptions();
        using var model = new UniADReconstruction(options);
        using var input = randn(new long[] { batch, options.InputChannels, options.FeatureSize.Height, options.FeatureSize.Width }, generator: new Generator(1));

        model.eval();
        var forward = Timing.Runs(runs, warmup, () =>
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            using var output = model.forward(input);
        });
        Timing.Report("reconstruction forward, eval, batch 8 (incl. pred)", batch, Timing.Median(forward));
        Timing.Report("  fastest run", batch, forward[0]);

        model.train();
        var parameters = model.parameters().ToList();
        using var optimizer = optim.AdamW(parameters, lr: 1e-4, weight_decay: 1e-4);
        var step = Timing.Runs(runs, warmup, () =>
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var rec = model.Reconstruct(input);
            var loss = AnomalyMap.Loss(rec, input);
            loss.backward();
            nn.utils.clip_grad_norm_(parameters, 0.1);
            optimizer.step();
        });
        Timing.Report("reconstruction training step, batch 8 (jitter, AdamW, clip)", batch, Timing.Median(step));
        Timing.Report("  fastest run", batch, step[0]);
    }
}
