using UniAD.Core.Detection;

namespace UniAD.Cli.Tests;

/// <summary>Issue 11, section 2: training and calibration refuse, before any work, what would fail or lose data.</summary>
[Collection(CliCollection.Name)]
public sealed class TrainingTests(CliFixture fixture)
{
    [Fact]
    public void The_output_folder_is_checked_before_training()
    {
        var missing = Path.Combine(fixture.Root, "no-such-folder", "model.safetensors");
        var run = CliRunner.Run(ParsingTests.Train(fixture, "--epochs", "1000").Select(a => a.StartsWith(fixture.Root, StringComparison.Ordinal) && a.EndsWith(".safetensors", StringComparison.Ordinal) ? missing : a).ToArray());
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.Contains(Path.GetDirectoryName(missing)!, run.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("Training on", run.All, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", run.All, StringComparison.Ordinal);
    }

    [Fact]
    public void Input_paths_are_checked_before_training()
    {
        var weights = Path.Combine(fixture.Root, "no-such-weights.pth");
        var run = CliRunner.Run(ParsingTests.Train(fixture, "--weights", weights));
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.Contains("--weights", run.Error, StringComparison.Ordinal);
        Assert.Contains(weights, run.Error, StringComparison.Ordinal);

        var data = CliRunner.Run(ParsingTests.Train(fixture).Select(a => a.StartsWith("mvtec:", StringComparison.Ordinal) ? "mvtec:" + Path.Combine(fixture.Root, "no-such-data") : a).ToArray());
        Assert.True(data.ExitCode == 1, data.ToString());
        Assert.Contains("no-such-data", data.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("Training on", data.All, StringComparison.Ordinal);
    }

    [Fact]
    public void Train_holds_out_normal_images_validates_and_calibrates_on_them()
    {
        // The defaults: --layers 1,2,3,4, no tiling, a 10 % hold-out.
        var output = Path.Combine(fixture.NewFolder("trained"), "model.safetensors");
        var args = ParsingTests.Train(fixture, "--out", output, "--score", "MEAN", "--holdout", "0.5").ToList();
        args.RemoveRange(args.IndexOf("--layers"), 2);
        var run = CliRunner.Run(args.ToArray());
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("held-out normal training images", run.Output, StringComparison.Ordinal);
        Assert.Contains("calibration: false-alarm rate 1%", run.Output, StringComparison.Ordinal);
        var info = DetectorCheckpoint.ReadInfo(output);
        Assert.Equal(1, info.Epoch);
        Assert.Equal(CalibrationMethod.FalseAlarmRate, info.Calibration!.Method);
        Assert.Equal(UniAD.Core.Metrics.ImageScoreKind.Mean, info.Options.ScoreKind);
        Assert.Equal(new[] { 1, 2, 3, 4 }, info.Options.BackboneLayers);
        Assert.Null(info.Options.Tiling);
        Assert.True(File.Exists(AnomalyDetector.BestPath(output)));
        Assert.True(info.HasOptimizerState); // calibrated, and still resumable
    }

    [Fact]
    public void Validation_images_too_few_to_calibrate_are_refused_before_training()
    {
        // The default 10 % hold-out of 20 images is 2 normal images; false-alarm calibration needs 10.
        var output = Path.Combine(fixture.NewFolder("few"), "model.safetensors");
        var run = CliRunner.Run(ParsingTests.Train(fixture, "--out", output));
        Assert.True(run.ExitCode == 1, run.ToString());
        Assert.Contains("at least 10 normal images", run.Error, StringComparison.Ordinal);
        Assert.Contains("--holdout", run.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("Training on", run.All, StringComparison.Ordinal);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void Tiling_options_and_the_score_window_are_saved_with_the_model()
    {
        var output = Path.Combine(fixture.NewFolder("tiled"), "model.safetensors");
        // One class: only the options matter here.
        var args = ParsingTests.Train(fixture, "--out", output, "--holdout", "0", "--tile", "64", "--tile-stride", "32,48", "--resize-width", "80", "--tile-placement", "Spread", "--tile-margin", "4", "--score-window", "2,24")
            .Select(a => a.StartsWith("mvtec:", StringComparison.Ordinal) ? a + ":stripes" : a).ToArray();
        var run = CliRunner.Run(args);
        Assert.True(run.ExitCode == 0, run.ToString());
        var options = DetectorCheckpoint.ReadInfo(output).Options;
        Assert.Equal((2, 24), (options.ScorePoolHeight!.Value, options.ScorePoolSize));
        var tiling = options.Tiling!;
        Assert.Equal(new UniAD.Core.GridSize(32, 48), tiling.Stride);
        Assert.Equal(80, tiling.ResizeWidth);
        Assert.Equal(UniAD.Core.Tiling.TilePlacement.Spread, tiling.Placement);
        Assert.Equal(4, tiling.Margin);
    }

    [Fact]
    public void Resume_past_the_epochs_is_refused_and_calibrating_a_training_checkpoint_keeps_it_resumable()
    {
        // A training checkpoint (1 epoch, no hold-out: not calibrated).
        var folder = fixture.NewFolder("resume");
        var checkpoint = Path.Combine(folder, "ckpt.safetensors");
        var train = CliRunner.Run(ParsingTests.Train(fixture, "--holdout", "0", "--out", checkpoint));
        Assert.True(train.ExitCode == 0, train.ToString());
        var info = DetectorCheckpoint.ReadInfo(checkpoint);
        Assert.Equal(1, info.Epoch);
        Assert.True(info.HasOptimizerState);

        // --resume at --epochs: nothing to train, so nothing may be claimed written.
        var resumed = Path.Combine(folder, "resumed.safetensors");
        var resume = CliRunner.Run(ParsingTests.Train(fixture, "--holdout", "0", "--resume", checkpoint, "--out", resumed));
        Assert.True(resume.ExitCode == 1, resume.ToString());
        Assert.Contains("already trained 1 epochs", resume.Error, StringComparison.Ordinal);
        Assert.Contains("--epochs 1", resume.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("model written", resume.All, StringComparison.Ordinal);
        Assert.False(File.Exists(resumed));

        // calibrate in place replaces the calibration only: the optimizer state stays, and the file resumes.
        var inPlace = CliRunner.Run("calibrate", "--model", checkpoint, "--data", $"mvtec:{fixture.Data}", "--method", "far", "--rate", "0.2");
        Assert.True(inPlace.ExitCode == 0, inPlace.ToString());
        var calibrated = DetectorCheckpoint.ReadInfo(checkpoint);
        Assert.Equal(CalibrationMethod.FalseAlarmRate, calibrated.Calibration!.Method);
        Assert.True(calibrated.HasOptimizerState);

        var more = CliRunner.Run(ParsingTests.Train(fixture, "--holdout", "0", "--resume", checkpoint, "--epochs", "2", "--out", resumed));
        Assert.True(more.ExitCode == 0, more.ToString());
        Assert.Equal(2, DetectorCheckpoint.ReadInfo(resumed).Epoch);
    }
}
