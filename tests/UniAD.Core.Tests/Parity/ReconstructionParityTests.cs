using System.Text.Json;
using UniAD.Core.Reconstruction;
using UniAD.Core.Weights;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Parity;

/// <summary>
/// The reconstruction network against tensors produced by the authors' code (fixtures/reconstruction/*):
/// forward and loss within 1e-4 absolute or relative, gradients within 1e-3 of the tensor's max magnitude.
/// </summary>
public sealed class ReconstructionParityTests(ITestOutputHelper output)
{
    public static TheoryData<string, string> Cases => Fixtures.Cases("reconstruction");

    [Theory]
    [MemberData(nameof(Cases))]
    public void Forward_loss_and_gradients_match_the_reference(string caseName, string source)
    {
        var dir = Fixtures.CaseDirectory("reconstruction", caseName, source);
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        using var model = Fixtures.LoadReconstruction(config.RootElement, Path.Combine(dir, "state_dict.pth"));
        model.eval();
        using var expected = StateDict.ReadSafetensors(Path.Combine(dir, "tensors.safetensors"));
        using var scope = NewDisposeScope();
        var featureAlign = expected["feature_align"];
        using var result = model.forward(featureAlign);
        var loss = AnomalyMap.Loss(result.FeatureRec, featureAlign);

        var recDiff = TensorAssert.Close(result.FeatureRec, expected["feature_rec"], 1e-4, 1e-4, $"{caseName} feature_rec");
        var predDiff = TensorAssert.Close(result.Pred, expected["pred"], 1e-4, 1e-4, $"{caseName} pred");
        var lossDiff = TensorAssert.Close(loss.reshape(expected["loss"].shape), expected["loss"], 1e-4, 1e-4, $"{caseName} loss");

        loss.backward();
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var gradKeys = expected.Keys.Where(k => k.StartsWith("grad.", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(gradKeys);
        double worstGrad = 0;
        foreach (var key in gradKeys)
        {
            var name = key["grad.".Length..];
            Assert.True(parameters.TryGetValue(name, out var parameter), $"The fixture has a gradient for '{name}', which the module lacks.");
            Assert.NotNull(parameter!.grad);
            worstGrad = Math.Max(worstGrad, TensorAssert.CloseToMax(parameter.grad!, expected[key], 1e-3, $"{caseName} {key}"));
        }

        output.WriteLine($"[{source}] {caseName}: max |diff| feature_rec {recDiff:E2}, pred {predDiff:E2}, loss {lossDiff:E2}; {gradKeys.Count} gradients, worst relative diff {worstGrad:E2}");
    }
}
