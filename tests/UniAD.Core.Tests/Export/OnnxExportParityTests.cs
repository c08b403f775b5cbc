using UniAD.Core.Detection;
using UniAD.Core.Export;
using UniAD.Core.Metrics;
using UniAD.Core.Reconstruction;
using UniAD.Core.Weights;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Export;

/// <summary>
/// The exported graph run by ONNX Runtime against <see cref="AnomalyDetector.ScoreTensor"/>: anomaly_map and image_score
/// within 1e-4 absolute or relative, at batch 1 and 3 (the batch is dynamic), for every backbone family with small random
/// reconstruction networks (and random BatchNorm statistics, so that the folding is checked), the paper's configuration,
/// and the authors' end-to-end checkpoint.
/// </summary>
public sealed class OnnxExportParityTests(ITestOutputHelper output) : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("uniad-onnx-").FullName;

    public static TheoryData<string> Configurations => new()
    {
        "efficientnet-b0 96x96, post-norm ReLU, learned, 3x3 mask, pooled max 8",
        "resnet18 64x64, pre-norm GELU, sine, mask without decoder cross, mean",
        "resnet50 64x64 stride 8, no mask, std",
        "mlnet-resnet18 224x224 (ImageNet weights), plain max",
        "mlnet-resnet18 96x160 (ImageNet weights), pooled max 16",
        "paper: efficientnet-b4 224x224, default network (random weights)",
    };

    public static TheoryData<string, string> EndToEndCases => Fixtures.Cases("e2e");

    [Theory]
    [MemberData(nameof(Configurations))]
    public void Onnx_runtime_matches_the_detector(string configuration)
    {
        using var detector = Build(configuration);
        var path = Path.Combine(root, "model.onnx");
        detector.ExportOnnx(path);
        using var session = OnnxParity.Session(path);
        var size = detector.Options.InputSize;
        foreach (int batch in new[] { 1, 3 })
        {
            using var scope = NewDisposeScope();
            var images = OnnxParity.RandomImages(batch, size.Height, size.Width, seed: 100 + batch);
            var diff = OnnxParity.Compare(detector, session, images, $"{configuration}, batch {batch}");
            output.WriteLine($"{configuration}, batch {batch}: {diff} ({detector.Options.ScoreKind})");
        }
    }

    [Theory]
    [MemberData(nameof(EndToEndCases))]
    public void Onnx_runtime_matches_the_detector_and_the_reference_on_the_authors_checkpoint(string caseName, string source)
    {
        var dir = Fixtures.CaseDirectory("e2e", caseName, source);
        using var detector = AnomalyDetector.ImportReference(Path.Combine(dir, "ckpt.pth.tar"), Path.Combine(dir, "config.json"));
        var path = Path.Combine(root, "reference.onnx");
        detector.ExportOnnx(path);
        using var session = OnnxParity.Session(path);
        using var expected = StateDict.ReadSafetensors(Path.Combine(dir, "tensors.safetensors"));
        using var scope = NewDisposeScope();
        var image = expected["image"];
        var diff = OnnxParity.Compare(detector, session, image, $"{caseName} fixture image");
        output.WriteLine($"[{source}] {caseName} fixture image (batch {image.shape[0]}) vs the detector: {diff}");

        // And against the authors' own pred.
        var ort = OnnxParity.Run(session, image);
        var pred = tensor(ort.Maps, ort.MapShape.Select(d => (long)d).ToArray());
        var reference = TensorAssert.Close(pred, expected["pred"], 1e-4, 1e-4, $"{caseName}: ONNX Runtime's anomaly_map vs the reference's pred");
        output.WriteLine($"[{source}] {caseName}: max |diff| ONNX Runtime's anomaly_map to the reference's pred {reference:E2}");

        var size = detector.Options.InputSize;
        foreach (int batch in new[] { 1, 3 })
        {
            var images = OnnxParity.RandomImages(batch, size.Height, size.Width, seed: 200 + batch);
            var randomDiff = OnnxParity.Compare(detector, session, images, $"{caseName}, random batch {batch}");
            output.WriteLine($"[{source}] {caseName} random batch {batch}: {randomDiff}");
        }
    }

    public void Dispose() => Directory.Delete(root, recursive: true);

    private static AnomalyDetector Build(string configuration)
    {
        var name = configuration[..configuration.IndexOf(' ', StringComparison.Ordinal)];
        AnomalyDetector detector;
        switch (name)
        {
            case "efficientnet-b0":
                detector = Small(new AnomalyDetectorBuilder().WithBackbone("efficientnet-b0", new[] { 1, 2, 3, 4 }).WithInputSize(96, 96).WithNeckStride(16).WithNeighborMask(3, 3))
                    .WithImageScore(ImageScoreKind.PooledMax, 8).Build();
                break;
            case "resnet18":
                detector = Small(new AnomalyDetectorBuilder().WithBackbone("resnet18", new[] { 1, 2, 3 }).WithInputSize(64, 64).WithNeckStride(16).WithNeighborMask(3, 3, decoderCross: false))
                    .WithReconstruction(o => o with { NormalizeBefore = true, Activation = TransformerActivation.Gelu, PositionEmbedding = PositionEmbeddingType.Sine })
                    .WithImageScore(ImageScoreKind.Mean).Build();
                break;
            case "resnet50":
                detector = Small(new AnomalyDetectorBuilder().WithBackbone("resnet50", new[] { 1, 2 }).WithInputSize(64, 64).WithNeckStride(8).WithoutNeighborMask())
                    .WithImageScore(ImageScoreKind.Std).Build();
                break;
            case "mlnet-resnet18" when configuration.Contains("224x224", StringComparison.Ordinal):
                return Small(new AnomalyDetectorBuilder().WithBackbone("mlnet-resnet18", new[] { 1, 2, 3 }).WithInputSize(224, 224).WithNeckStride(16).WithNeighborMask(5, 5))
                    .WithImageScore(ImageScoreKind.PlainMax).Build();
            case "mlnet-resnet18":
                return Small(new AnomalyDetectorBuilder().WithBackbone("mlnet-resnet18", new[] { 1, 2, 3 }).WithInputSize(96, 160).WithNeckStride(16).WithNeighborMask(3, 3))
                    .WithImageScore(ImageScoreKind.PooledMax, 16).Build();
            case "paper:":
                detector = new AnomalyDetectorBuilder().WithSeed(133).Build();
                break;
            default:
                throw new ArgumentException(configuration);
        }

        OnnxParity.RandomizeBatchNorms(detector, seed: 11);
        return detector;
    }

    private static AnomalyDetectorBuilder Small(AnomalyDetectorBuilder builder) =>
        builder.WithReconstruction(o => o with { HiddenDim = 32, NumHeads = 4, NumEncoderLayers = 2, NumDecoderLayers = 2, FeedForwardDim = 64 }).WithSeed(3);
}
