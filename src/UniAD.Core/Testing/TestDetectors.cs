using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;

namespace UniAD.Core.Testing;

/// <summary>
/// A small real detector for consumers' unit tests: built in seconds on the CPU from generated images, with nothing
/// downloaded and no weights, data or GPU needed. It is a memory-bank detector over a seeded, randomly initialised
/// ResNet-18 stem, fitted on generated normal images of one synthetic texture (<see cref="ClassName"/>) and calibrated on
/// other generated normal images, so it gives verdicts: <see cref="NormalImage"/> is normal and
/// <see cref="DefectiveImage"/> is anomalous. Deterministic: one seed gives the same detector and the same scores on
/// every run of one machine. Use it where your test needs a real <see cref="AnomalyDetector"/> (or
/// <see cref="IImageScorer"/>) end to end: saving, loading, ONNX export, heat maps, your own code around the verdict.
/// It is not a model of your parts: for behaviour you choose (a given score, an error), fake <see cref="IImageScorer"/>.
/// </summary>
public static class TestDetectors
{
    /// <summary>The class the tiny detector was fitted on ("stripes": an oblique grating).</summary>
    public const string ClassName = "stripes";

    /// <summary>The side of the generated images and the detector's input, in pixels.</summary>
    public const int ImageSize = 64;

    private const SyntheticClass Kind = SyntheticClass.Stripes;

    /// <summary>
    /// Builds, fits and calibrates the tiny detector (a few seconds on one core). The caller disposes it.
    /// Its image threshold sits at the highest score of 8 held-out normal images.
    /// </summary>
    /// <param name="seed">Seeds the backbone's weights, the generated images and the bank.</param>
    /// <param name="loggerFactory">Logging, or null for none.</param>
    /// <param name="cancellationToken">Cancels the fit.</param>
    /// <returns>A fitted, calibrated detector on the CPU.</returns>
    public static AnomalyDetector Tiny(int seed = 0, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        string root = Directory.CreateTempSubdirectory("uniad-test-detector-").FullName;
        try
        {
            SyntheticDefects.Generate(root, new SyntheticDatasetOptions
            {
                Classes = new[] { Kind },
                ImageSize = ImageSize,
                TrainPerClass = 12,
                TestGoodPerClass = 8,
                TestPerDefect = 0,
                Seed = seed,
                MaxDegreeOfParallelism = 1,
            }, cancellationToken: cancellationToken);
            var builder = new AnomalyDetectorBuilder()
                .WithBackbone("resnet18", new[] { 1, 2 })
                .WithInputSize(ImageSize, ImageSize)
                .WithMemoryBank(o => o with { CoresetRatio = 0.25, Seed = seed })
                .WithImageScore(ImageScoreKind.PlainMax)
                .WithSeed(seed);
            if (loggerFactory is not null)
            {
                builder = builder.WithLogging(loggerFactory);
            }

            var detector = builder.Build();
            try
            {
                detector.Train(MvtecAd.Open(root, DatasetSplit.Train), cancellationToken: cancellationToken);
                var heldOut = MvtecAd.Open(root, DatasetSplit.Test);
                double highest = detector.ScoreBatch(heldOut.Samples.Select(s => s.ImagePath), cancellationToken: cancellationToken).Max(r => r.Score);
                detector.SetThresholds(highest);
                return detector;
            }
            catch
            {
                detector.Dispose();
                throw;
            }
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>A generated normal image of <see cref="ClassName"/>, <see cref="ImageSize"/> pixels a side.</summary>
    /// <param name="seed">Which image (any value: the same seed gives the same image).</param>
    /// <returns>The image.</returns>
    public static RgbImage NormalImage(int seed) => SyntheticDefects.Render(Kind, null, ImageSize, ImageSeed(seed)).Image;

    /// <summary>The normal image of <paramref name="seed"/> with a defect painted on it (a tinted region, a scratch or a missing piece).</summary>
    /// <param name="seed">Which image and which defect.</param>
    /// <returns>The image and its defect mask (one byte per pixel, 1 on the defect).</returns>
    public static (RgbImage Image, byte[] Mask) DefectiveImage(int seed)
    {
        var defect = Defects[(int)((uint)seed % Defects.Length)];
        var (image, mask) = SyntheticDefects.Render(Kind, defect, ImageSize, ImageSeed(seed));
        return (image, mask!);
    }

    /// <summary>Writes an image (one of these, or any other) as a PNG file, for code under test that takes paths.</summary>
    /// <param name="path">The file to write (its folder must exist).</param>
    /// <param name="image">The image.</param>
    public static void WritePng(string path, RgbImage image)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(image);
        ImageWriter.WritePng(path, image);
    }

    private static readonly SyntheticDefect[] Defects = { SyntheticDefect.ColourChange, SyntheticDefect.Scratch, SyntheticDefect.MissingPart };

    // Far from the seeds Generate derives for the fitted images (a different stream of the same generator family).
    private static long ImageSeed(int seed) => unchecked((0x7E57L << 32) ^ (uint)seed);
}
