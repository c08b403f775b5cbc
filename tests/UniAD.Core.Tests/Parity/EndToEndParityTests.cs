using UniAD.Core.Models;
using UniAD.Core.Weights;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Parity;

/// <summary>Whole reference checkpoints (fixtures/e2e/*): image → feature_align → feature_rec → pred, within 1e-4 absolute or relative.</summary>
public sealed class EndToEndParityTests(ITestOutputHelper output)
{
    public static TheoryData<string, string> Cases => Fixtures.Cases("e2e");

    [Theory]
    [MemberData(nameof(Cases))]
    public void Reference_checkpoint_reproduces_the_pipeline(string caseName, string source)
    {
        var dir = Fixtures.CaseDirectory("e2e", caseName, source);
        using var model = ReferenceCheckpoint.Load(Path.Combine(dir, "ckpt.pth.tar"), Path.Combine(dir, "config.json"));
        Assert.False(model.Backbone.IsRandom);
        model.eval();
        using var expected = StateDict.ReadSafetensors(Path.Combine(dir, "tensors.safetensors"));
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var result = model.forward(expected["image"]);
        var align = TensorAssert.Close(result.FeatureAlign, expected["feature_align"], 1e-4, 1e-4, $"{caseName} feature_align");
        var rec = TensorAssert.Close(result.FeatureRec, expected["feature_rec"], 1e-4, 1e-4, $"{caseName} feature_rec");
        var pred = TensorAssert.Close(result.Pred, expected["pred"], 1e-4, 1e-4, $"{caseName} pred");
        output.WriteLine($"[{source}] {caseName}: {model.Backbone.ModelName}, max |diff| feature_align {align:E2}, feature_rec {rec:E2}, pred {pred:E2}");
    }
}
