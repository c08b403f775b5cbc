using System.Text.Json;
using TorchSharp;
using UniAD.Core.Reconstruction;
using UniAD.Core.Weights;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Parity;

/// <summary>
/// The reconstruction network against tensors produced by the authors' code (fixtures/reconstruction/*):
/// forward and loss within 1e-4 absolute or relative, gradients within 1e-3 of the tensor's max magnitude,
/// except gradients that are small next to the global gradient scale (see <see cref="SmallGradient"/>).
/// </summary>
public sealed class ReconstructionParityTests(ITestOutputHelper output)
{
    /// <summary>
    /// A gradient tensor whose max |expected| is below this fraction of the largest expected gradient of the
    /// case is "small": float32 rounding, which scales with the gradients a backward pass sums (the global
    /// scale), not with the tensor's own, can then exceed 1e-3 of its own max.
    /// </summary>
    /// <remarks>
    /// Measured on default_paper (global max |grad| 2.304e-2): the small tensors are decoder layers 0 to 2's
    /// learned_embed (1.3e-3 to 3.3e-3 of the global max; layer 3's is 1.1e-2) and pos_embed.row_embed (8.1e-3). They are not
    /// analytically zero: each learned_embed row is the query of ONE token, so its gradient sums that token's
    /// B = 2 contributions, where a shared weight sums L·B = 392 (and it enters through a post-norm LayerNorm).
    /// decoder.layers.1.learned_embed: max |expected| 4.139e-5 (1.8e-3 of the global max), ours − expected
    /// 2.741e-7 = 6.6e-3 of its own max, 1.2e-5 of the global max. The same network run in float64 says whose
    /// rounding that is: our float32 gradient is within 2.0e-11 of it, the fixture's within 2.741e-7 (worst
    /// over all tensors: ours 1.0e-8, the fixture's 5.9e-7). The small cases have no small tensor (their
    /// smallest is 3.3e-2 and 2.5e-2 of the global max), so they keep 1e-3 of the own max everywhere.
    /// </remarks>
    public const double SmallGradient = 1e-2;

    /// <summary>
    /// For small tensors, max |ours − expected| must stay below this fraction of the global max: the
    /// reference's float32 noise (measured 1.2e-5 of it), with a margin of 8.
    /// </summary>
    public const double GlobalNoiseFloor = 1e-4;

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
        double global = gradKeys.Max(k => expected[k].abs().max().item<float>());
        Assert.True(global > 0, "every expected gradient is zero");
        var small = gradKeys.Where(k => expected[k].abs().max().item<float>() < SmallGradient * global).ToList();
        Dictionary<string, Tensor>? exact = small.Count > 0 ? Float64Gradients(config.RootElement, Path.Combine(dir, "state_dict.pth"), featureAlign) : null;
        double worstGrad = 0, worstSmall = 0;
        foreach (var key in gradKeys)
        {
            var name = key["grad.".Length..];
            Assert.True(parameters.TryGetValue(name, out var parameter), $"The fixture has a gradient for '{name}', which the module lacks.");
            Assert.NotNull(parameter!.grad);
            if (!small.Contains(key))
            {
                worstGrad = Math.Max(worstGrad, TensorAssert.CloseToMax(parameter.grad!, expected[key], 1e-3, $"{caseName} {key}"));
                continue;
            }

            // A small gradient: negligible in BOTH implementations at the SmallGradient level, the two within
            // the reference's float32 noise of the global scale, and ours within 1e-3 of its own max of the
            // same network computed in float64 (so ours is still checked at full strength).
            double ours = parameter.grad!.abs().max().item<float>(), theirs = expected[key].abs().max().item<float>();
            Assert.True(ours < SmallGradient * global, $"{caseName} {key}: max |ours| = {ours:E3} is not below {SmallGradient:E0} x the global max {global:E3}, though the reference's is ({theirs:E3}).");
            double diff = (parameter.grad! - expected[key]).abs().max().item<float>();
            Assert.True(diff <= GlobalNoiseFloor * global, $"{caseName} {key}: max |ours − expected| = {diff:E3} exceeds {GlobalNoiseFloor:E0} x the global max {global:E3}.");
            worstGrad = Math.Max(worstGrad, TensorAssert.CloseToMax(parameter.grad!, exact![name], 1e-3, $"{caseName} {key} against float64"));
            worstSmall = Math.Max(worstSmall, diff / global);
        }

        output.WriteLine($"[{source}] {caseName}: max |diff| feature_rec {recDiff:E2}, pred {predDiff:E2}, loss {lossDiff:E2}; {gradKeys.Count} gradients (global max {global:E3}), worst relative diff {worstGrad:E2}; " +
                         $"{small.Count} small ones ({string.Join(", ", small.Select(k => k["grad.".Length..]))}) differ from the reference by at most {worstSmall:E2} of the global max");
    }

    /// <summary>The gradients of the same network and input in float64: what both float32 implementations approximate.</summary>
    private static Dictionary<string, Tensor> Float64Gradients(JsonElement config, string stateDict, Tensor featureAlign)
    {
        var model = Fixtures.LoadReconstruction(config, stateDict);
        model.to(float64);
        model.eval();
        var input = featureAlign.to(float64);
        using (var result = model.forward(input))
        {
            AnomalyMap.Loss(result.FeatureRec, input).backward();
        }

        return model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!);
    }
}
