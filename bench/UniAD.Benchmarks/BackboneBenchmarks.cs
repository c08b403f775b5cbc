using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using UniAD.Core.Backbones;
using static TorchSharp.torch;

/// <summary>EfficientNet-B4 feature extraction at 224 x 224: the truncated extractor (blocks 0..21) against the full network.</summary>
internal static class BackboneBenchmarks
{
    public static void Run(int runs, int warmup)
    {
        using var extractor = EfficientNetFeatureExtractor.FromLayers("efficientnet-b4", new[] { 1, 2, 3, 4 });
        using var full = new EfficientNet(EfficientNetSpec.Get("b4"), includeHead: true);
        full.eval();
        foreach (var batch in new[] { 1, 8 })
        {
            using var images = randn(new long[] { batch, 3, 224, 224 }, generator: new Generator(2));
            var truncated = Timing.MedianMs(runs, warmup, () =>
            {
                using var scope = NewDisposeScope();
                extractor.forward(images);
            });
            Timing.Report($"EfficientNet-B4 features (blocks 0..21), batch {batch}", batch, truncated);
            Report("  peak working set so far");

            var whole = Timing.MedianMs(runs, warmup, () =>
            {
                using var scope = NewDisposeScope();
                using var _ = no_grad();
                full.forward(images);
            });
            Timing.Report($"EfficientNet-B4 full network (32 blocks, head, fc), batch {batch}", batch, whole);
            Report("  peak working set so far");
        }
    }

    private static void Report(string what)
    {
        using var process = Process.GetCurrentProcess();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{what,-58} {process.PeakWorkingSet64 / (1024.0 * 1024.0),9:F0} MiB"));
    }
}
