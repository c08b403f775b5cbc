using SkiaSharp;
using UniAD.Core;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;
using UniAD.Core.Tests.Detection;
using UniAD.Core.Tests.Export;
using UniAD.Core.Tiling;
using Xunit.Abstractions;

namespace UniAD.Onnx.Tests;

/// <summary>
/// OnnxAnomalyScorer against AnomalyDetector on the same images, for the same exported detector: untiled at other image
/// sizes, tiled, calibrated (labels and masks), with per-class reference maps (in the graph and at the runtime) and
/// mlnet-resnet18 with its real ImageNet weights. Every map value at the original size and every score within 1e-4
/// absolute or relative; the largest differences are printed.
/// </summary>
public sealed class ScorerParityTests(SyntheticData data, ITestOutputHelper output) : IClassFixture<SyntheticData>, IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("uniad-onnx-scorer-").FullName;

    [Fact]
    public void Untiled_maps_at_the_original_size_and_scores_match_the_detector()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        OnnxParity.RandomizeBatchNorms(detector, seed: 21);
        using var scorer = ScorerParity.ExportAndLoad(detector, root, "untiled.onnx");
        var images = ScorerParity.Images(3, (64, 64), (97, 71), (150, 120), (48, 200), (31, 33));
        var single = ScorerParity.Max(images.Select(i => ScorerParity.Compare(detector.Score(i.Image, i.Name), scorer.Score(i.Image, i.Name), i.Name)));
        var batch = ScorerParity.CompareAll(
            detector.ScoreBatch(images.Select(i => i.Image).ToList(), images.Select(i => (string?)i.Name).ToList()),
            scorer.ScoreBatch(images.Select(i => i.Image).ToList(), images.Select(i => (string?)i.Name).ToList()),
            "batch of 5");
        output.WriteLine($"untiled (64 x 64 input; images 64x64, 97x71, 150x120, 48x200, 31x33), one by one: {single}");
        output.WriteLine($"untiled, one batch of 5: {batch}");
        Assert.Null(scorer.Calibration);
        Assert.Null(scorer.Score(images[0].Image).IsAnomalous);
    }

    [Fact]
    public async Task Every_entry_point_gives_the_result_of_the_decoded_image()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        OnnxParity.RandomizeBatchNorms(detector, seed: 22);
        detector.SetThresholds(0.5, 0.4);
        using var scorer = ScorerParity.ExportAndLoad(detector, root, "entry-points.onnx");
        var paths = data.Test.Samples.Take(5).Select(s => s.ImagePath).ToList();
        var expected = paths.Select(p => scorer.Score(ImageDecoder.Decode(p), p)).ToList();
        var diff = ScorerParity.CompareAll(detector.ScoreBatch(paths, batchSize: 2), expected, "files against the detector");
        output.WriteLine($"5 PNG files, detector ScoreBatch against the scorer: {diff}");

        void Same(AnomalyResult a, AnomalyResult b, string what)
        {
            Assert.True(a.Score == b.Score && a.Map.Values.SequenceEqual(b.Map.Values) && a.IsAnomalous == b.IsAnomalous, $"{what} differs from Score(RgbImage).");
        }

        for (int i = 0; i < paths.Count; i++)
        {
            var bytes = File.ReadAllBytes(paths[i]);
            Same(expected[i], scorer.Score(paths[i]), "Score(path)");
            using (var stream = new MemoryStream(bytes))
            {
                Same(expected[i], scorer.Score(stream, paths[i]), "Score(Stream)");
            }

            Same(expected[i], scorer.Score(bytes, paths[i]), "Score(byte[])");
            using (var bitmap = SKBitmap.Decode(bytes))
            {
                Same(expected[i], scorer.Score(bitmap, paths[i]), "Score(SKBitmap)");
                Same(expected[i], await scorer.ScoreAsync(bitmap, paths[i]), "ScoreAsync(SKBitmap)");
            }

            Same(expected[i], await scorer.ScoreAsync(paths[i]), "ScoreAsync(path)");
            await using (var file = new FileStream(paths[i], FileMode.Open, FileAccess.Read, FileShare.Read, 4096, useAsync: true))
            {
                Same(expected[i], await scorer.ScoreAsync(file, paths[i]), "ScoreAsync(Stream)");
            }

            Same(expected[i], await scorer.ScoreAsync(bytes, paths[i]), "ScoreAsync(byte[])");
        }

        // Batches: results in input order, each equal to its image scored alone (float precision: one run of several).
        var streamed = scorer.ScoreStream(paths, batchSize: 2).ToList();
        var many = new List<AnomalyResult>();
        await foreach (var r in scorer.ScoreManyAsync(paths, batchSize: 3))
        {
            many.Add(r);
        }

        ScorerParity.CompareAll(expected, streamed, "ScoreStream");
        ScorerParity.CompareAll(expected, many, "ScoreManyAsync");
        ScorerParity.CompareAll(expected, scorer.ScoreBatch(paths, batchSize: 4), "ScoreBatch(paths)");

        // The first bad file in input order stops a batch as itself; cancellation is honoured.
        var missing = Path.Combine(root, "missing.png");
        var broken = Path.Combine(root, "broken.png");
        File.WriteAllText(broken, "not an image");
        Assert.Equal(missing, Assert.Throws<FileNotFoundException>(() => scorer.ScoreBatch(new[] { paths[0], missing, broken })).FileName);
        Assert.Equal(broken, Assert.Throws<ImageFileException>(() => scorer.ScoreBatch(new[] { broken, missing })).FilePath);
        await Assert.ThrowsAsync<FileNotFoundException>(() => scorer.ScoreAsync(missing));
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => scorer.ScoreAsync(paths[0], cancellationToken: cancelled.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in scorer.ScoreManyAsync(paths, 2, cancellationToken: cancelled.Token))
            {
            }
        });
    }

    [Fact]
    public void Tiled_scoring_stitches_like_the_detector_on_images_larger_than_the_tile()
    {
        // The last case scores the stitched map with a wide, flat 3 x 24 window (the runtime's MapScore, not the graph).
        var cases = new[]
        {
            ("resize to 160 wide, tiles every 48, margin 8", new TilingOptions { Stride = new GridSize(48, 48), Margin = 8, ResizeWidth = 160 }, (4, 4)),
            ("full resolution, tiles spread every 40 x 56", new TilingOptions { Stride = new GridSize(40, 56), Placement = TilePlacement.Spread }, (4, 4)),
            ("resize to 160 wide, tiles every 48, a 3 x 24 score window", new TilingOptions { Stride = new GridSize(48, 48), ResizeWidth = 160 }, (3, 24)),
        };
        var images = ScorerParity.Images(5, (200, 130), (170, 170), (90, 260), (40, 50));
        foreach (var (what, tiling, (poolHeight, poolWidth)) in cases)
        {
            using var detector = SyntheticData.TinyBuilder().WithTiling(tiling).WithImageScore(ImageScoreKind.PooledMax, poolHeight, poolWidth).Build();
            OnnxParity.RandomizeBatchNorms(detector, seed: 23);
            using var scorer = ScorerParity.ExportAndLoad(detector, root, "tiled.onnx");
            Assert.Equal(tiling, scorer.Info.Tiling);
            Assert.Equal((poolHeight, poolWidth), (scorer.Info.ScorePoolHeight, scorer.Info.ScorePoolSize));
            var diff = ScorerParity.Max(images.Select(i => ScorerParity.Compare(detector.Score(i.Image, i.Name), scorer.Score(i.Image, i.Name), $"{what}, {i.Name}")));
            var batch = ScorerParity.CompareAll(
                detector.ScoreBatch(images.Select(i => i.Image).ToList(), images.Select(i => (string?)i.Name).ToList()),
                scorer.ScoreBatch(images.Select(i => i.Image).ToList(), images.Select(i => (string?)i.Name).ToList()),
                $"{what}, batch");
            output.WriteLine($"tiled ({what}; tile 64 x 64; images 200x130, 170x170, 90x260, 40x50): {diff}; as one batch: {batch}");
        }
    }

    [Fact]
    public void Calibrated_labels_and_masks_equal_the_detectors_on_a_synthetic_test_set()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        detector.Train(data.Train, SyntheticData.Quick(3));
        var calibration = detector.Calibrate(data.Train, new CalibrationOptions { Method = CalibrationMethod.FalseAlarmRate, FalseAlarmRate = 0.1 });
        detector.SetSensitivity(0.6);
        using var scorer = ScorerParity.ExportAndLoad(detector, root, "calibrated.onnx");
        Assert.Equal(detector.Calibration, scorer.Calibration);

        var paths = data.Test.Samples.Select(s => s.ImagePath).ToList();
        var expected = detector.ScoreBatch(paths);
        var actual = scorer.ScoreBatch(paths);
        var diff = ScorerParity.CompareAll(expected, actual, "calibrated"); // verdicts and every mask pixel equal
        double threshold = calibration.EffectiveImageThreshold;
        int flagged = actual.Count(r => r.IsAnomalous == true), maskPixels = actual.Sum(r => r.Mask!.Count(m => m == 1));
        output.WriteLine($"calibrated ({calibration.Method}, sensitivity 0.6, effective image threshold {scorer.Calibration!.EffectiveImageThreshold:G6}, pixel {scorer.Calibration.EffectivePixelThreshold:G6}): " +
                         $"{paths.Count} test images ({data.Test.Samples.Count(s => s.IsAnomalous)} anomalous), {flagged} flagged by both, {maskPixels} mask pixels set by both; " +
                         $"smallest |score - threshold| {expected.Min(r => Math.Abs(r.Score - threshold)):E2}; {diff}");

        // A tiled detector with hand-set thresholds: the same labels and masks.
        using var tiled = SyntheticData.TinyBuilder().WithTiling(new TilingOptions { Stride = new GridSize(40, 40), Margin = 4, ResizeWidth = 112 }).Build();
        OnnxParity.RandomizeBatchNorms(tiled, seed: 24);
        var scores = tiled.ScoreBatch(paths).Select(r => r.Score).Order().ToList();
        var pixels = tiled.Score(paths[0]).Map.Values.ToArray().Order().ToList();
        // Between neighbouring values, never on one: a threshold equal to a produced score is a tie that float order decides.
        tiled.SetThresholds(ScorerParity.Between(scores, scores.Count / 2), ScorerParity.Between(pixels, pixels.Count * 3 / 4));
        using var tiledScorer = ScorerParity.ExportAndLoad(tiled, root, "tiled-calibrated.onnx");
        var tiledDiff = ScorerParity.CompareAll(tiled.ScoreBatch(paths), tiledScorer.ScoreBatch(paths), "tiled, thresholds by hand");
        output.WriteLine($"tiled with thresholds by hand (the median score): {paths.Count} images, labels and masks equal; {tiledDiff}");
    }

    [Fact]
    public void Reference_maps_divide_in_the_graph_untiled_and_at_the_runtime_tiled()
    {
        var classes = data.Train.Samples.Select(s => s.ClassName).Distinct().Order(StringComparer.Ordinal).ToArray();
        var images = ScorerParity.Images(7, (64, 64), (120, 90), (150, 160));
        foreach (var tiling in new TilingOptions?[] { null, new TilingOptions { Stride = new GridSize(32, 32), Margin = 4 } })
        {
            var builder = SyntheticData.TinyBuilder();
            using var detector = (tiling is null ? builder : builder.WithTiling(tiling)).Build();
            OnnxParity.RandomizeBatchNorms(detector, seed: 25);
            detector.FitReferenceMaps(data.Train);
            using var scorer = ScorerParity.ExportAndLoad(detector, root, "references.onnx");
            Assert.Equal(tiling is null, scorer.Info.ReferenceMapsInGraph);
            Assert.Equal(classes, scorer.ReferenceMapClasses);
            var diffs = new List<ParityDiff>();
            foreach (var c in classes)
            {
                diffs.AddRange(images.Select(i => ScorerParity.Compare(detector.Score(i.Image, i.Name, c), scorer.Score(i.Image, i.Name, c), $"class {c}, {i.Name}")));
                diffs.Add(ScorerParity.CompareAll(
                    detector.ScoreBatch(data.Test.Samples.Select(s => s.ImagePath).Take(4), batchSize: 4, className: c),
                    scorer.ScoreBatch(data.Test.Samples.Select(s => s.ImagePath).Take(4), batchSize: 4, className: c),
                    $"class {c}, files"));
            }

            output.WriteLine($"reference maps {(tiling is null ? "in the graph (untiled, class_index)" : "at the runtime (tiled, stitched map divided)")}, classes {string.Join(", ", classes)}: {ScorerParity.Max(diffs)}");

            // The class is required and must be known, as the detector requires it.
            var none = Assert.Throws<ArgumentException>(() => scorer.Score(images[0].Image));
            Assert.Contains("pass the image's class", none.Message);
            Assert.Throws<ArgumentException>(() => detector.Score(images[0].Image));
            var unknown = Assert.Throws<ArgumentException>(() => scorer.Score(images[0].Image, className: "nope"));
            Assert.Contains("'nope'", unknown.Message);
        }
    }

    [Fact]
    public void Mlnet_resnet18_with_its_imagenet_weights_matches()
    {
        using var detector = new AnomalyDetectorBuilder()
            .WithBackbone("mlnet-resnet18", new[] { 1, 2, 3 })
            .WithInputSize(96, 160)
            .WithNeckStride(16)
            .WithNeighborMask(3, 3)
            .WithReconstruction(o => o with { HiddenDim = 32, NumHeads = 4, NumEncoderLayers = 2, NumDecoderLayers = 2, FeedForwardDim = 64 })
            .WithImageScore(ImageScoreKind.PooledMax, 4)
            .WithSeed(3)
            .Build();
        using var scorer = ScorerParity.ExportAndLoad(detector, root, "mlnet.onnx");
        Assert.Equal("mlnet-resnet18", scorer.Info.Backbone);
        var paths = data.Test.Samples.Take(4).Select(s => s.ImagePath).ToList();
        var files = ScorerParity.CompareAll(detector.ScoreBatch(paths), scorer.ScoreBatch(paths), "mlnet-resnet18, files");
        var images = ScorerParity.Images(9, (200, 120), (80, 80));
        var varied = ScorerParity.Max(images.Select(i => ScorerParity.Compare(detector.Score(i.Image, i.Name), scorer.Score(i.Image, i.Name), $"mlnet-resnet18, {i.Name}")));
        output.WriteLine($"mlnet-resnet18 (ImageNet weights from NuGet, input 96 x 160, pooled max 4): 4 synthetic 64x64 files: {files}; 200x120 and 80x80 images: {varied}");
    }

    public void Dispose() => Directory.Delete(root, recursive: true);
}
