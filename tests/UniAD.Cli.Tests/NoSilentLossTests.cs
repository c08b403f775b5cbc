using UniAD.Core.Detection;
using UniAD.Core.Weights;

namespace UniAD.Cli.Tests;

/// <summary>
/// Issue 26: commands never write over a file they read (after links are followed), and a training run that diverges stops
/// with a message that names divergence and the learning rate, leaving no file with NaN weights.
/// </summary>
[Collection(CliCollection.Name)]
public sealed class NoSilentLossTests(CliFixture fixture)
{
    [Fact]
    public void Export_refuses_to_write_over_its_model_also_through_a_link()
    {
        var folder = fixture.NewFolder("overwrite");
        var model = Path.Combine(folder, "m.safetensors");
        File.Copy(fixture.CalibratedModel, model);
        var before = File.ReadAllBytes(model);

        var same = CliRunner.Run("export", "--model", model, "--out", model);
        Assert.True(same.ExitCode == 1, same.ToString());
        Assert.Contains("--out", same.Error, StringComparison.Ordinal);
        Assert.Contains("is the same file as --model", same.Error, StringComparison.Ordinal);

        var link = Path.Combine(folder, "link.onnx");
        File.CreateSymbolicLink(link, model);
        var throughLink = CliRunner.Run("export", "--model", model, "--out", link);
        Assert.True(throughLink.ExitCode == 1, throughLink.ToString());
        Assert.Contains("is the same file as --model", throughLink.Error, StringComparison.Ordinal);

        var dotted = CliRunner.Run("export", "--model", model, "--out", Path.Combine(folder, ".", "..", Path.GetFileName(folder), "m.safetensors"));
        Assert.True(dotted.ExitCode == 1, dotted.ToString());
        Assert.Equal(before, File.ReadAllBytes(model)); // the model is untouched by all three
    }

    [Fact]
    public void Train_never_uses_random_features_unless_asked_and_offers_the_presets()
    {
        var folder = fixture.NewFolder("random");
        var output = Path.Combine(folder, "m.safetensors");
        var noWeights = CliRunner.Run("train", "--data", $"mvtec:{fixture.Data}", "--out", output, "--epochs", "1");
        Assert.True(noWeights.ExitCode == 2, noWeights.ToString());
        Assert.Contains("--backbone efficientnet-b4 has no pretrained weights", noWeights.Error, StringComparison.Ordinal);
        Assert.Contains("--weights FILE", noWeights.Error, StringComparison.Ordinal);
        Assert.Contains("--random-weights", noWeights.Error, StringComparison.Ordinal);
        Assert.Contains("--preset cpu", noWeights.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(output));

        var both = CliRunner.Run(ParsingTests.Train(fixture, "--weights", fixture.Model, "--random-weights"));
        Assert.True(both.ExitCode == 2, both.ToString());
        var badPreset = CliRunner.Run(ParsingTests.Train(fixture, "--preset", "gpu"));
        Assert.True(badPreset.ExitCode == 2, badPreset.ToString());
        Assert.Contains("cpu, paper", badPreset.Error, StringComparison.Ordinal);

        // --preset cpu: the NuGet ResNet-18, so no weights are needed; its network with a tiny override of the input
        // (a 128-pixel tile instead of 256, images 128 wide) keeps the test fast.
        var cpu = CliRunner.Run("train", "--data", $"mvtec:{fixture.Data}", "--out", output, "--preset", "cpu", "--epochs", "1", "--batch", "4", "--holdout", "0", "--tile", "128", "--resize-width", "128");
        Assert.True(cpu.ExitCode == 0, cpu.ToString());
        var info = DetectorCheckpoint.ReadInfo(output);
        Assert.Equal("mlnet-resnet18", info.Options.Backbone);
        Assert.Equal(128, info.Options.Reconstruction.HiddenDim); // the preset's network
        Assert.Equal(2, info.Options.Reconstruction.NumEncoderLayers);
    }

    [Fact]
    public void Evaluate_refuses_to_write_its_report_over_its_model()
    {
        var folder = fixture.NewFolder("evaluate-overwrite");
        var model = Path.Combine(folder, "m.safetensors");
        File.Copy(fixture.CalibratedModel, model);
        var before = File.ReadAllBytes(model);
        var run = CliRunner.Run("evaluate", "--model", model, "--data", $"mvtec:{fixture.Data}", "--json", model);
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.Contains("--json", run.Error, StringComparison.Ordinal);
        Assert.Contains("is the same file as --model", run.Error, StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(model));
    }

    [Fact]
    public void Train_refuses_an_output_that_is_its_resume_checkpoint_or_its_weights()
    {
        var folder = fixture.NewFolder("train-overwrite");
        var checkpoint = Path.Combine(folder, "ckpt.safetensors");
        File.Copy(fixture.Model, checkpoint);
        var before = File.ReadAllBytes(checkpoint);
        var resume = CliRunner.Run(ParsingTests.Train(fixture, "--resume", checkpoint, "--epochs", "3", "--out", checkpoint));
        Assert.True(resume.ExitCode == 1, resume.ToString());
        Assert.Contains("--out", resume.Error, StringComparison.Ordinal);
        Assert.Contains("--resume", resume.Error, StringComparison.Ordinal);

        var weights = Path.Combine(folder, "weights.safetensors");
        File.Copy(fixture.Model, weights);
        var overWeights = CliRunner.Run(ParsingTests.Train(fixture, "--weights", weights, "--out", weights));
        Assert.True(overWeights.ExitCode == 1, overWeights.ToString());
        Assert.Contains("--weights", overWeights.Error, StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(checkpoint));
    }

    [Fact]
    public void A_diverging_run_stops_naming_divergence_and_the_learning_rate_and_writes_no_nan_file()
    {
        var folder = fixture.NewFolder("diverge");
        var output = Path.Combine(folder, "m.safetensors");
        var run = CliRunner.Run(ParsingTests.Train(fixture, "--holdout", "0", "--lr", "1e10", "--epochs", "3", "--out", output));
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.Contains("Training diverged at epoch", run.Error, StringComparison.Ordinal);
        Assert.Contains("learning rate 1E+10", run.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("internal error", run.All, StringComparison.Ordinal);

        // Whatever was written holds finite weights only (a checkpoint of an earlier epoch may exist; no NaN one).
        foreach (var file in Directory.EnumerateFiles(folder))
        {
            using var tensors = StateDict.ReadSafetensors(file);
            Assert.All(tensors, kv => Assert.True(!kv.Value.is_floating_point() || TorchSharp.torch.isfinite(kv.Value).all().item<bool>(), $"{file}: '{kv.Key}' holds NaN or infinite values"));
            using var loaded = AnomalyDetector.Load(file);
        }
    }
}
