using Google.Protobuf;
using Onnx;
using UniAD.Core.Backbones;
using UniAD.Core.Detection;
using UniAD.Core.Weights;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Backbones;

/// <summary>
/// The ONNX import by data flow (names and order of initializers play no part; a graph that is not a plain ResNet
/// fails naming the first node that does not fit), the mean-image rule at other sizes, and mlnet-resnet18 through
/// the builder and a detector checkpoint.
/// </summary>
public sealed class MlNetBackboneTests : IDisposable
{
    private static readonly string ModelFile = Path.Combine(AppContext.BaseDirectory, MlNetBackbone.RelativeModelPath);
    private readonly string root = Directory.CreateTempSubdirectory("uniad-mlnet-").FullName;

    [Fact]
    public void The_package_files_are_found_by_name_and_a_missing_package_names_the_reference_to_add()
    {
        Assert.Equal(Path.GetFullPath(ModelFile), MlNetBackbone.FindModelFile());
        Assert.Equal(Path.Combine(AppContext.BaseDirectory, MlNetBackbone.RelativePreprocessingPath), MlNetBackbone.PreprocessingFileFor(ModelFile));

        var ex = Assert.Throws<FileNotFoundException>(() => MlNetBackbone.FindModelFile(new[] { root }));
        Assert.Contains(MlNetBackbone.PackageReference, ex.Message);
        Assert.Contains(Path.Combine(root, MlNetBackbone.RelativeModelPath), ex.Message);

        // The network without its preprocessing graph: the mean image is missing, and the message says where it was looked for.
        var lone = Path.Combine(root, "ResNet18.onnx");
        File.Copy(ModelFile, lone);
        using var extractor = ResNetFeatureExtractor.FromLayers(ResNetVariant.MlNetResNet18, new[] { 1 });
        var missing = Assert.Throws<FileNotFoundException>(() => BackboneWeights.Load(extractor, lone));
        Assert.Contains("ResNetPreprocess.onnx", missing.Message);
        Assert.Contains(MlNetBackbone.PackageId, missing.Message);
    }

    [Fact]
    public void Initializer_names_and_order_play_no_part_in_the_mapping()
    {
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(ModelFile));
        var graph = model.Graph;
        var rename = graph.Initializer.Select((t, i) => (t.Name, New: $"w{(i * 37) % graph.Initializer.Count:D3}")).ToDictionary(p => p.Name, p => p.New);
        var shuffled = graph.Initializer.OrderBy(t => rename[t.Name], StringComparer.Ordinal).ToList();
        foreach (var t in shuffled)
        {
            t.Name = rename[t.Name];
        }

        graph.Initializer.Clear();
        graph.Initializer.Add(shuffled);
        foreach (var node in graph.Node)
        {
            for (int i = 0; i < node.Input.Count; i++)
            {
                if (rename.TryGetValue(node.Input[i], out var n))
                {
                    node.Input[i] = n;
                }
            }
        }

        foreach (var input in graph.Input.Where(i => rename.ContainsKey(i.Name)))
        {
            input.Name = rename[input.Name];
        }

        var renamed = Path.Combine(root, "renamed.onnx");
        File.WriteAllBytes(renamed, model.ToByteArray());
        using var original = OnnxResNetImport.Import(ModelFile);
        using var mangled = OnnxResNetImport.Import(renamed);
        Assert.Equal(original.Weights.Keys, mangled.Weights.Keys);
        Assert.Equal(new[] { 2, 2, 2, 3 }, mangled.BlocksPerLayer);
        Assert.Equal(22 + (22 * 4), original.Weights.Count); // 22 convolutions, 22 BatchNorms of 4 tensors each
        foreach (var key in original.Weights.Keys)
        {
            Assert.True(original.Weights[key].allclose(mangled.Weights[key], 0, 0), key);
        }
    }

    [Fact]
    public void A_graph_that_is_not_a_plain_resnet_names_the_first_node_that_does_not_fit()
    {
        // The second block of layer 2 gets a sigmoid where the ReLU after its first BatchNorm belongs.
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(ModelFile));
        var relu = model.Graph.Node.Single(n => n.Name == "ReLU307");
        relu.OpType = "Sigmoid";
        var broken = Path.Combine(root, "sigmoid.onnx");
        File.WriteAllBytes(broken, model.ToByteArray());
        var ex = Assert.Throws<InvalidDataException>(() => OnnxResNetImport.Import(broken));
        Assert.Contains("'ReLU307' (Sigmoid)", ex.Message);
        Assert.Contains(broken, ex.Message);

        // A bias on a convolution (torchvision's ResNet has none).
        model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(ModelFile));
        var conv = model.Graph.Node.Single(n => n.Name == "Convolution257");
        conv.Input.Add(model.Graph.Initializer.First().Name);
        File.WriteAllBytes(broken, model.ToByteArray());
        Assert.Contains("'Convolution257' (Conv)", Assert.Throws<InvalidDataException>(() => OnnxResNetImport.Import(broken)).Message);

        // Not ONNX at all, and an empty file.
        var text = Path.Combine(root, "text.onnx");
        File.WriteAllText(text, "this is not a protobuf message at all, just some text that goes on");
        Assert.Contains(text, Assert.Throws<InvalidDataException>(() => OnnxResNetImport.Import(text)).Message);
        var empty = Path.Combine(root, "empty.onnx");
        File.WriteAllBytes(empty, Array.Empty<byte>());
        Assert.Contains(empty, Assert.Throws<InvalidDataException>(() => OnnxResNetImport.Import(empty)).Message);
        Assert.Throws<FileNotFoundException>(() => OnnxResNetImport.Import(Path.Combine(root, "none.onnx")));

        // The preprocessing graph is no ResNet, and the ResNet is no preprocessing graph.
        var prep = MlNetBackbone.PreprocessingFileFor(ModelFile);
        Assert.Contains("Split", Assert.Throws<InvalidDataException>(() => OnnxResNetImport.Import(prep)).Message);
        Assert.Contains("Conv", Assert.Throws<InvalidDataException>(() => OnnxResNetImport.ReadCntkMeanImage(ModelFile)).Message);
    }

    [Fact]
    public void The_mean_image_is_kept_at_224_and_resized_bilinearly_at_other_multiples_of_32()
    {
        using var mean = OnnxResNetImport.ReadCntkMeanImage(MlNetBackbone.PreprocessingFileFor(ModelFile));
        Assert.Equal(new long[] { 1, 3, 224, 224 }, mean.shape);
        // The package's per-channel means (B, G, R), as the fixtures' README measures them.
        var channelMeans = mean.mean(new long[] { 0, 2, 3 }).data<float>().ToArray();
        Assert.Equal(103.06, channelMeans[0], 0.01); // the README rounds to 0.01; a float32 mean of 50,176 values may sum in any order
        Assert.Equal(115.90, channelMeans[1], 0.01);
        Assert.Equal(123.15, channelMeans[2], 0.01);

        using var same = MlNetBackbone.MeanImageAt(mean, 224, 224);
        Assert.True(same.allclose(mean, 0, 0));

        // Twice the size with half-pixel centres: output pixel (1, 1) sits at source (0.25, 0.25).
        using var big = MlNetBackbone.MeanImageAt(mean, 448, 448);
        Assert.Equal(new long[] { 1, 3, 448, 448 }, big.shape);
        for (int c = 0; c < 3; c++)
        {
            double m00 = mean[0, c, 0, 0].item<float>(), m01 = mean[0, c, 0, 1].item<float>(), m10 = mean[0, c, 1, 0].item<float>(), m11 = mean[0, c, 1, 1].item<float>();
            double expected = (0.75 * 0.75 * m00) + (0.75 * 0.25 * (m01 + m10)) + (0.25 * 0.25 * m11);
            Assert.Equal(expected, big[0, c, 1, 1].item<float>(), 1e-3); // a tolerance, not rounding to 3 decimals (which fails when the two straddle a rounding point)
            Assert.Equal(m00, big[0, c, 0, 0].item<float>(), 1e-3);
        }

        // Shrinking keeps the per-channel means within a fraction of a grey level.
        using var small = MlNetBackbone.MeanImageAt(mean, 96, 160);
        var smallMeans = small.mean(new long[] { 0, 2, 3 }).data<float>().ToArray();
        for (int c = 0; c < 3; c++)
        {
            Assert.Equal(channelMeans[c], smallMeans[c], 0.5);
        }

        Assert.Contains("multiples of 32", Assert.Throws<ArgumentException>(() => MlNetBackbone.MeanImageAt(mean, 100, 224)).Message);
    }

    [Fact]
    public void The_builder_finds_the_weights_refuses_bad_sizes_and_a_checkpoint_keeps_the_mean_image()
    {
        Assert.Contains("100 x 224", Assert.Throws<ArgumentException>(() => new AnomalyDetectorBuilder().WithBackbone(MlNetBackbone.ModelName, new[] { 1, 2, 3 }).WithInputSize(100, 224).Build()).Message);

        using var detector = new AnomalyDetectorBuilder()
            .WithBackbone(MlNetBackbone.ModelName, new[] { 1, 2, 3 })
            .WithInputSize(64, 96)
            .WithNeckStride(16)
            .WithNeighborMask(3, 3)
            .WithReconstruction(o => o with { HiddenDim = 32, NumHeads = 2, NumEncoderLayers = 1, NumDecoderLayers = 1, FeedForwardDim = 64 })
            .Build();
        Assert.False(detector.Model.Backbone.IsRandom);
        Assert.Equal(64 + 128 + 256, detector.Options.Reconstruction.InputChannels);
        var meanKey = detector.Model.state_dict().Keys.Single(k => k.EndsWith("mean_image", StringComparison.Ordinal));
        using var meanImage = OnnxResNetImport.ReadCntkMeanImage(MlNetBackbone.PreprocessingFileFor(ModelFile));
        Assert.True(detector.Model.state_dict()[meanKey].allclose(meanImage, 0, 0));

        var path = Path.Combine(root, "mlnet.safetensors");
        detector.Save(path);
        using var loaded = AnomalyDetector.Load(path);
        Assert.True(loaded.Model.state_dict()[meanKey].allclose(meanImage, 0, 0));
        using var scope = NewDisposeScope();
        var images = randn(2, 3, 64, 96, generator: new Generator(5));
        var a = detector.ScoreTensor(images);
        var b = loaded.ScoreTensor(images);
        Assert.Equal(a.Select(r => r.Score), b.Select(r => r.Score));
    }

    public void Dispose() => Directory.Delete(root, recursive: true);
}
