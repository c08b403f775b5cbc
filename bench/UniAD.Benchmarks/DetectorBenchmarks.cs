using System.Diagnostics;
using System.Globalization;
using UniAD.Core.Data;
using UniAD.Core.Detection;

/// <summary>
/// The detector end to end: scoring latency of the paper-size pipeline (EfficientNet-B4, random weights),
/// training throughput with and without the feature cache, and a soak run (2,000 images scored in one
/// process, memory after the first 100 against memory at the end).
/// </summary>
internal static class DetectorBenchmarks
{
    public static void Run(int runs, int warmup)
    {
        var root = Directory.CreateTempSubdirectory("uniad-bench-det-").FullName;
        try
        {
            SyntheticDefects.Generate(root, new SyntheticDatasetOptions { ImageSize = 224, TrainPerClass = 16, TestGoodPerClass = 4, TestPerDefect = 1, Seed = 3 });
            var train = MvtecAd.Open(root, DatasetSplit.Train);
            var paths = MvtecAd.Open(root, DatasetSplit.Test).Samples.Select(s => s.ImagePath).ToList();

            using (var paper = new AnomalyDetectorBuilder().Build())
            {
                foreach (var batch in new[] { 1, 8 })
                {
                    var files = paths.Take(batch).ToList();
                    var ms = Timing.MedianMs(runs, warmup, () => paper.ScoreBatch(files, batch));
                    Timing.Report($"score, paper network + EfficientNet-B4, batch {batch} (decode..map)", batch, ms);
                }

                foreach (var cache in new[] { true, false })
                {
                    var options = new TrainingOptions { Epochs = 1, BatchSize = 8, CacheFeatures = cache };
                    paper.Train(train, options); // warm-up (and, with the cache, its filling)
                    var sw = Stopwatch.StartNew();
                    paper.Train(train, options with { Epochs = 2 });
                    double perImage = sw.Elapsed.TotalMilliseconds / (2.0 * train.Samples.Count);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{(cache ? "train, paper network, feature cache" : "train, paper network, backbone every step"),-58} {1000 / perImage,9:F2} images/s ({perImage,7:F1} ms/image)"));
                }

                // The row above builds a new in-memory cache in every Train call, so each timed call also
                // extracts the features once (64 backbone passes over 128 training steps). With a cache
                // folder the warm-up's features are read back instead: the training steps alone.
                var onDisk = new TrainingOptions { Epochs = 1, BatchSize = 8, CacheFeatures = true, FeatureCacheDirectory = Path.Combine(root, "feature-cache") };
                paper.Train(train, onDisk); // fills the folder
                var watch = Stopwatch.StartNew();
                paper.Train(train, onDisk with { Epochs = 2 });
                double stepPerImage = watch.Elapsed.TotalMilliseconds / (2.0 * train.Samples.Count);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"train, paper network, feature cache filled on disk",-58} {1000 / stepPerImage,9:F2} images/s ({stepPerImage,7:F1} ms/image)"));
            }

            using var small = new AnomalyDetectorBuilder().WithBackbone("resnet18", new[] { 1, 2 }).WithInputSize(128, 128).WithNeckStride(8)
                .WithReconstruction(o => o with { HiddenDim = 64, NumHeads = 4, NumEncoderLayers = 1, NumDecoderLayers = 1, FeedForwardDim = 128 }).Build();
            var soak = Enumerable.Range(0, 2000).Select(i => paths[i % paths.Count]).ToList();
            long after100 = 0;
            int done = 0;
            foreach (var _ in small.ScoreStream(soak, batchSize: 8))
            {
                if (++done == 100)
                {
                    GC.Collect();
                    after100 = Process.GetCurrentProcess().WorkingSet64;
                }
            }

            GC.Collect();
            long end = Process.GetCurrentProcess().WorkingSet64;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"soak: 2,000 images scored; working set after 100: {after100 / 1048576.0:F0} MiB, at the end: {end / 1048576.0:F0} MiB ({(end - after100) * 100.0 / after100:+0.0;-0.0}%)"));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
