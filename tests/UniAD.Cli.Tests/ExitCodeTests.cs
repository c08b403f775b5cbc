using TorchSharp;
using TorchSharp.PyBridge;

namespace UniAD.Cli.Tests;

/// <summary>Issue 11, section 1: documented failures are exit code 1 with a message, never a crash with a stack trace.</summary>
[Collection(CliCollection.Name)]
public sealed class ExitCodeTests(CliFixture fixture)
{
    [Fact]
    public void Importing_a_checkpoint_that_does_not_fit_is_a_failure_not_a_crash()
    {
        var folder = fixture.NewFolder("import");
        var checkpoint = Path.Combine(folder, "ckpt.pth.tar");
        using (var linear = torch.nn.Linear(2, 2))
        {
            linear.save_py(checkpoint); // a PyTorch state dict of another network
        }

        var config = Path.Combine(folder, "config.json");
        File.WriteAllText(config, """
            { "net": [
                { "name": "backbone", "type": "models.backbones.resnet18", "kwargs": { "outlayers": [1], "outstrides": [4] } },
                { "name": "neck", "type": "models.necks.MFCN", "kwargs": { "outstrides": [4], "outplanes": [64] } },
                { "name": "reconstruction", "type": "models.reconstructions.UniAD", "kwargs": { "hidden_dim": 16, "nhead": 2,
                  "num_encoder_layers": 1, "num_decoder_layers": 1, "dim_feedforward": 32, "feature_size": [16, 16], "pos_embed_type": "learned",
                  "neighbor_mask": { "neighbor_size": [3, 3], "mask": [true, true, true] } } } ] }
            """);
        var output = Path.Combine(folder, "imported.safetensors");
        var run = CliRunner.Run("import", "--checkpoint", checkpoint, "--config", config, "--out", output);
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.Contains("does not fit", run.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", run.All, StringComparison.Ordinal);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void A_missing_or_corrupt_model_is_a_failure_with_a_message()
    {
        var missing = CliRunner.Run("score", "--model", Path.Combine(fixture.Root, "no-such-model.safetensors"), fixture.GoodImages()[0]);
        Assert.True(missing.ExitCode == 1, missing.ToString());
        Assert.Contains("no-such-model.safetensors", missing.Error, StringComparison.Ordinal);

        var corrupt = Path.Combine(fixture.NewFolder("corrupt"), "model.safetensors");
        File.WriteAllText(corrupt, "not a model");
        var run = CliRunner.Run("evaluate", "--model", corrupt, "--data", $"mvtec:{fixture.Data}");
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.Contains(corrupt, run.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", run.All, StringComparison.Ordinal);
    }

    [Fact]
    public void Cancelling_is_exit_code_130()
    {
        if (CliRunner.External is not null)
        {
            return; // in-process only: a process cannot be handed a cancelled token
        }

        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        var run = CliRunner.Run(new[] { "score", "--model", fixture.Model, fixture.GoodImages()[0] }, cancel.Token);
        Assert.True(run.ExitCode == 130, run.ToString());
        Assert.Contains("cancelled", run.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void The_cli_and_library_versions_agree()
    {
        // The tool package's version (samples/UniAD.Cli) is the library's.
        Assert.Equal(typeof(UniAD.Core.Detection.AnomalyDetector).Assembly.GetName().Version, typeof(Cli).Assembly.GetName().Version);
    }
}
