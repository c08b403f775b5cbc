using System.Text.Json;
using UniAD.Core.Backbones;
using UniAD.Core.Weights;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Parity;

/// <summary>
/// Backbone and neck against the authors' code (fixtures/backbone/*): every output block and
/// feature_align within 1e-4 absolute or relative; the complete model's keys and shapes against the
/// pretrained file's; and proof that the static "same" padding decides the numbers wherever it differs
/// from padding computed from the actual input size.
/// </summary>
public sealed class BackboneParityTests(ITestOutputHelper output)
{
    public static TheoryData<string, string> Cases => Fixtures.Cases("backbone");

    private sealed record Config(string Model, int[] OutBlocks, int[] OutStrides, int[] OutPlanes, int NeckOutStride);

    private static Config ReadConfig(string dir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        var r = doc.RootElement;
        int[] Ints(string name) => r.GetProperty(name).EnumerateArray().Select(e => e.GetInt32()).ToArray();
        return new Config(r.GetProperty("model").GetString()!, Ints("outblocks"), Ints("outstrides"), Ints("outplanes"), r.GetProperty("neck_outstride").GetInt32());
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Blocks_and_feature_align_match_the_reference(string caseName, string source)
    {
        var dir = Fixtures.CaseDirectory("backbone", caseName, source);
        var config = ReadConfig(dir);
        using var extractor = EfficientNetFeatureExtractor.FromBlocks(config.Model, config.OutBlocks, config.OutStrides);
        Assert.Equal(config.OutPlanes, extractor.Channels);
        var report = BackboneWeights.Load(extractor, Path.Combine(dir, "state_dict.pth"));
        Assert.False(extractor.IsRandom);
        using var neck = new MfcnNeck(extractor.Channels, extractor.Strides, config.NeckOutStride);

        using var expected = StateDict.ReadSafetensors(Path.Combine(dir, "tensors.safetensors"));
        using var scope = NewDisposeScope();
        var features = extractor.forward(expected["image"]);
        var worst = 0.0;
        for (int i = 0; i < config.OutBlocks.Length; i++)
        {
            worst = Math.Max(worst, TensorAssert.Close(features[i], expected[$"block{config.OutBlocks[i]}"], 1e-4, 1e-4, $"{caseName} block{config.OutBlocks[i]}"));
        }

        var align = neck.forward(features);
        var alignDiff = TensorAssert.Close(align, expected["feature_align"], 1e-4, 1e-4, $"{caseName} feature_align");
        output.WriteLine($"[{source}] {caseName}: {report.Loaded} tensors loaded, {report.Ignored.Count} ignored; max |diff| blocks {worst:E2}, feature_align {alignDiff:E2}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Complete_model_has_the_pretrained_files_keys_and_shapes(string caseName, string source)
    {
        var dir = Fixtures.CaseDirectory("backbone", caseName, source);
        var config = ReadConfig(dir);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "full_state_dict_keys.json")));
        var expected = doc.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.EnumerateArray().Select(e => e.GetInt64()).ToArray());
        using var full = new EfficientNet(EfficientNetSpec.Get(config.Model), includeHead: true);
        var actual = full.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        Assert.All(expected, kv => Assert.True(kv.Value.SequenceEqual(actual[kv.Key]), $"{kv.Key}: expected [{string.Join(", ", kv.Value)}], got [{string.Join(", ", actual[kv.Key])}]"));
        output.WriteLine($"[{source}] {caseName}: {expected.Count} keys with identical shapes");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Padding_computed_from_the_actual_input_size_matches_only_where_it_is_the_same(string caseName, string source)
    {
        // Guard for the parity test above: EfficientNet-PyTorch pads statically from the nominal resolution
        // (380 for B4). Padding computed from the actual input size ("dynamic") gives other numbers exactly when
        // some convolution up to the deepest output block gets another padding that way; when none does (every
        // strided convolution sees even sizes both ways), the two must agree within the parity tolerance.
        var dir = Fixtures.CaseDirectory("backbone", caseName, source);
        var config = ReadConfig(dir);
        using var expected = StateDict.ReadSafetensors(Path.Combine(dir, "tensors.safetensors"));
        var image = expected["image"];
        int height = (int)image.shape[2], width = (int)image.shape[3];
        var mismatches = EfficientNetSpec.Get(config.Model).PaddingMismatches(height, width, config.OutBlocks.Max());
        // Dynamic padding: the nominal size of every convolution is the actual one, per axis (rows from the height,
        // columns from the width), so non-square cases are checked as square ones are.
        var spec = EfficientNetSpec.Get(config.Model).WithNominalResolution(height, width);
        Assert.Empty(spec.PaddingMismatches(height, width, config.OutBlocks.Max()));
        using var dynamic = EfficientNetFeatureExtractor.FromBlocks(spec, config.OutBlocks, config.OutStrides);
        BackboneWeights.Load(dynamic, Path.Combine(dir, "state_dict.pth"));
        using var scope = NewDisposeScope();
        var features = dynamic.forward(image);
        var diffs = config.OutBlocks.Select((b, i) => (features[i] - expected[$"block{b}"]).abs().max().item<float>()).ToArray();
        output.WriteLine($"[{source}] {caseName}: {mismatches.Count} convolutions pad differently at {height} x {width} ({string.Join("; ", mismatches)}); padding from the actual size gives max |diff| per block [{string.Join(", ", diffs.Select(d => d.ToString("E2", System.Globalization.CultureInfo.InvariantCulture)))}]");
        if (mismatches.Count > 0)
        {
            // The parity test's tolerance is 1e-4: at least one block must miss it by far.
            Assert.True(diffs.Max() > 1e-3, $"dynamic padding unexpectedly matched every block (max |diff| {diffs.Max()}) although {mismatches.Count} convolutions pad differently ({mismatches[0]})");
        }
        else
        {
            for (int i = 0; i < config.OutBlocks.Length; i++)
            {
                TensorAssert.Close(features[i], expected[$"block{config.OutBlocks[i]}"], 1e-4, 1e-4, $"{caseName} block{config.OutBlocks[i]} with padding from the actual size (no convolution pads differently)");
            }
        }
    }
}
