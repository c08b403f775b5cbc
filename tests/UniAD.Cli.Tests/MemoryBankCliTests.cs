using UniAD.Core.Detection;
using UniAD.Core.Weights;

namespace UniAD.Cli.Tests;

/// <summary>Issue 27: <c>uniad train --model memory-bank</c> fits, calibrates and writes a model every other command takes.</summary>
[Collection(CliCollection.Name)]
public sealed class MemoryBankCliTests(CliFixture fixture)
{
    [Fact]
    public void Train_fits_a_memory_bank_that_score_evaluate_and_export_take()
    {
        var folder = fixture.NewFolder("memory-bank");
        var output = Path.Combine(folder, "bank.safetensors");
        // The preset's network on 64-pixel tiles of images 64 wide keeps the test fast; 5 of 20 normal images calibrate.
        var train = CliRunner.Run("train", "--model", "memory-bank", "--data", $"mvtec:{fixture.Data}", "--out", output, "--tile", "64", "--resize-width", "64", "--holdout", "0.5", "--coreset-ratio", "0.1");
        Assert.True(train.ExitCode == 0, train.ToString());
        Assert.Contains("Fitted a memory bank of", train.Output, StringComparison.Ordinal);
        Assert.Contains("calibration: false-alarm rate", train.Output, StringComparison.Ordinal);
        var info = DetectorCheckpoint.ReadInfo(output);
        Assert.Equal(ModelFamilies.MemoryBank, info.Options.Family);
        Assert.Equal(0.1, info.Options.MemoryBank!.CoresetRatio);
        Assert.Equal(new[] { 2, 3 }, info.Options.BackboneLayers);
        Assert.NotNull(info.Calibration);
        Assert.Equal(ModelFamilies.MemoryBank, SafetensorsFile.ReadMetadata(output)[DetectorCheckpoint.FamilyKey]);

        var score = CliRunner.Run("score", "--model", output, fixture.GoodImages()[0]);
        Assert.True(score.ExitCode == 0, score.ToString());
        var evaluate = CliRunner.Run("evaluate", "--model", output, "--data", $"mvtec:{fixture.Data}", "--json", "-");
        Assert.True(evaluate.ExitCode == 0, evaluate.ToString());
        Assert.Contains("pixel_auroc", evaluate.Output, StringComparison.OrdinalIgnoreCase);
        var onnx = Path.Combine(folder, "bank.onnx");
        var export = CliRunner.Run("export", "--model", output, "--out", onnx);
        Assert.True(export.ExitCode == 0, export.ToString());
        Assert.True(new FileInfo(onnx).Length > 1_000_000); // the backbone and the bank are in it
    }

    [Fact]
    public void Bank_per_class_fits_a_bank_per_class_and_score_then_needs_the_class()
    {
        var folder = fixture.NewFolder("memory-bank-per-class");
        var output = Path.Combine(folder, "banks.safetensors");
        var train = CliRunner.Run("train", "--model", "memory-bank", "--bank-per-class", "--data", $"mvtec:{fixture.Data}", "--out", output, "--tile", "64", "--resize-width", "64", "--holdout", "0.5", "--coreset-ratio", "0.1");
        Assert.True(train.ExitCode == 0, train.ToString());
        Assert.Contains("Fitted memory banks of", train.Output, StringComparison.Ordinal);
        Assert.Contains("stripes ", train.Output, StringComparison.Ordinal); // each class's bank size
        Assert.True(DetectorCheckpoint.ReadInfo(output).Options.MemoryBank!.PerClassBanks);

        var image = fixture.GoodImages()[0];
        var without = CliRunner.Run("score", "--model", output, image);
        Assert.True(without.ExitCode == 1, without.ToString());
        Assert.Contains("memory bank per class", without.Error, StringComparison.Ordinal);
        var with = CliRunner.Run("score", "--model", output, "--class", "stripes", "--json", image);
        Assert.True(with.ExitCode == 0, with.ToString());
        Assert.Contains("\"score\"", with.Output, StringComparison.OrdinalIgnoreCase);

        var uniad = CliRunner.Run(ParsingTests.Train(fixture, "--bank-per-class", "--random-weights"));
        Assert.True(uniad.ExitCode == 2, uniad.ToString());
        Assert.Contains("--bank-per-class applies to --model memory-bank only", uniad.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Options_of_the_other_family_are_usage_errors()
    {
        var output = Path.Combine(fixture.NewFolder("memory-bank-usage"), "bank.safetensors");
        var preset = CliRunner.Run("train", "--model", "memory-bank", "--preset", "cpu", "--data", $"mvtec:{fixture.Data}", "--out", output);
        Assert.True(preset.ExitCode == 2, preset.ToString());
        Assert.Contains("--preset chooses a UniAD network", preset.Error, StringComparison.Ordinal);
        var resume = CliRunner.Run("train", "--model", "memory-bank", "--resume", fixture.Model, "--data", $"mvtec:{fixture.Data}", "--out", output);
        Assert.True(resume.ExitCode == 2, resume.ToString());
        Assert.Contains("nothing to resume", resume.Error, StringComparison.Ordinal);
        var ratio = CliRunner.Run(ParsingTests.Train(fixture, "--coreset-ratio", "0.1", "--random-weights"));
        Assert.True(ratio.ExitCode == 2, ratio.ToString());
        Assert.Contains("--coreset-ratio applies to --model memory-bank only", ratio.Error, StringComparison.Ordinal);
        var family = CliRunner.Run("train", "--model", "flow", "--data", $"mvtec:{fixture.Data}", "--out", output);
        Assert.True(family.ExitCode == 2, family.ToString());
        Assert.Contains("uniad, memory-bank", family.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(output));
    }
}
