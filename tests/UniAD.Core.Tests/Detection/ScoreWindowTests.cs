using System.Text.Json;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;
using UniAD.Core.Tests.Export;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Detection;

/// <summary>
/// The rectangular pooled-max window: the detector's image score is the pooled max of its own map over that window,
/// <see cref="AnomalyDetector.SetImageScore"/> changes it after training (dropping a calibration that belongs to the
/// old score), and the window survives a checkpoint and reaches the evaluation report.
/// </summary>
public sealed class ScoreWindowTests(SyntheticData data, ITestOutputHelper output) : IClassFixture<SyntheticData>, IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("uniad-window-").FullName;

    [Fact]
    public void The_image_score_is_the_pooled_max_of_the_map_over_the_window()
    {
        using var detector = SyntheticData.TinyBuilder().WithImageScore(ImageScoreKind.PooledMax, poolHeight: 2, poolWidth: 24).Build();
        OnnxParity.RandomizeBatchNorms(detector, seed: 5);
        Assert.Equal(2, detector.Options.ScorePoolHeight);
        Assert.Equal(24, detector.Options.ScorePoolSize);
        using var images = OnnxParity.RandomImages(3, 64, 64, seed: 9);
        var results = detector.ScoreTensor(images);
        int differ = 0;
        foreach (var r in results)
        {
            var map = r.Map.Values;
            double wide = ImageScoring.PooledMax(map, 64, 64, poolHeight: 2, poolWidth: 24);
            Assert.Equal(wide, r.Score, Math.Max(1e-6, 1e-5 * Math.Abs(wide)));
            differ += Math.Abs(wide - ImageScoring.PooledMax(map, 64, 64, poolSize: 4)) > 1e-4 * Math.Abs(wide) ? 1 : 0;
        }

        Assert.Equal(3, differ); // the window matters: no map has the same 2 x 24 and 4 x 4 pooled max

        // A side that does not fit falls back to the plain maximum, as for square windows.
        detector.SetImageScore(ImageScoreKind.PooledMax, poolHeight: 65, poolWidth: 8);
        var fallback = detector.ScoreTensor(images);
        Assert.All(fallback, r => Assert.Equal(r.Map.Max, r.Score, 1e-6));
    }

    [Fact]
    public void SetImageScore_changes_the_window_drops_a_calibration_and_is_saved()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        detector.Train(data.Train, SyntheticData.Quick(1));
        detector.SetThresholds(0.5, 0.25);
        double square = detector.Score(data.Test.Samples[0].ImagePath).Score;

        detector.SetImageScore(ImageScoreKind.PooledMax, poolHeight: 4, poolWidth: 4); // unchanged: the calibration stays
        Assert.NotNull(detector.Calibration);
        Assert.Null(detector.Options.ScorePoolHeight);

        detector.SetImageScore(ImageScoreKind.PooledMax, poolHeight: 1, poolWidth: 32);
        Assert.Null(detector.Calibration);
        Assert.Equal((1, 32), (detector.Options.ScorePoolHeight!.Value, detector.Options.ScorePoolSize));
        var result = detector.Score(data.Test.Samples[0].ImagePath);
        Assert.Null(result.IsAnomalous);
        Assert.NotEqual(square, result.Score);
        using var images = OnnxParity.RandomImages(1, 64, 64, seed: 3);
        var tensorResult = detector.ScoreTensor(images)[0];
        double pooled = ImageScoring.PooledMax(tensorResult.Map.Values, 64, 64, 1, 32);
        Assert.Equal(pooled, tensorResult.Score, Math.Max(1e-6, 1e-5 * Math.Abs(pooled)));

        var path = Path.Combine(root, "wide.safetensors");
        detector.Save(path);
        using var loaded = AnomalyDetector.Load(path);
        Assert.Equal(JsonSerializer.Serialize(detector.Options, DetectorCheckpoint.Json), JsonSerializer.Serialize(loaded.Options, DetectorCheckpoint.Json));
        Assert.Equal(1, loaded.Options.ScorePoolHeight);
        Assert.Equal(result.Score, loaded.Score(data.Test.Samples[0].ImagePath).Score, 1e-6);

        var report = loaded.Evaluate(data.Test);
        Assert.Equal((1, 32), (report.Options.PoolHeight!.Value, report.Options.PoolSize));
        Assert.Contains("pooled max: 1 x 32 average pooling", report.ToMarkdown(), StringComparison.Ordinal);

        // A square window again: the height is null, as in checkpoints written before rectangular windows.
        loaded.SetImageScore(ImageScoreKind.Mean, poolHeight: 8, poolWidth: 8);
        Assert.Equal((ImageScoreKind.Mean, (int?)null, 8), (loaded.Options.ScoreKind, loaded.Options.ScorePoolHeight, loaded.Options.ScorePoolSize));
    }

    [Fact]
    public void SelectScoreWindow_measures_every_candidate_like_Evaluate_and_sets_the_best()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        detector.Train(data.Train, SyntheticData.Quick(2));
        detector.SetThresholds(0.5);
        var candidates = new GridSize[] { new(4, 4), new(1, 48), new(16, 2), new(64, 64), new(80, 8) };
        // The report refuses a window larger than its maps; for 80 x 8 its plain max is the reference.
        var reports = candidates.Select(c => detector.Evaluate(data.Test, c.Height > 64 ? new MetricsReportOptions { ComputeAuPro = false } : new MetricsReportOptions { PoolSize = c.Width, PoolHeight = c.Height, ComputeAuPro = false })).ToList();

        var selection = detector.SelectScoreWindow(data.Test, candidates);
        Assert.Equal(data.Test.Samples.Count, selection.Images);
        Assert.Equal(data.Test.Samples.Count(s => s.IsAnomalous), selection.AnomalousImages);
        Assert.Equal(reports[0].Classes.Select(c => c.Name).Order(StringComparer.Ordinal), selection.Classes);
        for (int i = 0; i < candidates.Length; i++)
        {
            // The same maps and windows through an independent path: the report's pooled max (80 rows do not fit a 64-row map: plain max).
            var kind = candidates[i].Height > 64 ? ImageScoreKind.PlainMax : ImageScoreKind.PooledMax;
            double expected = reports[i].Classes.Average(c => c.Image[kind].Auroc);
            Assert.Equal(candidates[i], selection.Candidates[i].Window);
            Assert.Equal(expected, selection.Candidates[i].ImageAuroc, 1e-9);
        }

        double bestAuroc = selection.Candidates.Max(c => c.ImageAuroc);
        Assert.Equal(selection.Candidates.First(c => c.ImageAuroc == bestAuroc).Window, selection.Chosen);
        Assert.Equal(selection.Chosen.Width, detector.Options.ScorePoolSize);
        Assert.Equal(selection.Chosen.Height, detector.Options.ScorePoolHeight ?? detector.Options.ScorePoolSize);
        Assert.Equal(selection.Chosen != new GridSize(4, 4), detector.Calibration is null); // dropped only when the window changed
        output.WriteLine(string.Join(", ", selection.Candidates.Select(c => $"{c.Window.Height}x{c.Window.Width} {c.ImageAuroc:F4}")) + $"; chosen {selection.Chosen}");
        Assert.True(selection.Candidates.Select(c => c.ImageAuroc).Distinct().Count() > 1, "the candidates should not all score alike");

        // Normal images only cannot rank windows; bad candidates are named.
        var normals = new ImageSource("normals", data.Train.Samples);
        Assert.Contains("'normals'", Assert.Throws<InvalidDataException>(() => detector.SelectScoreWindow(normals, candidates)).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => detector.SelectScoreWindow(data.Test, []));
        Assert.Contains("0 x 8", Assert.Throws<ArgumentException>(() => detector.SelectScoreWindow(data.Test, [new GridSize(0, 8)])).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Impossible_windows_are_refused_naming_the_value()
    {
        var built = Assert.Throws<ArgumentException>(() => SyntheticData.TinyBuilder().WithImageScore(ImageScoreKind.PooledMax, poolHeight: 0, poolWidth: 8).Build());
        Assert.Contains("ScorePoolHeight = 0", built.Message, StringComparison.Ordinal);
        using var detector = SyntheticData.TinyBuilder().Build();
        Assert.Equal("poolHeight", Assert.Throws<ArgumentOutOfRangeException>(() => detector.SetImageScore(ImageScoreKind.PooledMax, 0, 8)).ParamName);
        Assert.Equal("poolWidth", Assert.Throws<ArgumentOutOfRangeException>(() => detector.SetImageScore(ImageScoreKind.PooledMax, 2, -1)).ParamName);
        Assert.Equal("kind", Assert.Throws<ArgumentOutOfRangeException>(() => detector.SetImageScore((ImageScoreKind)42, 2, 8)).ParamName);
        Assert.Equal("PoolHeight", Assert.Throws<ArgumentOutOfRangeException>(() => new MetricsReportBuilder(new MetricsReportOptions { PoolHeight = 0 })).ParamName);
        detector.Dispose();
        Assert.Throws<ObjectDisposedException>(() => detector.SetImageScore(ImageScoreKind.PooledMax, 2, 8));
    }

    public void Dispose() => Directory.Delete(root, recursive: true);
}
