using UniAD.Core.Data;
using UniAD.Core.Detection;

namespace UniAD.Core.Tests.Detection;

/// <summary>A small synthetic MVTec-layout data set, generated once per test class, and a tiny detector recipe.</summary>
public sealed class SyntheticData : IDisposable
{
    public SyntheticData()
    {
        Root = Directory.CreateTempSubdirectory("uniad-det-").FullName;
        SyntheticDefects.Generate(Path.Combine(Root, "data"), new SyntheticDatasetOptions
        {
            Classes = new[] { SyntheticClass.Stripes, SyntheticClass.Disc },
            ImageSize = 64, TrainPerClass = 8, TestGoodPerClass = 3, TestPerDefect = 1, Seed = 5,
        });
        Train = MvtecAd.Open(Path.Combine(Root, "data"), DatasetSplit.Train);
        Test = MvtecAd.Open(Path.Combine(Root, "data"), DatasetSplit.Test);
    }

    public string Root { get; }

    public ImageSource Train { get; }

    public ImageSource Test { get; }

    public static AnomalyDetectorBuilder TinyBuilder() => new AnomalyDetectorBuilder()
        .WithBackbone("resnet18", new[] { 1 })
        .WithInputSize(64, 64)
        .WithNeckStride(8)
        .WithNeighborMask(3, 3)
        .WithReconstruction(o => o with { HiddenDim = 16, NumHeads = 2, NumEncoderLayers = 1, NumDecoderLayers = 1, FeedForwardDim = 32 })
        .WithImageScore(UniAD.Core.Metrics.ImageScoreKind.PooledMax, 4)
        .WithSeed(7);

    public static TrainingOptions Quick(int epochs) => new() { Epochs = epochs, BatchSize = 4, Optimizer = new() { LearningRate = 1e-3 } };

    public void Dispose() => Directory.Delete(Root, recursive: true);
}
