using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using DenseTensorF = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;
using Onnx;
using UniAD.Core.Backbones;
using UniAD.Core.Data;
using UniAD.Core.Weights;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Parity;

/// <summary>
/// ML.NET's ResNet-18 (the NuGet package's ONNX file, imported by data flow) against fixtures/imported_backbone/*:
/// the CNTK input convention applied by the backbone, and layer1..4 and the pool within the case's atol; and a live
/// check against ONNX Runtime running the same file with its stage outputs exposed, on the fixture image and on
/// random inputs at 224 and 256.
/// </summary>
public sealed class ImportedBackboneParityTests(ITestOutputHelper output)
{
    public static TheoryData<string, string> Cases => Fixtures.Cases("imported_backbone");

    private static readonly string[] Layers = { "layer1", "layer2", "layer3", "layer4" };

    private sealed record Config(string ModelFile, double Atol, IReadOnlyDictionary<string, string> OnnxNames, string Image);

    private static Config ReadConfig(string dir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        var r = doc.RootElement;
        var model = r.GetProperty("onnx_package").GetProperty("model").GetString()!;
        // The package's tools/DnnImageModels/... is copied to DnnImageModels/... in the output folder.
        var relative = model.StartsWith("tools/", StringComparison.Ordinal) ? model["tools/".Length..] : model;
        var names = r.GetProperty("onnx_tensor_names").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
        return new Config(Path.Combine(AppContext.BaseDirectory, relative), r.GetProperty("atol").GetDouble(), names, r.GetProperty("image").GetString()!);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Convention_layers_and_pool_match_the_reference(string caseName, string source)
    {
        var dir = Fixtures.CaseDirectory("imported_backbone", caseName, source);
        var config = ReadConfig(dir);
        using var extractor = (ResNetFeatureExtractor)Backbone.Create(MlNetBackbone.ModelName, new[] { 1, 2, 3, 4 }, config.ModelFile);
        Assert.False(extractor.IsRandom);
        Assert.Equal(new[] { 64, 128, 256, 512 }, extractor.Channels);
        Assert.Equal(new[] { 4, 8, 16, 32 }, extractor.Strides);
        using var expected = StateDict.ReadPyTorch(Path.Combine(dir, "all_tensors.pth"));
        using var scope = NewDisposeScope();

        // The detector's own preprocessing (ImageNet-normalised RGB), turned into CNTK's input by the backbone.
        var image = ImagePreprocessor.LoadImage(Path.Combine(dir, config.Image), new PreprocessOptions { InputSize = new GridSize(224, 224) }).unsqueeze(0);
        var cntk = extractor.ToNetworkInput(image);
        var inputDiff = TensorAssert.Close(cntk, expected["input_cntk"], config.Atol, 0, $"{caseName} input_cntk");

        // The network alone on the reference's input, then the whole path from the RGB image.
        var fromReference = extractor.ForwardNetworkInput(expected["input_cntk"]);
        var fromImage = extractor.forward(image);
        double worstNetwork = 0, worstImage = 0;
        for (int i = 0; i < Layers.Length; i++)
        {
            worstNetwork = Math.Max(worstNetwork, TensorAssert.Close(fromReference[i], expected[Layers[i]], config.Atol, 0, $"{caseName} {Layers[i]} (reference input)"));
            worstImage = Math.Max(worstImage, TensorAssert.Close(fromImage[i], expected[Layers[i]], config.Atol, 0, $"{caseName} {Layers[i]} (from the RGB image)"));
        }

        var pool = fromReference[3].mean(new long[] { 2, 3 }, keepdim: true);
        var poolDiff = TensorAssert.Close(pool, expected["pool"], config.Atol, 0, $"{caseName} pool");
        output.WriteLine($"[{source}] {caseName}: max |diff| input_cntk {inputDiff:E2}, layers from the reference input {worstNetwork:E2}, from the RGB image {worstImage:E2}, pool {poolDiff:E2} (atol {config.Atol:E1})");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Layers_match_onnx_runtime_on_the_same_file(string caseName, string source)
    {
        var dir = Fixtures.CaseDirectory("imported_backbone", caseName, source);
        var config = ReadConfig(dir);
        using var extractor = (ResNetFeatureExtractor)Backbone.Create(MlNetBackbone.ModelName, new[] { 1, 2, 3, 4 }, config.ModelFile);
        using var imported = OnnxResNetImport.Import(config.ModelFile);
        Assert.Equal(new[] { 2, 2, 2, 3 }, imported.BlocksPerLayer);
        Assert.True(imported.AsymmetricPadding);
        // The data-flow walk finds the same stage outputs the fixture names.
        Assert.Equal(Layers.Select(l => config.OnnxNames[l]), imported.LayerOutputs);

        using var session = StagesSession(config.ModelFile, imported.InputName, imported.LayerOutputs);
        using var expected = StateDict.ReadPyTorch(Path.Combine(dir, "all_tensors.pth"));
        using var generator = new Generator(20261201);
        var inputs = new List<(string Name, Tensor Input)> { ("fixture image", expected["input_cntk"]) };
        foreach (var side in new[] { 224, 256 })
        {
            // Values like a real CNTK input: 0..255 minus a mean of about 115.
            inputs.Add(($"random {side} x {side}", (rand(new long[] { 1, 3, side, side }, generator: generator) * 255) - 115));
        }

        foreach (var (name, input) in inputs)
        {
            using var scope = NewDisposeScope();
            var ours = extractor.ForwardNetworkInput(input);
            var theirs = RunOrt(session, imported.InputName, imported.LayerOutputs, input);
            double worst = 0;
            for (int i = 0; i < Layers.Length; i++)
            {
                using var reference = theirs[i];
                worst = Math.Max(worst, TensorAssert.Close(ours[i], reference, config.Atol, 0, $"{caseName} {Layers[i]} vs ONNX Runtime ({name})"));
            }

            output.WriteLine($"[{source}] {caseName} {name}: max |diff| to ONNX Runtime over layer1..4 {worst:E2} (atol {config.Atol:E1})");
        }
    }

    /// <summary>The same ONNX file with the stage outputs as graph outputs and a free spatial size.</summary>
    private static InferenceSession StagesSession(string modelFile, string inputName, IReadOnlyList<string> stages)
    {
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(modelFile));
        var graph = model.Graph;
        graph.ValueInfo.Clear();
        var input = graph.Input.Single(i => i.Name == inputName);
        var dims = input.Type.TensorType.Shape.Dim;
        dims[2] = new TensorShapeProto.Types.Dimension { DimParam = "height" };
        dims[3] = new TensorShapeProto.Types.Dimension { DimParam = "width" };
        graph.Output.Clear();
        foreach (var stage in stages)
        {
            graph.Output.Add(new ValueInfoProto
            {
                Name = stage,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float } },
            });
        }

        using var options = new SessionOptions { IntraOpNumThreads = 2, GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        return new InferenceSession(Google.Protobuf.MessageExtensions.ToByteArray(model), options);
    }

    private static Tensor[] RunOrt(InferenceSession session, string inputName, IReadOnlyList<string> stages, Tensor input)
    {
        var shape = input.shape.Select(d => (int)d).ToArray();
        var data = input.contiguous().data<float>().ToArray();
        var feeds = new[] { NamedOnnxValue.CreateFromTensor(inputName, new DenseTensorF(data, shape)) };
        using var results = session.Run(feeds, stages);
        return results.Select(r =>
        {
            var t = r.AsTensor<float>();
            return tensor(t.ToArray(), t.Dimensions.ToArray().Select(d => (long)d).ToArray());
        }).ToArray();
    }
}
