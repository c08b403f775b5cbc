using Onnx;
using UniAD.Core.Detection;
using UniAD.Core.Export;
using UniAD.Core.Metrics;
using UniAD.Core.Tests.Detection;
using Xunit.Abstractions;

namespace UniAD.Onnx.Tests;

/// <summary>
/// The opt-in <see cref="OnnxQuantization.DynamicInt8"/> export: every linear layer of the reconstruction as ONNX Runtime's
/// DynamicQuantizeMatMul with 7-bit int8 weights, the rest float32; run by the scorer, its maps stay close to the float32
/// export's (bounds below, measured differences printed), and the float32 export is untouched by the option's existence.
/// </summary>
public sealed class QuantizedExportTests(SyntheticData data, ITestOutputHelper output) : IClassFixture<SyntheticData>, IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("uniad-onnx-int8-").FullName;

    [Fact]
    public void Dynamic_int8_export_quantizes_the_reconstruction_linears_and_stays_close_to_float32()
    {
        using var detector = new AnomalyDetectorBuilder()
            .WithBackbone("mlnet-resnet18", new[] { 1, 2, 3 })
            .WithInputSize(96, 160)
            .WithNeckStride(16)
            .WithNeighborMask(3, 3)
            .WithReconstruction(o => o with { HiddenDim = 64, NumHeads = 4, NumEncoderLayers = 2, NumDecoderLayers = 2, FeedForwardDim = 128 })
            .WithImageScore(ImageScoreKind.PooledMax, 4)
            .WithSeed(5)
            .Build();
        var floatPath = Path.Combine(root, "float32.onnx");
        var int8Path = Path.Combine(root, "int8.onnx");
        detector.ExportOnnx(floatPath);
        detector.ExportOnnx(int8Path, new OnnxExportOptions { Quantization = OnnxQuantization.DynamicInt8 });

        // The graph: one DynamicQuantizeMatMul per linear layer of the reconstruction (input and output projections; per
        // encoder layer q, k, v, out and the two feed-forward layers; per decoder layer two attentions and two feed-forward
        // layers), int8 weights within +-63, the contrib opset imported, the metadata saying so; the float32 export has none.
        var quantized = ModelProto.Parser.ParseFrom(File.ReadAllBytes(int8Path));
        var plain = ModelProto.Parser.ParseFrom(File.ReadAllBytes(floatPath));
        var nodes = quantized.Graph.Node.Where(n => n.OpType == "DynamicQuantizeMatMul").ToList();
        Assert.Equal(2 + (2 * 6) + (2 * 10), nodes.Count);
        Assert.All(nodes, n => Assert.Equal("com.microsoft", n.Domain));
        Assert.Contains(quantized.OpsetImport, o => o.Domain == "com.microsoft" && o.Version == 1);
        Assert.Equal("dynamic-int8", quantized.MetadataProps.Single(p => p.Key == "uniad.quantization").Value);
        Assert.DoesNotContain(plain.Graph.Node, n => n.OpType == "DynamicQuantizeMatMul");
        Assert.DoesNotContain(plain.OpsetImport, o => o.Domain == "com.microsoft");
        Assert.Equal("none", plain.MetadataProps.Single(p => p.Key == "uniad.quantization").Value);
        var weights = quantized.Graph.Initializer.Where(i => i.Name.EndsWith(".weight_int8", StringComparison.Ordinal)).ToList();
        Assert.Equal(nodes.Count, weights.Count);
        Assert.All(weights, w => Assert.Equal((int)TensorProto.Types.DataType.Int8, w.DataType));
        var magnitudes = weights.SelectMany(w => w.RawData.ToByteArray()).Select(b => Math.Abs((int)(sbyte)b)).ToList();
        Assert.Equal(63, magnitudes.Max()); // every column's largest weight maps to +-63
        Assert.True(quantized.CalculateSize() < plain.CalculateSize(), "the int8 weights make the file smaller");

        // The key read back: absent (a file that predates it) means float32; an unknown name is refused naming key and value.
        var entries = plain.MetadataProps.ToDictionary(p => p.Key, p => p.Value);
        entries.Remove("uniad.quantization");
        Assert.Equal(OnnxQuantization.None, OnnxScoringInfo.Parse(entries, "old.onnx").Quantization);
        entries["uniad.quantization"] = "static-int4";
        var refused = Assert.Throws<InvalidDataException>(() => OnnxScoringInfo.Parse(entries, "odd.onnx"));
        Assert.Contains("'uniad.quantization' = 'static-int4'", refused.Message, StringComparison.Ordinal);

        // Scoring: the maps of the int8 model against the float32 export's, on real files and on varied sizes.
        using var floatScorer = OnnxAnomalyScorer.Load(floatPath, ScorerParity.Cpu2);
        using var int8Scorer = OnnxAnomalyScorer.Load(int8Path, ScorerParity.Cpu2);
        Assert.Equal(OnnxQuantization.DynamicInt8, int8Scorer.Info.Quantization);
        Assert.Equal(OnnxQuantization.None, floatScorer.Info.Quantization);
        var paths = data.Test.Samples.Take(6).Select(s => s.ImagePath).ToList();
        var expected = floatScorer.ScoreBatch(paths);
        var actual = int8Scorer.ScoreBatch(paths);
        double worstRelative = 0, sumAbs = 0, sumRef = 0, worstScore = 0;
        for (int i = 0; i < expected.Count; i++)
        {
            var e = expected[i].Map.Values;
            var a = actual[i].Map.Values;
            float range = System.Numerics.Tensors.TensorPrimitives.Max(e);
            for (int j = 0; j < e.Length; j++)
            {
                double d = Math.Abs(a[j] - e[j]);
                worstRelative = Math.Max(worstRelative, d / range);
                sumAbs += d;
                sumRef += Math.Abs(e[j]);
            }

            worstScore = Math.Max(worstScore, Math.Abs(actual[i].Score - expected[i].Score) / Math.Abs(expected[i].Score));
        }

        double meanRelative = sumAbs / sumRef;
        output.WriteLine($"int8 vs float32 (6 files, mlnet-resnet18 ImageNet weights, random reconstruction): largest map difference {worstRelative:P2} of the image's map maximum, mean |diff| {meanRelative:P3} of the mean map value, largest score difference {worstScore:P2}; file {quantized.CalculateSize() / 1024.0:F0} KiB vs {plain.CalculateSize() / 1024.0:F0} KiB");
        Assert.True(worstRelative < 0.005, $"largest map difference {worstRelative:P2} of the map maximum (bound 0.5 %; measured 0.05 %)");
        Assert.True(meanRelative < 0.001, $"mean map difference {meanRelative:P3} (bound 0.1 %; measured 0.011 %)");
        Assert.True(worstScore < 0.002, $"largest score difference {worstScore:P2} (bound 0.2 %; measured 0.02 %)");
        Assert.True(meanRelative > 0, "the int8 model computes something else than the float32 one: the test must see a difference");
    }

    [Fact]
    public void An_undefined_quantization_value_is_refused_naming_it()
    {
        var error = Assert.Throws<ArgumentException>(() => new OnnxExportOptions { Quantization = (OnnxQuantization)7 }.Validate());
        Assert.Contains("Quantization 7", error.Message, StringComparison.Ordinal);
    }

    public void Dispose() => Directory.Delete(root, recursive: true);
}
