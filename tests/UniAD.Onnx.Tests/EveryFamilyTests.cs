using UniAD.Core;
using UniAD.Core.Backbones;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;
using UniAD.Core.Tests.Detection;
using UniAD.Core.Tests.Export;
using Xunit.Abstractions;

namespace UniAD.Onnx.Tests;

/// <summary>
/// One model-agnostic walk through the pipeline for every family the library knows (issue 27's acceptance): train or
/// fit, score, calibrate on held-out normal images, evaluate, save, load (scores identical), export to ONNX and score
/// the file with <see cref="OnnxAnomalyScorer"/> (scores and maps within 1e-4, the calibration and family carried).
/// A family added to <see cref="ModelFamilies"/> without a builder here fails <see cref="Every_known_family_is_walked"/>.
/// </summary>
public sealed class EveryFamilyTests(SyntheticData data, ITestOutputHelper output) : IClassFixture<SyntheticData>, IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("uniad-families-").FullName;

    private static readonly IReadOnlyDictionary<string, Func<AnomalyDetectorBuilder>> Builders = new Dictionary<string, Func<AnomalyDetectorBuilder>>
    {
        [ModelFamilies.UniAD] = SyntheticData.TinyBuilder,
        [ModelFamilies.MemoryBank] = () => new AnomalyDetectorBuilder()
            .WithBackbone(MlNetBackbone.ModelName, new[] { 2, 3 })
            .WithInputSize(64, 64)
            .WithMemoryBank(o => o with { CoresetRatio = 0.1 })
            .WithImageScore(ImageScoreKind.PooledMax, 4),
    };

    /// <summary>The families under test, for the theory.</summary>
    public static TheoryData<string> Families() => new(Builders.Keys);

    [Fact]
    public void Every_known_family_is_walked() => Assert.Equal(ModelFamilies.Known.OrderBy(f => f), Builders.Keys.OrderBy(f => f));

    [Theory]
    [MemberData(nameof(Families))]
    public void A_family_trains_scores_calibrates_evaluates_saves_loads_and_exports(string family)
    {
        using var detector = Builders[family]().Build();
        Assert.Equal(family, detector.Family);
        Assert.Equal(family, detector.UseAnomalyModel(m => m.Family));

        var training = detector.Train(data.Train, SyntheticData.Quick(epochs: 2));
        Assert.Equal(family == ModelFamilies.MemoryBank ? TrainingStopReason.Fitted : TrainingStopReason.EpochsDone, training.StopReason);

        var files = data.Test.Samples.Select(s => s.ImagePath).ToList();
        var raw = detector.ScoreBatch(files);
        Assert.All(raw, r => Assert.True(double.IsFinite(r.Score), $"{family}: score {r.Score} of {r.Source}"));
        Assert.All(raw, r => Assert.Null(r.IsAnomalous)); // no verdict before calibration

        var calibration = detector.CalibrateOnValidation(data.Train, new CalibrationOptions { FalseAlarmRate = 0.1, MinimumNormalImages = 5 });
        Assert.True(double.IsFinite(calibration.ImageThreshold) && calibration.ImageThreshold > 0, $"{family}: threshold {calibration.ImageThreshold}");
        var scored = detector.ScoreBatch(files);
        Assert.All(scored, r => Assert.NotNull(r.IsAnomalous));
        for (int i = 0; i < files.Count; i++)
        {
            Assert.Equal(raw[i].Score, scored[i].Score); // calibration sets the verdict, not the score
            Assert.Equal(scored[i].Score > calibration.ImageThreshold, scored[i].IsAnomalous);
        }

        var report = detector.Evaluate(data.Test);
        double image = report.Mean[MetricKeys.ImageAuroc(ImageScoreKind.PooledMax)], pixel = report.Mean[MetricKeys.PixelAuroc];
        output.WriteLine($"{family}: image AUROC {image:F3}, pixel AUROC {pixel:F3}, threshold {calibration.ImageThreshold:G5}");
        Assert.InRange(image, 0.0, 1.0);
        Assert.InRange(pixel, 0.0, 1.0);
        Assert.Equal(data.Test.Samples.Select(s => s.ClassName).Distinct().Count(), report.Classes.Count);

        string path = Path.Combine(root, family + ".safetensors");
        detector.Save(path);
        using var loaded = AnomalyDetector.Load(path);
        Assert.Equal(family, loaded.Family);
        Assert.Equal(calibration.ImageThreshold, loaded.Calibration!.ImageThreshold);
        var reloaded = loaded.ScoreBatch(files);
        for (int i = 0; i < files.Count; i++)
        {
            Assert.Equal(scored[i].Score, reloaded[i].Score);
            Assert.Equal(scored[i].IsAnomalous, reloaded[i].IsAnomalous);
            Assert.Equal(scored[i].Map.Values.ToArray(), reloaded[i].Map.Values.ToArray());
        }

        using var scorer = ScorerParity.ExportAndLoad(loaded, root, family + ".onnx");
        Assert.Equal(family, scorer.Info.Family);
        Assert.Equal(calibration.ImageThreshold, scorer.Calibration!.ImageThreshold);
        var diff = ScorerParity.CompareAll(reloaded, scorer.ScoreBatch(files), $"{family}, ONNX against TorchSharp");
        output.WriteLine($"{family}: ONNX against TorchSharp on {files.Count} test files: {diff}");
    }

    public void Dispose() => Directory.Delete(root, recursive: true);
}
