using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using UniAD.Core;
using UniAD.Core.Data;
using static TorchSharp.torch;

/// <summary>
/// Decoding and preprocessing 900 x 900 PNGs to 224 x 224 (sequential and parallel), and epochs read from the
/// feature cache (memory and disk) for 1,000 cached 272 x 14 x 14 feature maps. Files go to a temporary folder
/// that is deleted afterwards. At most 5 timed runs: one run is a whole pass over the images.
/// </summary>
internal static class DataBenchmarks
{
    private const int PngCount = 64;
    private const int CachedImages = 1000;

    public static void Run(int runs, int warmup)
    {
        runs = Math.Clamp(runs, 1, 5);
        warmup = Math.Min(warmup, 1);
        var root = Path.Combine(Path.GetTempPath(), "uniad-bench-data-" + Guid.NewGuid().ToString("N"));
        try
        {
            Preprocessing(Path.Combine(root, "png900"), runs, warmup);
            FeatureCacheEpochs(Path.Combine(root, "small"), Path.Combine(root, "cache"), runs, warmup);
        }
        finally
        {
            if (Directory.Exists(root))
            {
                Directory.Delete(root, recursive: true);
            }
        }
    }

    private static void Preprocessing(string folder, int runs, int warmup)
    {
        var sw = Stopwatch.StartNew();
        SyntheticDefects.Generate(folder, new SyntheticDatasetOptions
        {
            ImageSize = 900,
            TrainPerClass = PngCount / 4,
            TestGoodPerClass = 0,
            TestPerDefect = 0,
            PngCompressionLevel = 6,
            Seed = 1,
        });
        var source = MvtecAd.Open(folder, DatasetSplit.Train);
        long bytes = source.Samples.Sum(s => new FileInfo(s.ImagePath).Length);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"data: {source.Samples.Count} synthetic 900 x 900 RGB PNGs (zlib 6, {bytes / source.Samples.Count / 1024.0:F0} KiB each) written in {sw.Elapsed.TotalSeconds:F1} s"));

        var paths = source.Samples.Select(s => s.ImagePath).ToList();
        var decodeOnly = Timing.MedianMs(runs, warmup, () =>
        {
            foreach (var path in paths)
            {
                _ = ImageDecoder.Decode(path);
            }
        });
        Timing.ReportRate("decode only (SkiaSharp), 1 thread", paths.Count, decodeOnly);

        var decoded = ImageDecoder.Decode(paths[0]);
        var resize = Timing.MedianMs(runs * 20, warmup, () => ImagePreprocessor.Resize(decoded, 224, 224));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"PIL bilinear resize 900 -> 224 alone, 1 thread",-58} {resize,9:F2} ms per image"));

        foreach (var (name, parallelism, prefetch) in new[] { ("decode + preprocess to 224, 1 thread, no prefetch", 1, false), ($"decode + preprocess to 224, {Environment.ProcessorCount} threads, prefetch", 0, true) })
        {
            var loader = new ImageBatchLoader(source, new LoaderOptions { BatchSize = 16, MaxDegreeOfParallelism = parallelism, Prefetch = prefetch, LoadMasks = false });
            var ms = Timing.MedianMs(runs, warmup, () =>
            {
                foreach (var batch in loader.Batches())
                {
                    batch.Dispose();
                }
            });
            Timing.ReportRate(name, paths.Count, ms);
        }
    }

    private static void FeatureCacheEpochs(string folder, string cacheFolder, int runs, int warmup)
    {
        SyntheticDefects.Generate(folder, new SyntheticDatasetOptions { ImageSize = 32, TrainPerClass = CachedImages / 4, TestGoodPerClass = 0, TestPerDefect = 0, Seed = 2 });
        var source = MvtecAd.Open(folder, DatasetSplit.Train);
        using var generator = new Generator(3);

        // A stand-in backbone with the paper's output shape (272 x 14 x 14): the epochs never call it.
        Tensor Extractor(Tensor images) => randn(new long[] { images.shape[0], 272, 14, 14 }, generator: generator);
        var preprocess = new PreprocessOptions { InputSize = new GridSize(64, 64) };
        var sw = Stopwatch.StartNew();
        var disk = new FeatureCache(Extractor, "bench-random-272x14x14", new FeatureCacheOptions { Directory = cacheFolder, KeepInMemory = false, Preprocess = preprocess });
        disk.Populate(source);
        long fileBytes = Directory.GetFiles(disk.Folder!).Sum(f => new FileInfo(f).Length);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"feature cache: {source.Samples.Count} images, 272 x 14 x 14 float32 each ({fileBytes / 1e6:F0} MB on disk), filled in {sw.Elapsed.TotalSeconds:F1} s"));

        var memory = new FeatureCache(Extractor, "bench-random-272x14x14", new FeatureCacheOptions { Directory = cacheFolder, KeepInMemory = true, Preprocess = preprocess });
        memory.Populate(source); // loads the files into memory

        int epoch = 0;
        foreach (var (name, cache) in new[] { ("feature-cache epoch, memory, batch 64, shuffled", memory), ("feature-cache epoch, disk (warm page cache), batch 64, shuffled", disk) })
        {
            var ms = Timing.MedianMs(runs, warmup, () =>
            {
                foreach (var batch in cache.Batches(source, 64, shuffle: true, seed: 133, epoch: epoch++))
                {
                    batch.Dispose();
                }
            });
            Timing.ReportRate(name, source.Samples.Count, ms);
        }
    }
}
