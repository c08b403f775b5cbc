using System.Text.Json;
using UniAD.Core.Reconstruction;
using UniAD.Core.Weights;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Parity;

/// <summary>
/// A few optimisation steps against the authors' code (fixtures/training/*): train mode, MSE loss,
/// backward, clip of the gradient norm over all parameters, AdamW step. Losses, gradient norms before
/// clipping and the final state dict must agree within 1e-4 absolute.
/// </summary>
public sealed class TrainingParityTests(ITestOutputHelper output)
{
    public static TheoryData<string, string> Cases => Fixtures.Cases("training");

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
        Assert.Equal("AdamW", config.GetProperty("optimizer").GetString());
        var losses = doc.RootElement.GetProperty("losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var norms = doc.RootElement.GetProperty("grad_norms_before_clip").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var betas = config.GetProperty("betas").EnumerateArray().Select(e => e.GetDouble()).ToArray();

        using var model = Fixtures.LoadReconstruction(config, Path.Combine(dir, "initial_state_dict.pth"));

        using var batches = StateDict.ReadSafetensors(Path.Combine(dir, "batches.safetensors"));
        int steps = config.GetProperty("steps").GetInt32();
        Assert.Equal(steps, losses.Length);
        Assert.Equal(steps, batches.Count);

        var parameters = model.parameters().ToList();
        var adamW = new UniAD.Core.Training.AdamWOptions { LearningRate = config.GetProperty("lr").GetDouble(), Beta1 = betas[0], Beta2 = betas[1], WeightDecay = config.GetProperty("weight_decay").GetDouble() };
        using var ours = new UniAD.Core.Training.AdamW(model.named_parameters(), adamW);
        using var theirs = optim.AdamW(parameters, lr: adamW.LearningRate, beta1: adamW.Beta1, beta2: adamW.Beta2, weight_decay: adamW.WeightDecay);
        bool useOurs = optimizerName.StartsWith("UniAD", StringComparison.Ordinal);
        double clip = config.GetProperty("clip_max_norm").GetDouble();
        model.train();
        double worst = 0;
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
            double norm = nn.utils.clip_grad_norm_(parameters, clip);
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
        double worstWeight = 0;
        foreach (var (key, tensor) in final)
        {
            worstWeight = Math.Max(worstWeight, TensorAssert.Close(state[key], tensor, 1e-4, 0, $"{caseName} final {key}"));
        }

        output.WriteLine($"[{source}] {caseName} with {optimizerName}: worst loss/norm diff {worst:E2}, worst final weight diff {worstWeight:E2}");
    }
}
