using UniAD.Core;
using UniAD.Core.Backbones;
using UniAD.Core.Detection;
using UniAD.Core.Export;
using UniAD.Core.Metrics;
using UniAD.Core.Tests.Detection;
using UniAD.Core.Tests.Export;
using UniAD.Core.Tiling;
using Xunit.Abstractions;

namespace UniAD.Onnx.Tests;

/// <summary>
/// The memory-bank family exported to ONNX (the bank an initializer, the distances in the graph) and scored by
/// OnnxAnomalyScorer: every score and map value within 1e-4 (absolute or relative) of the TorchSharp detector, untiled
/// and tiled, calibrated; the family key in the metadata.
/// </summary>
public sealed class MemoryBankScorerTests(SyntheticData data, ITestOutputHelper output) : IClassFixture<SyntheticData>, IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("uniad-onnx-bank-").FullName;

    private static AnomalyDetectorBuilder Builder() => new AnomalyDetectorBuilder()
        .WithBackbone(MlNetBackbone.ModelName, new[] { 2, 3 })
        .WithInputSize(64, 64)
        .WithMemoryBank(o => o with { CoresetRatio = 0.1 })
        .WithImageScore(ImageScoreKind.PlainMax);

    [Fact]
    public void Untiled_and_calibrated_scores_and_maps_match_the_detector()
    {
        using var detector = Builder().Build();
        detector.Train(data.Train);
        var calibration = detector.CalibrateOnValidation(data.Train, new CalibrationOptions { FalseAlarmRate = 0.1, MinimumNormalImages = 5 });
        using var scorer = ScorerParity.ExportAndLoad(detector, root, "bank.onnx");
        Assert.Equal(ModelFamilies.MemoryBank, scorer.Info.Family);
        Assert.Equal(calibration.ImageThreshold, scorer.Calibration!.ImageThreshold);
        var images = ScorerParity.Images(7, (64, 64), (97, 71), (150, 120));
        var diff = ScorerParity.CompareAll(
            detector.ScoreBatch(images.Select(i => i.Image).ToList(), images.Select(i => (string?)i.Name).ToList()),
            scorer.ScoreBatch(images.Select(i => i.Image).ToList(), images.Select(i => (string?)i.Name).ToList()),
            "memory bank, untiled");
        var files = data.Test.Samples.Select(s => s.ImagePath).ToList();
        var onFiles = ScorerParity.CompareAll(detector.ScoreBatch(files), scorer.ScoreBatch(files), "memory bank, test files");
        output.WriteLine($"memory bank untiled, synthetic images: {diff}; {files.Count} test files: {onFiles}");
    }

    [Fact]
    public void Tiled_scores_and_maps_match_the_detector()
    {
        using var detector = Builder().WithTiling(new TilingOptions { ResizeWidth = 96, Stride = new GridSize(32, 32), Margin = 16 }).Build();
        detector.Train(data.Train);
        using var scorer = ScorerParity.ExportAndLoad(detector, root, "bank-tiled.onnx");
        Assert.NotNull(scorer.Info.Tiling);
        var images = ScorerParity.Images(8, (64, 64), (150, 120), (48, 200));
        var diff = ScorerParity.Max(images.Select(i => ScorerParity.Compare(detector.Score(i.Image, i.Name), scorer.Score(i.Image, i.Name), i.Name)));
        output.WriteLine($"memory bank tiled (96 wide, 64 tiles every 32): {diff}");
    }

    [Fact]
    public void Per_class_banks_take_the_bank_index_untiled_and_tiled_and_score_as_the_detector()
    {
        var classes = data.Train.Samples.Select(s => s.ClassName).Distinct().Order(StringComparer.Ordinal).ToArray();
        foreach (var tiled in new[] { false, true })
        {
            var builder = Builder().WithMemoryBank(o => o with { CoresetRatio = 0.1, PerClassBanks = true });
            using var detector = (tiled ? builder.WithTiling(new TilingOptions { ResizeWidth = 96, Stride = new GridSize(32, 32), Margin = 16 }) : builder).Build();
            detector.Train(data.Train);
            using var scorer = ScorerParity.ExportAndLoad(detector, root, tiled ? "class-banks-tiled.onnx" : "class-banks.onnx");
            Assert.Equal(classes, scorer.BankClasses);
            Assert.Equal(classes, scorer.Info.ClassNames);
            Assert.Equal(classes, OnnxExport.ReadInfo(Path.Combine(root, tiled ? "class-banks-tiled.onnx" : "class-banks.onnx")).BankClasses);
            var diffs = new List<ParityDiff>();
            foreach (var c in classes)
            {
                var files = data.Test.Samples.Where(s => s.ClassName == c).Take(3).Select(s => s.ImagePath).ToList();
                diffs.Add(ScorerParity.CompareAll(detector.ScoreBatch(files, className: c), scorer.ScoreBatch(files, className: c), $"class {c}"));
            }

            // The same image scored as two classes gives two maps: the bank index reaches the graph.
            var path = data.Test.Samples.First(s => s.ClassName == classes[0]).ImagePath;
            Assert.NotEqual(scorer.Score(path, classes[0]).Score, scorer.Score(path, classes[1]).Score);
            Assert.Contains("pass the image's class", Assert.Throws<ArgumentException>(() => scorer.Score(path)).Message);
            Assert.Contains("No memory bank for class 'widget'", Assert.Throws<ArgumentException>(() => scorer.Score(path, "widget")).Message);
            output.WriteLine($"per-class banks, {(tiled ? "tiled" : "untiled")}: {ScorerParity.Max(diffs)}");
        }
    }

    [Fact]
    public void An_unknown_family_is_refused_by_name_and_a_file_without_the_key_is_UniAD()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var path = Path.Combine(root, "uniad.onnx");
        detector.ExportOnnx(path);
        Assert.Equal(ModelFamilies.UniAD, OnnxExport.ReadInfo(path).Metadata[OnnxMetadataKeys.ModelFamily]);

        var unknown = OnnxParity.Rewrite(path, Path.Combine(root, "unknown.onnx"), m => m.MetadataProps.Single(p => p.Key == OnnxMetadataKeys.ModelFamily).Value = "normalizing-flow");
        var ex = Assert.Throws<InvalidDataException>(() => OnnxAnomalyScorer.Load(unknown));
        Assert.Contains("'normalizing-flow'", ex.Message);
        Assert.Contains("'uniad' and 'memory-bank'", ex.Message);

        var old = OnnxParity.Rewrite(path, Path.Combine(root, "old.onnx"), m => m.MetadataProps.Remove(m.MetadataProps.Single(p => p.Key == OnnxMetadataKeys.ModelFamily)));
        using var scorer = OnnxAnomalyScorer.Load(old);
        Assert.Equal(ModelFamilies.UniAD, scorer.Info.Family);
    }

    public void Dispose() => Directory.Delete(root, recursive: true);
}
