using UniAD.Core.Data;
using UniAD.Core.Detection;

namespace UniAD.Cli.Tests;

/// <summary>
/// Made once for all CLI tests: a tiny synthetic MVTec-layout data set (2 classes, 64 x 64) and two tiny models
/// on a random ResNet-18 (layer 1, 64 x 64 input): uncalibrated, and calibrated at a 10 % false-alarm rate.
/// </summary>
public sealed class CliFixture : IDisposable
{
    public CliFixture()
    {
        // One torch thread: on a shared 2-core machine, OpenMP threads that wait for busy cores make a tiny training
        // step take seconds instead of milliseconds (processes started by CliRunner get OMP_NUM_THREADS=1).
        TorchSharp.torch.set_num_threads(1);
        Root = Directory.CreateTempSubdirectory("uniad-cli-").FullName;
        Data = Path.Combine(Root, "data");
        SyntheticDefects.Generate(Data, new SyntheticDatasetOptions
        {
            Classes = new[] { SyntheticClass.Stripes, SyntheticClass.Disc },
            ImageSize = 64, TrainPerClass = 10, TestGoodPerClass = 5, TestPerDefect = 1, Seed = 5,
        });
        using var detector = TinyBuilder().Build();
        Model = Path.Combine(Root, "tiny.safetensors");
        detector.Save(Model);
        detector.Calibrate(MvtecAd.Open(Data, DatasetSplit.Test), new CalibrationOptions { Method = CalibrationMethod.FalseAlarmRate, FalseAlarmRate = 0.1 });
        CalibratedModel = Path.Combine(Root, "tiny-calibrated.safetensors");
        detector.Save(CalibratedModel);
    }

    /// <summary>The temporary folder holding everything (deleted at the end).</summary>
    public string Root { get; }

    /// <summary>
    /// The MVTec-layout data root: <c>stripes</c> and <c>disc</c>, each with 10 train/good, 5 test/good, test/DEFECT and
    /// ground_truth (10 normal test images: the fewest that false-alarm calibration accepts).
    /// </summary>
    public string Data { get; }

    /// <summary>An uncalibrated tiny model.</summary>
    public string Model { get; }

    /// <summary>The same model, calibrated.</summary>
    public string CalibratedModel { get; }

    /// <summary>The CLI's training options for a tiny, fast model.</summary>
    public static string[] TinyTraining { get; } = { "--backbone", "resnet18", "--layers", "1", "--input", "64", "--stride", "8", "--batch", "4" };

    /// <summary>A tiny detector (a few thousand parameters of reconstruction).</summary>
    public static AnomalyDetectorBuilder TinyBuilder() => new AnomalyDetectorBuilder()
        .WithBackbone("resnet18", new[] { 1 })
        .WithInputSize(64, 64)
        .WithNeckStride(8)
        .WithNeighborMask(3, 3)
        .WithReconstruction(o => o with { HiddenDim = 16, NumHeads = 2, NumEncoderLayers = 1, NumDecoderLayers = 1, FeedForwardDim = 32 })
        .WithSeed(7);

    /// <summary>A new empty folder under <see cref="Root"/>.</summary>
    public string NewFolder(string name)
    {
        var path = Path.Combine(Root, $"{name}-{Guid.NewGuid():N}"[..(name.Length + 9)]);
        Directory.CreateDirectory(path);
        return path;
    }

    /// <summary>The good test images of a class.</summary>
    public IReadOnlyList<string> GoodImages(string className = "stripes") =>
        Directory.GetFiles(Path.Combine(Data, className, "test", "good")).Order(StringComparer.Ordinal).ToList();

    public void Dispose() => Directory.Delete(Root, recursive: true);
}

/// <summary>All CLI test classes share one <see cref="CliFixture"/>.</summary>
[CollectionDefinition(Name)]
public sealed class CliCollection : ICollectionFixture<CliFixture>
{
    public const string Name = "cli";
}
