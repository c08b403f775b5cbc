using UniAD.Core.Backbones;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.MemoryBank;
using UniAD.Core.Metrics;
using UniAD.Core.Weights;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.MemoryBank;

/// <summary>The memory-bank family through the detector: fit, scores, save/load, the family key, budgets.</summary>
public sealed class MemoryBankDetectorTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("uniad-bank-").FullName;

    private string Data()
    {
        string data = Path.Combine(root, "data");
        SyntheticDefects.Generate(data, new SyntheticDatasetOptions { ImageSize = 64, TrainPerClass = 10, TestGoodPerClass = 6, TestPerDefect = 2, Seed = 21 });
        return data;
    }

    /// <summary>The NuGet ResNet-18 layers 2 and 3 on 64 x 64 inputs, untiled, a 10 % coreset.</summary>
    internal static AnomalyDetectorBuilder Small(Func<MemoryBankOptions, MemoryBankOptions>? configure = null) => new AnomalyDetectorBuilder()
        .WithBackbone(MlNetBackbone.ModelName, new[] { 2, 3 })
        .WithInputSize(64, 64)
        .WithMemoryBank(o => configure is null ? o with { CoresetRatio = 0.1 } : configure(o with { CoresetRatio = 0.1 }))
        .WithImageScore(ImageScoreKind.PlainMax);

    [Fact]
    public void A_fitted_bank_separates_defects_and_survives_save_and_load_bit_for_bit()
    {
        var data = Data();
        var train = MvtecAd.Open(data, DatasetSplit.Train);
        var test = MvtecAd.Open(data, DatasetSplit.Test);
        using var detector = Small().Build();
        Assert.Equal(ModelFamilies.MemoryBank, detector.Family);
        var result = detector.Train(train, new TrainingOptions { BatchSize = 8 });
        Assert.Equal(TrainingStopReason.Fitted, result.StopReason);
        Assert.Equal(0, result.EpochsCompleted);
        var fit = detector.LastFit!;
        int normal = train.Samples.Count(s => s.Label == 0);
        Assert.Equal(normal, fit.Samples);
        Assert.Equal(normal * 64L, fit.Patches); // 8 x 8 patches (stride 8) per 64 x 64 image
        Assert.Equal(fit.Patches, fit.Candidates); // all of them: fewer than MaxCandidates
        Assert.Equal((int)Math.Round(0.1 * fit.Candidates), fit.BankSize);

        var report = detector.Evaluate(test);
        double image = report.Mean[MetricKeys.ImageAuroc(ImageScoreKind.PlainMax)], pixel = report.Mean[MetricKeys.PixelAuroc];
        Console.WriteLine($"memory bank on synthetic 64 x 64: image AUROC {image:F3}, pixel AUROC {pixel:F3}, bank {fit.BankSize}");
        Assert.True(image >= 0.9, $"image AUROC {image:F3}");
        Assert.True(pixel >= 0.9, $"pixel AUROC {pixel:F3}");

        var images = test.Samples.Take(4).Select(s => s.ImagePath).ToList();
        var before = detector.ScoreBatch(images);
        string path = Path.Combine(root, "bank.safetensors");
        detector.Save(path);
        Assert.Equal(ModelFamilies.MemoryBank, SafetensorsFile.ReadMetadata(path)[DetectorCheckpoint.FamilyKey]);
        using var loaded = AnomalyDetector.Load(path);
        Assert.Equal(ModelFamilies.MemoryBank, loaded.Family);
        Assert.Equal(detector.Options.MemoryBank, loaded.Options.MemoryBank);
        var after = loaded.ScoreBatch(images);
        for (int i = 0; i < images.Count; i++)
        {
            Assert.Equal(before[i].Score, after[i].Score);
            Assert.Equal(before[i].Map.Values.ToArray(), after[i].Map.Values.ToArray());
        }

        // Normal images score lower than defective ones (the map is a distance to normal patches).
        var good = detector.ScoreBatch(test.Samples.Where(s => s.Label == 0).Take(3).Select(s => s.ImagePath).ToList()).Average(r => r.Score);
        var bad = detector.ScoreBatch(test.Samples.Where(s => s.Label == 1).Take(3).Select(s => s.ImagePath).ToList()).Average(r => r.Score);
        Assert.True(bad > good, $"defective {bad:G4} against normal {good:G4}");
    }

    [Fact]
    public void The_fit_is_deterministic_for_a_seed_and_a_cancelled_fit_throws()
    {
        var train = MvtecAd.Open(Data(), DatasetSplit.Train);
        using var a = Small().WithSeed(5).Build();
        using var b = Small().WithSeed(5).Build();
        using var c = Small(o => o with { MaxCandidates = 200 }).WithSeed(6).Build();
        a.Train(train);
        b.Train(train);
        c.Train(train);
        var bankA = a.UseAnomalyModel(m => ((MemoryBankModel)m).Bank.clone());
        var bankB = b.UseAnomalyModel(m => ((MemoryBankModel)m).Bank.clone());
        Assert.Equal(bankA.shape, bankB.shape);
        Assert.True(bankA.eq(bankB).all().item<bool>());
        int n = c.LastFit!.Samples;
        Assert.Equal((200 + n - 1) / n * (long)n, c.LastFit.Candidates); // an even share of each image's patches
        Assert.True(c.LastFit.Candidates <= 200 + c.LastFit.Samples);

        using var d = Small().Build();
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => d.Train(train, cancellationToken: cancel.Token));
    }

    [Fact]
    public void Budgets_refuse_a_bank_that_does_not_fit_in_memory_and_shrink_one_that_does_not_fit_in_time()
    {
        var train = MvtecAd.Open(Data(), DatasetSplit.Train);
        using var small = Small(o => o with { MaxFitBytes = 1 << 20 }).Build();
        var ex = Assert.Throws<ArgumentException>(() => small.Train(train));
        Assert.Contains("MaxFitBytes = 1 MiB", ex.Message);
        Assert.Contains("candidate patches", ex.Message);
        Assert.Null(small.LastFit);

        using var hurried = Small(o => o with { CoresetTimeLimit = TimeSpan.FromTicks(1) }).Build();
        var result = hurried.Train(train);
        Assert.Equal(TrainingStopReason.TimeBudget, result.StopReason);
        Assert.True(hurried.LastFit!.BankSize < hurried.LastFit.RequestedBankSize, $"{hurried.LastFit}");

        using var resuming = Small().Build();
        var resume = Assert.Throws<ArgumentException>(() => resuming.Train(train, new TrainingOptions { ResumeFrom = typeof(MemoryBankDetectorTests).Assembly.Location }));
        Assert.Contains("nothing to resume", resume.Message);
        Assert.Throws<InvalidOperationException>(() => resuming.UseModel(m => m.InputSize)); // no UniAD model inside
        Assert.Throws<InvalidOperationException>(() => resuming.Score(train.Samples[0].ImagePath)); // not fitted yet
    }

    [Fact]
    public void The_family_key_old_files_load_as_UniAD_and_an_unknown_family_is_refused_by_name()
    {
        string uniad = Path.Combine(root, "uniad.safetensors");
        using (var detector = new AnomalyDetectorBuilder().WithBackbone("resnet18", new[] { 1, 2 }).WithInputSize(64, 64).WithNeckStride(8)
            .WithReconstruction(o => o with { HiddenDim = 32, NumHeads = 2, NumEncoderLayers = 1, NumDecoderLayers = 1, FeedForwardDim = 64 }).Build())
        {
            Assert.Equal(ModelFamilies.UniAD, detector.Family);
            detector.Save(uniad);
        }

        var (tensors, metadata) = SafetensorsFile.Read(uniad);
        using (tensors)
        {
            Assert.Equal(ModelFamilies.UniAD, metadata[DetectorCheckpoint.FamilyKey]);

            // A file of an earlier version: no family key, no Family in the options.
            string old = Path.Combine(root, "old.safetensors");
            var info = System.Text.Json.Nodes.JsonNode.Parse(metadata["uniad.info"])!;
            info["Options"]!.AsObject().Remove("Family");
            info["Options"]!.AsObject().Remove("MemoryBank");
            SafetensorsFile.Write(old, tensors, new Dictionary<string, string> { ["uniad.format"] = metadata["uniad.format"], ["uniad.info"] = info.ToJsonString() });
            using (var loaded = AnomalyDetector.Load(old))
            {
                Assert.Equal(ModelFamilies.UniAD, loaded.Family);
            }

            string unknown = Path.Combine(root, "unknown.safetensors");
            SafetensorsFile.Write(unknown, tensors, new Dictionary<string, string>(metadata) { [DetectorCheckpoint.FamilyKey] = "normalizing-flow" });
            var ex = Assert.Throws<InvalidDataException>(() => AnomalyDetector.Load(unknown));
            Assert.Contains("'normalizing-flow'", ex.Message);
            Assert.Contains("'uniad' and 'memory-bank'", ex.Message);
        }
    }

    [Fact]
    public void A_tiled_bank_scores_long_parts_at_their_working_size()
    {
        var train = MvtecAd.Open(Data(), DatasetSplit.Train);
        using var detector = new AnomalyDetectorBuilder()
            .WithBackbone(MlNetBackbone.ModelName, new[] { 2, 3 })
            .WithInputSize(64, 64)
            .WithTiling(new UniAD.Core.Tiling.TilingOptions { ResizeWidth = 96, Stride = new GridSize(32, 32), Margin = 16 })
            .WithMemoryBank(o => o with { CoresetRatio = 0.1 })
            .WithImageScore(ImageScoreKind.PlainMax)
            .Build();
        detector.Train(train);
        Assert.Equal(train.Samples.Count(s => s.Label == 0) * 4, detector.LastFit!.Samples); // 96 x 96: 2 x 2 tiles of 64 every 32
        var result = detector.Score(train.Samples[0].ImagePath);
        Assert.Equal(64, result.Map.Width); // the map at the image's own size
        Assert.True(double.IsFinite(result.Score) && result.Score >= 0);
    }

    public void Dispose() => Directory.Delete(root, recursive: true);
}
