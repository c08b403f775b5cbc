using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;

namespace UniAD.Core.Tests.Detection;

/// <summary>Training on normal images only makes the detector find the synthetic defects (on a random backbone).</summary>
public sealed class DetectorLearnsTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("uniad-learn-").FullName;

    [Fact]
    public void Training_on_normal_images_separates_defects_from_normal_images_and_pixels()
    {
        SyntheticDefects.Generate(root, new SyntheticDatasetOptions { ImageSize = 64, TrainPerClass = 12, TestGoodPerClass = 6, TestPerDefect = 2, Seed = 21 });
        var train = MvtecAd.Open(root, DatasetSplit.Train);
        var test = MvtecAd.Open(root, DatasetSplit.Test);
        string imageKey = MetricKeys.ImageAuroc(ImageScoreKind.PooledMax);

        using var detector = new AnomalyDetectorBuilder()
            .WithBackbone("resnet18", new[] { 1, 2 })
            .WithInputSize(64, 64)
            .WithNeckStride(8)
            .WithNeighborMask(3, 3)
            .WithReconstruction(o => o with { HiddenDim = 64, NumHeads = 4, NumEncoderLayers = 1, NumDecoderLayers = 1, FeedForwardDim = 128 })
            .WithImageScore(ImageScoreKind.PooledMax, 8)
            .WithSeed(3)
            .Build();
        var before = detector.Evaluate(test).Mean;
        detector.Train(train, new TrainingOptions { Epochs = 40, BatchSize = 8, Optimizer = new() { LearningRate = 1e-3 } });
        var after = detector.Evaluate(test).Mean;
        string figures = $"untrained: image AUROC {before[imageKey]:F3}, pixel AUROC {before[MetricKeys.PixelAuroc]:F3}; trained: image AUROC {after[imageKey]:F3}, pixel AUROC {after[MetricKeys.PixelAuroc]:F3}";
        Console.WriteLine(figures);

        // Chance is 0.5. A random backbone's raw reconstruction error already points at some defects; training
        // on normal images must add a clear margin on top of that, at image and at pixel level.
        Assert.True(after[imageKey] >= 0.80, figures);
        Assert.True(after[MetricKeys.PixelAuroc] >= 0.90, figures);
        Assert.True(after[imageKey] >= before[imageKey] + 0.1, figures);
        Assert.True(after[MetricKeys.PixelAuroc] >= before[MetricKeys.PixelAuroc] + 0.1, figures);
    }

    public void Dispose() => Directory.Delete(root, recursive: true);
}
