using TorchSharp;
using UniAD.Core.Training;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Training;

public sealed class AdamWTests
{
    private static void Steps(nn.Module<Tensor, Tensor> model, AdamW optimizer, Tensor x, int count)
    {
        for (int i = 0; i < count; i++)
        {
            using var scope = NewDisposeScope();
            optimizer.ZeroGrad();
            model.forward(x).square().mean().backward();
            optimizer.Step();
        }
    }

    [Fact]
    public void Single_step_follows_the_adamw_formula()
    {
        // One step from zero state: m = (1-b1) g, v = (1-b2) g², m̂ = g, v̂ = g², so
        // p ← p(1 − lr·wd) − lr · g / (|g| + eps) = p(1 − lr·wd) − lr·sign(g) (up to eps).
        using var p = new TorchSharp.Modules.Parameter(tensor(new float[] { 1f, -2f }));
        using var opt = new AdamW(new[] { ("p", p) }, new AdamWOptions { LearningRate = 0.1, WeightDecay = 0.5 });
        using (var loss = (p * tensor(new float[] { 3f, 4f })).sum())
        {
            loss.backward();
        }

        opt.Step();
        var values = p.data<float>().ToArray();
        Assert.Equal((1f * 0.95f) - 0.1f, values[0], 1e-5);
        Assert.Equal((-2f * 0.95f) - 0.1f, values[1], 1e-5);
    }

    [Fact]
    public void Saved_state_resumes_exactly()
    {
        using var gen = new Generator(3);
        using var x = randn(16, 4, generator: gen);
        var options = new AdamWOptions { LearningRate = 1e-2 };
        using var a = nn.Linear(4, 3);
        using var b = nn.Linear(4, 3);
        using (no_grad())
        {
            b.weight!.copy_(a.weight!);
            b.bias!.copy_(a.bias!);
        }

        using var optA = new AdamW(a.named_parameters(), options);
        Steps(a, optA, x, 3);
        using var optB = new AdamW(b.named_parameters(), options);
        Steps(b, optB, x, 3);
        var saved = optA.StateTensors();
        Assert.Equal(6, saved.Count);
        Assert.Equal(3L, saved["step.weight"].item<long>());

        using var resumed = new AdamW(b.named_parameters(), options);
        resumed.LoadState(saved);
        Steps(a, optA, x, 2);
        Steps(b, resumed, x, 2);
        Assert.Equal(0f, (a.weight! - b.weight!).abs().max().item<float>());
        foreach (var t in saved.Values)
        {
            t.Dispose();
        }
    }

    [Fact]
    public void Bad_options_and_state_are_rejected()
    {
        using var p = new TorchSharp.Modules.Parameter(zeros(2));
        Assert.Contains("LearningRate = 0", Assert.Throws<ArgumentException>(() => new AdamW(new[] { ("p", p) }, new AdamWOptions { LearningRate = 0 })).Message);
        using var opt = new AdamW(new[] { ("p", p) }, new AdamWOptions());
        using var wrong = zeros(3);
        using var step = tensor(1L);
        var ex = Assert.Throws<InvalidDataException>(() => opt.LoadState(new Dictionary<string, Tensor> { ["step.p"] = step, ["exp_avg.p"] = wrong, ["exp_avg_sq.p"] = wrong }));
        Assert.Contains("'p'", ex.Message);
        Assert.Throws<InvalidDataException>(() => opt.LoadState(new Dictionary<string, Tensor> { ["step.q"] = step }));
    }

    [Theory]
    [InlineData(0, 1e-4)]
    [InlineData(799, 1e-4)]
    [InlineData(800, 1e-5)]
    [InlineData(1600, 1e-6)]
    public void StepLR_decays_every_step_size_epochs(int epoch, double expected)
    {
        Assert.Equal(expected, new StepLRSchedule().LearningRateAt(1e-4, epoch), 1e-12);
    }
}
