using UniAD.Core.Backbones;
using UniAD.Core.Weights;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Backbones;

public sealed class BackboneWeightsTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("uniad-bb-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static TensorDictionary Prefixed(FeatureExtractor source, string prefix, float value)
    {
        var dict = new TensorDictionary { Source = "memory" };
        foreach (var (k, v) in source.state_dict())
        {
            dict.Add(prefix + k, v.is_floating_point() ? full_like(v, value) : v.clone());
        }

        return dict;
    }

    [Theory]
    [InlineData("")]
    [InlineData("module.")]
    [InlineData("backbone.")]
    [InlineData("module.backbone.")]
    public void Prefixes_are_stripped_and_uncomputed_parts_ignored(string prefix)
    {
        using var full = ResNetFeatureExtractor.FromLayers(ResNetVariant.ResNet18, new[] { 1, 2, 3, 4 });
        using var weights = Prefixed(full, prefix, 0.5f);
        weights.Add(prefix + "fc.weight", zeros(1000, 512));
        weights.Add(prefix + "fc.bias", zeros(1000));
        using var extractor = ResNetFeatureExtractor.FromLayers(ResNetVariant.ResNet18, new[] { 1, 2 });
        var report = BackboneWeights.Load(extractor, weights, "memory");
        Assert.Equal(prefix, report.Prefix);
        Assert.False(extractor.IsRandom);
        Assert.Contains(prefix + "fc.weight", report.Ignored);
        Assert.Contains(report.Ignored, k => k.StartsWith(prefix + "layer4.", StringComparison.Ordinal));
        Assert.Equal(extractor.state_dict().Count, report.Loaded);
        Assert.Equal(0.5f, extractor.state_dict()["layer2.1.conv2.weight"].mean().item<float>(), 1e-6);
    }

    public static TheoryData<string, string> CheckpointCases => Fixtures.Cases("e2e");

    [Theory]
    [MemberData(nameof(CheckpointCases))]
    public void Reference_checkpoint_with_state_dict_entry_loads_its_backbone(string caseName, string source)
    {
        // ckpt.pth.tar: {"epoch", "arch", "state_dict": {"module.backbone.*", "module.reconstruction.*"}, ...}
        // The backbone (variant and output blocks) as the case's config.json describes it, not as one case happens to be.
        var dir = Fixtures.CaseDirectory("e2e", caseName, source);
        var ckpt = Path.Combine(dir, "ckpt.pth.tar");
        using var config = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        var net = config.RootElement.GetProperty("net").EnumerateArray().Single(n => n.GetProperty("name").GetString() == "backbone");
        var type = net.GetProperty("type").GetString()!;
        Assert.True(type.Contains("efficientnet", StringComparison.Ordinal), $"{caseName}: this test reads EfficientNet checkpoints; the case's backbone is {type}");
        var variant = type[(type.LastIndexOf('_') + 1)..];
        var outBlocks = net.GetProperty("kwargs").GetProperty("outblocks").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        using var extractor = EfficientNetFeatureExtractor.FromBlocks(variant, outBlocks);
        var report = BackboneWeights.Load(extractor, ckpt);
        Assert.Equal("module.backbone.", report.Prefix);
        Assert.Contains(report.Ignored, k => k.StartsWith("module.reconstruction.", StringComparison.Ordinal));
        Assert.Contains("module.backbone._fc.weight", report.Ignored);
        int lastBlock = EfficientNetSpec.Get(variant).Blocks.Count - 1;
        if (outBlocks.Max() < lastBlock)
        {
            Assert.Contains($"module.backbone._blocks.{lastBlock}._project_conv.weight", report.Ignored); // built no further than needed
        }

        Assert.Equal(extractor.state_dict().Count, report.Loaded);
    }

    [Fact]
    public void Safetensors_file_with_module_prefix_loads_and_missing_batch_counters_are_tolerated()
    {
        using var source = EfficientNetFeatureExtractor.FromLayers("b0", new[] { 1, 2 });
        var path = Path.Combine(dir, "b0.safetensors");
        var dict = source.state_dict().Where(kv => !kv.Key.EndsWith("num_batches_tracked", StringComparison.Ordinal)).ToDictionary(kv => "module." + kv.Key, kv => kv.Value);
        StateDict.SaveSafetensors(dict, path);
        using var target = EfficientNetFeatureExtractor.FromLayers("b0", new[] { 1, 2 });
        var report = BackboneWeights.Load(target, path);
        Assert.Equal("module.", report.Prefix);
        using var scope = NewDisposeScope();
        var x = randn(1, 3, 32, 32);
        Assert.Equal(0f, (source.forward(x)[1] - target.forward(x)[1]).abs().max().item<float>());
    }

    [Fact]
    public void Another_architecture_wrong_shapes_and_bad_files_give_clear_errors()
    {
        using var resnet = ResNetFeatureExtractor.FromLayers(ResNetVariant.ResNet18, new[] { 1 });
        using var b4 = EfficientNetFeatureExtractor.FromLayers("b4", new[] { 1 });
        using (var b4Weights = Prefixed(b4, string.Empty, 0.1f))
        {
            var ex = Assert.Throws<StateDictMismatchException>(() => BackboneWeights.Load(resnet, b4Weights, "b4.pth"));
            Assert.Contains("another architecture", ex.Message);
            Assert.Contains("b4.pth", ex.Message);

            using var b0 = EfficientNetFeatureExtractor.FromLayers("b0", new[] { 1 });
            var shapes = Assert.Throws<StateDictMismatchException>(() => BackboneWeights.Load(b0, b4Weights, "b4.pth"));
            Assert.Contains("_conv_stem.weight: expected [32, 3, 3, 3], got [48, 3, 3, 3]", shapes.Message);
            Assert.True(b0.IsRandom);
        }

        var text = Path.Combine(dir, "weights.pth");
        File.WriteAllText(text, "not a checkpoint");
        Assert.Contains(text, Assert.Throws<InvalidDataException>(() => BackboneWeights.Load(b4, text)).Message);

        var truncated = Path.Combine(dir, "truncated.pth");
        var bytes = File.ReadAllBytes(Path.Combine(Fixtures.EmbeddedRoot, "reconstruction", "small_learned", "state_dict.pth"));
        File.WriteAllBytes(truncated, bytes[..(bytes.Length * 2 / 3)]);
        Assert.Contains(truncated, Assert.Throws<InvalidDataException>(() => BackboneWeights.Load(b4, truncated)).Message);

        // A reconstruction checkpoint is a checkpoint of another architecture for a backbone.
        var recon = Path.Combine(Fixtures.EmbeddedRoot, "reconstruction", "small_learned", "state_dict.pth");
        Assert.Contains("another architecture", Assert.Throws<StateDictMismatchException>(() => BackboneWeights.Load(b4, recon)).Message);
    }
}
