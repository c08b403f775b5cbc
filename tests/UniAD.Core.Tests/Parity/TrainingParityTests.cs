using System.Text.Json;
using UniAD.Core.Reconstruction;
using UniAD.Core.Weights;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Parity;

/// <summary>
/// A few optimisation steps against the authors' code (fixtures/training/*): train mode, MSE loss,
/// backward, clip of the gradient norm over all parameters, AdamW step. Losses, gradient norms before
/// clipping and the final state dict must agree within 1e-4 absolute, except the key slices of the
/// attention biases (see <see cref="KeyBiasGradientBound"/>).
/// </summary>
public sealed class TrainingParityTests(ITestOutputHelper output)
{
    /// <summary>
    /// Bound on the norm of every key slice's gradient relative to the global gradient norm, at every step.
    /// The key slice (rows C..2C) of an attention's 3C in_proj_bias adds the same value q·b_k to every logit of
    /// a query, and softmax is invariant to that: its gradient is analytically zero and what backward returns
    /// is float32 rounding. Measured on small_adamw_clip: at most 1.4e-9 of the global norm over the six
    /// steps (the final key rows then differ by 1.4e-5); the bound leaves a margin of about 700 for other BLAS builds.
    /// </summary>
    public const double KeyBiasGradientBound = 1e-6;

    public static TheoryData<string, string> Cases => Fixtures.Cases("training");

    /// <summary>The parameters whose rows C..2C are an attention's key bias: every "...self_attn.in_proj_bias" and "...multihead_attn.in_proj_bias".</summary>
    internal static bool IsAttentionBias(string name) => name.EndsWith("self_attn.in_proj_bias", StringComparison.Ordinal) || name.EndsWith("multihead_attn.in_proj_bias", StringComparison.Ordinal);

    /// <summary>Rows C..2C of a 3C in_proj_bias.</summary>
    internal static Tensor KeySlice(Tensor bias) => bias.narrow(0, bias.shape[0] / 3, bias.shape[0] / 3);

    public static TheoryData<string, string, string> CasesPerOptimizer()
    {
        var data = new TheoryData<string, string, string>();
        foreach (var row in Cases)
        {
            data.Add((string)row[0], (string)row[1], "UniAD.Core.Training.AdamW");
            data.Add((string)row[0], (string)row[1], "TorchSharp optim.AdamW");
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(CasesPerOptimizer))]
    public void Steps_match_the_reference(string caseName, string source, string optimizerName)
    {
        var dir = Fixtures.CaseDirectory("training", caseName, source);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
        var config = doc.RootElement.GetProperty("config");
        // The fixtures promise lr, weight decay, clip norm and the module's hyper-parameters; the optimizer's name, its
        // betas and the step count are read when present (AdamW, PyTorch's default betas, one step per loss otherwise).
        if (config.TryGetProperty("optimizer", out var optimizerJson))
        {
            Assert.Equal("AdamW", optimizerJson.GetString());
        }

        var losses = doc.RootElement.GetProperty("losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var norms = doc.RootElement.GetProperty("grad_norms_before_clip").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var betas = config.TryGetProperty("betas", out var betasJson) ? betasJson.EnumerateArray().Select(e => e.GetDouble()).ToArray() : new[] { 0.9, 0.999 };

        using var model = Fixtures.LoadReconstruction(config, Path.Combine(dir, "initial_state_dict.pth"));

        using var batches = StateDict.ReadSafetensors(Path.Combine(dir, "batches.safetensors"));
        int steps = config.TryGetProperty("steps", out var stepsJson) ? stepsJson.GetInt32() : losses.Length;
        Assert.Equal(steps, losses.Length);
        Assert.Equal(steps, batches.Count);

        var parameters = model.parameters().ToList();
        var keyBiases = model.named_parameters().Where(p => IsAttentionBias(p.name)).ToList();
        Assert.NotEmpty(keyBiases);
        var adamW = new UniAD.Core.Training.AdamWOptions { LearningRate = config.GetProperty("lr").GetDouble(), Beta1 = betas[0], Beta2 = betas[1], WeightDecay = config.GetProperty("weight_decay").GetDouble() };
        using var ours = new UniAD.Core.Training.AdamW(model.named_parameters(), adamW);
        using var theirs = optim.AdamW(parameters, lr: adamW.LearningRate, beta1: adamW.Beta1, beta2: adamW.Beta2, weight_decay: adamW.WeightDecay);
        bool useOurs = optimizerName.StartsWith("UniAD", StringComparison.Ordinal);
        double clip = config.GetProperty("clip_max_norm").GetDouble();
        model.train();
        double worst = 0, worstKeyRatio = 0;
        for (int step = 0; step < steps; step++)
        {
            using var scope = NewDisposeScope();
            if (useOurs)
            {
                ours.ZeroGrad();
            }
            else
            {
                theirs.zero_grad();
            }

            var batch = batches[$"batch{step}"];
            var featureRec = model.Reconstruct(batch);
            var loss = AnomalyMap.Loss(featureRec, batch);
            loss.backward();
            // The key slices' gradient, before clipping (which scales every gradient alike).
            double keyNorm = Math.Sqrt(keyBiases.Sum(p => KeySlice(p.parameter.grad!).to(float64).square().sum().item<double>()));
            double norm = nn.utils.clip_grad_norm_(parameters, clip);
            double keyRatio = keyNorm / norm;
            worstKeyRatio = Math.Max(worstKeyRatio, keyRatio);
            Assert.True(keyRatio <= KeyBiasGradientBound, $"step {step}: the key-bias gradient norm {keyNorm:E3} is {keyRatio:E3} of the global norm {norm:E6}, above {KeyBiasGradientBound:E1}: it should be analytically zero");
            if (useOurs)
            {
                ours.Step();
            }
            else
            {
                theirs.step();
            }

            double lossValue = loss.item<float>();
            output.WriteLine($"step {step}: loss {lossValue:F7} (reference {losses[step]:F7}), grad norm {norm:F7} (reference {norms[step]:F7})");
            Assert.True(Math.Abs(lossValue - losses[step]) <= 1e-4, $"step {step}: loss {lossValue} vs reference {losses[step]}");
            Assert.True(Math.Abs(norm - norms[step]) <= 1e-4, $"step {step}: gradient norm {norm} vs reference {norms[step]}");
            worst = Math.Max(worst, Math.Max(Math.Abs(lossValue - losses[step]), Math.Abs(norm - norms[step])));
        }

        using var final = StateDict.ReadPyTorch(Path.Combine(dir, "final_state_dict.pth"));
        var state = model.state_dict();
        Assert.Equal(final.Keys.OrderBy(k => k, StringComparer.Ordinal), state.Keys.OrderBy(k => k, StringComparer.Ordinal));
        // AdamW moves each element by at most about lr per step whatever its gradient (|m̂ / (√v̂ + ε)| ≤ 1 for a
        // steady sign, plus the decay lr·wd·|w|); the key slices' gradients are rounding noise, whose sign two
        // correct implementations need not share, so their elements may end up to 2 x lr x steps apart. That is
        // the optimizer's own limit: it is their bound (plus 1e-4). Every other element keeps 1e-4.
        double lr = adamW.LearningRate;
        double keyBound = (2 * lr * steps) + 1e-4;
        double worstWeight = 0, worstKey = 0;
        foreach (var (key, tensor) in final)
        {
            if (IsAttentionBias(key))
            {
                long c = tensor.shape[0] / 3;
                var keep = cat(new[] { tensor.narrow(0, 0, c), tensor.narrow(0, 2 * c, c) });
                var mine = cat(new[] { state[key].narrow(0, 0, c), state[key].narrow(0, 2 * c, c) });
                worstWeight = Math.Max(worstWeight, TensorAssert.Close(mine, keep, 1e-4, 0, $"{caseName} final {key} (query and value rows)"));
                worstKey = Math.Max(worstKey, TensorAssert.Close(KeySlice(state[key]), KeySlice(tensor), keyBound, 0, $"{caseName} final {key} (key rows {c}..{2 * c}, bound 2 x lr x steps + 1e-4)"));
            }
            else
            {
                worstWeight = Math.Max(worstWeight, TensorAssert.Close(state[key], tensor, 1e-4, 0, $"{caseName} final {key}"));
            }
        }

        output.WriteLine($"[{source}] {caseName} with {optimizerName}: worst loss/norm diff {worst:E2}, worst final weight diff {worstWeight:E2}; key-bias gradient at most {worstKeyRatio:E2} of the global norm, key-bias final diff {worstKey:E2} (bound {keyBound:E2})");
    }
}
