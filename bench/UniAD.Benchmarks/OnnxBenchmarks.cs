using System.Diagnostics;
using System.Globalization;
using UniAD.Core.Detection;
using UniAD.Core.Export;
using UniAD.Onnx;
using static TorchSharp.torch;

/// <summary>
/// Scoring speed of the two runtimes on the paper configuration (EfficientNet-B4 layers 1..4, 224 x 224, the paper's
/// reconstruction; random weights): TorchSharp's <see cref="AnomalyDetector.ScoreTensor"/> on a prepared batch against
/// UniAD.Onnx's <see cref="OnnxAnomalyScorer.ScoreNormalized"/> on the same values (the exported model on ONNX Runtime's
/// CPU provider), both on the same number of threads. The two are ALTERNATED run by run (A B A B ...), so that a change
/// of load on the machine hits both alike; per-image medians, their ratio and the load average are printed. ONNX Runtime's
/// idle threads do not spin (<see cref="OnnxScorerOptions.AllowSpinning"/> false, so that they leave the cores to libtorch's
/// OpenMP threads in the next TorchSharp run) unless <c>--onnx-spinning</c> is given.
/// </summary>
internal static class OnnxBenchmarks
{
    public static void Run(int runs, int warmup, int threads, bool spinning)
    {
        threads = threads > 0 ? threads : 2;
        set_num_threads(threads);
        var folder = Directory.CreateTempSubdirectory("uniad-bench-onnx-").FullName;
        try
        {
            using var detector = new AnomalyDetectorBuilder().Build(); // the paper configuration, random weights
            var path = Path.Combine(folder, "paper.onnx");
            var clock = Stopwatch.StartNew();
            detector.ExportOnnx(path);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"export of the paper network: {clock.Elapsed.TotalSeconds:F1} s, {new FileInfo(path).Length / 1048576.0:F1} MiB"));
            using var scorer = OnnxAnomalyScorer.Load(path, new OnnxScorerOptions { IntraOpThreads = threads, AllowSpinning = spinning });
            Console.WriteLine($"torch threads {get_num_threads()}, ONNX Runtime intra-op threads {threads}, spinning {(spinning ? "on" : "off")} ({string.Join(", ", OnnxExecutionProviders.Available())}; scoring on {scorer.ExecutionProvider})");
            Console.WriteLine($"load average before (1, 5, 15 min): {LoadAverage()}");

            foreach (var batch in new[] { 1, 8 })
            {
                using var images = randn(new long[] { batch, 3, 224, 224 }, generator: new TorchSharp.torch.Generator(3));
                var values = images.contiguous().data<float>().ToArray();

                void Torch()
                {
                    using var scope = NewDisposeScope();
                    detector.ScoreTensor(images);
                }

                void Ort() => scorer.ScoreNormalized(values, batch);

                // The same numbers first (maps at the input size, scores), then the alternating timing.
                var expected = detector.ScoreTensor(images);
                var actual = scorer.ScoreNormalized(values, batch);
                double mapDiff = 0, scoreDiff = 0;
                for (int i = 0; i < batch; i++)
                {
                    var e = expected[i].Map.Values;
                    var a = actual[i].Map.Values;
                    for (int j = 0; j < e.Length; j++)
                    {
                        mapDiff = Math.Max(mapDiff, Math.Abs(e[j] - a[j]));
                    }

                    scoreDiff = Math.Max(scoreDiff, Math.Abs(expected[i].Score - actual[i].Score));
                }

                for (int i = 0; i < warmup; i++)
                {
                    Torch();
                    Ort();
                }

                var torchTimes = new double[Math.Max(runs, 1)];
                var ortTimes = new double[torchTimes.Length];
                for (int i = 0; i < torchTimes.Length; i++)
                {
                    var sw = Stopwatch.StartNew();
                    Torch();
                    torchTimes[i] = sw.Elapsed.TotalMilliseconds;
                    sw.Restart();
                    Ort();
                    ortTimes[i] = sw.Elapsed.TotalMilliseconds;
                }

                Array.Sort(torchTimes);
                Array.Sort(ortTimes);
                double torchMedian = Timing.Median(torchTimes), ortMedian = Timing.Median(ortTimes);
                Timing.Report($"TorchSharp ScoreTensor, paper network, batch {batch}", batch, torchMedian);
                Timing.Report($"ONNX Runtime ScoreNormalized, same batch {batch}", batch, ortMedian);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{"  fastest runs (TorchSharp / ONNX Runtime)",-58} {torchTimes[0] / batch,9:F1} / {ortTimes[0] / batch:F1} ms/image"));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{"  ratio TorchSharp / ONNX Runtime (medians)",-58} {torchMedian / ortMedian,9:F2}x   (max |diff| map {mapDiff:E1}, score {scoreDiff:E1})"));
                Console.WriteLine($"  load average after batch {batch}: {LoadAverage()}");
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";
}
