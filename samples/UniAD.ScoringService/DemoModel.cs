using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Export;

namespace UniAD.ScoringService;

/// <summary>
/// A tiny demo detector for trying the service without a model file (<c>--UniAD:Demo=true</c>): synthetic images (two
/// classes, 64 x 64), a random ResNet-18's first layer, a 16-wide reconstruction, trained for a few seconds and calibrated
/// on held-out normal images. It shows the service working; it is no inspection model.
/// </summary>
public static class DemoModel
{
    /// <summary>
    /// The demo's network (also the HTTP tests' model): a random ResNet-18's layer 1 on 64 x 64 images at stride 8
    /// (8 x 8 tokens), a reconstruction 16 wide with 1 + 1 layers and a 3 x 3 neighbour mask. Milliseconds per image on a CPU.
    /// </summary>
    public static AnomalyDetectorBuilder TinyBuilder(int seed) => new AnomalyDetectorBuilder()
        .WithBackbone("resnet18", new[] { 1 })
        .WithInputSize(64, 64)
        .WithNeckStride(8)
        .WithNeighborMask(3, 3)
        .WithReconstruction(o => o with { HiddenDim = 16, NumHeads = 2, NumEncoderLayers = 1, NumDecoderLayers = 1, FeedForwardDim = 32 })
        .WithImageScore(UniAD.Core.Metrics.ImageScoreKind.PooledMax, 4)
        .WithSeed(seed);

    /// <summary>
    /// Generates the data, trains, calibrates and saves the demo detector under <paramref name="folder"/>; returns the model
    /// file: the checkpoint, or with <paramref name="onnx"/> the calibrated model exported to ONNX (both need libtorch).
    /// </summary>
    public static string Create(string folder, ILogger logger, bool onnx = false, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(logger);
        Directory.CreateDirectory(folder);
        var data = Path.Combine(folder, "data");
        SyntheticDefects.Generate(data, new SyntheticDatasetOptions
        {
            Classes = new[] { SyntheticClass.Stripes, SyntheticClass.Disc },
            ImageSize = 64,
            TrainPerClass = 16,
            TestGoodPerClass = 2,
            TestPerDefect = 1,
            Seed = 11,
        }, cancellationToken: cancellationToken);
        var (train, heldOut) = DataSplits.HoldOutNormal(MvtecAd.Open(data, DatasetSplit.Train), 0.35);
        using var detector = TinyBuilder(seed: 7).Build();
        var result = detector.Train(train, new TrainingOptions { Epochs = 5, BatchSize = 8, Optimizer = new() { LearningRate = 1e-3 } }, cancellationToken: cancellationToken);
        var calibration = detector.CalibrateOnValidation(heldOut, falseAlarmRate: 0.1, cancellationToken: cancellationToken);
        var path = Path.Combine(folder, "demo.safetensors");
        detector.Save(path);
        if (onnx)
        {
            path = Path.ChangeExtension(path, ".onnx");
            detector.ExportOnnx(path);
        }

        logger.LogWarning("Trained the DEMO model ({Epochs} epochs in {Seconds:F1} s, random backbone, synthetic images; threshold {Threshold:G4}) and saved it to {Path}. Set UniAD:ModelPath to serve a real model.", result.EpochsCompleted, result.Duration.TotalSeconds, calibration.ImageThreshold, path);
        return path;
    }
}
