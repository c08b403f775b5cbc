using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Export;

[assembly: CollectionBehavior(DisableTestParallelization = true)] // the load test measures the process; nothing else may run meanwhile

namespace UniAD.Hosting.Tests;

/// <summary>
/// Two tiny saved detectors (resnet18 layer 1, 64 x 64 input, stride 8, width 16; random weights, calibrated F1-max), the
/// same two exported to ONNX (and an uncalibrated export), and the encoded test images of a small synthetic data set, made
/// once for the whole test run.
/// </summary>
public sealed class TestModels : IDisposable
{
    public TestModels()
    {
        Root = Directory.CreateTempSubdirectory("uniad-hosting-").FullName;
        var data = Path.Combine(Root, "data");
        SyntheticDefects.Generate(data, new SyntheticDatasetOptions
        {
            Classes = new[] { SyntheticClass.Stripes, SyntheticClass.Disc },
            ImageSize = 64, TrainPerClass = 1, TestGoodPerClass = 3, TestPerDefect = 1, Seed = 5,
        });
        Test = MvtecAd.Open(data, DatasetSplit.Test);
        ModelA = Save("a.safetensors", seed: 7);
        ModelB = Save("b.safetensors", seed: 8);
        OnnxA = Path.ChangeExtension(ModelA, ".onnx");
        OnnxB = Path.ChangeExtension(ModelB, ".onnx");
        OnnxUncalibrated = Path.Combine(Root, "uncalibrated.onnx");
        using (var uncalibrated = TinyBuilder(9).Build())
        {
            uncalibrated.ExportOnnx(OnnxUncalibrated);
        }
        Images = Test.Samples.Select(s => (Path.GetFileName(Path.GetDirectoryName(s.ImagePath)) + "-" + Path.GetFileName(s.ImagePath), File.ReadAllBytes(s.ImagePath))).ToList();
    }

    public string Root { get; }

    public ImageSource Test { get; }

    /// <summary>The first model (seed 7).</summary>
    public string ModelA { get; }

    /// <summary>Another model (seed 8): other scores than <see cref="ModelA"/>.</summary>
    public string ModelB { get; }

    /// <summary><see cref="ModelA"/> exported to ONNX (calibrated).</summary>
    public string OnnxA { get; }

    /// <summary><see cref="ModelB"/> exported to ONNX (calibrated).</summary>
    public string OnnxB { get; }

    /// <summary>A third tiny detector (seed 9) exported without calibration.</summary>
    public string OnnxUncalibrated { get; }

    /// <summary>The test split's PNG files: (name, bytes).</summary>
    public IReadOnlyList<(string Name, byte[] Bytes)> Images { get; }

    /// <summary>The recipe of SyntheticData.TinyBuilder in UniAD.Core.Tests, kept by the sample (the demo model).</summary>
    public static AnomalyDetectorBuilder TinyBuilder(int seed) => UniAD.ScoringService.DemoModel.TinyBuilder(seed);

    public void Dispose() => Directory.Delete(Root, recursive: true);

    private string Save(string file, int seed)
    {
        using var detector = TinyBuilder(seed).Build();
        detector.Calibrate(Test);
        var path = Path.Combine(Root, file);
        detector.Save(path);
        detector.ExportOnnx(Path.ChangeExtension(path, ".onnx"));
        return path;
    }
}

[CollectionDefinition(Name)]
public sealed class ModelsCollection : ICollectionFixture<TestModels>
{
    public const string Name = "models";
}
