using UniAD.Core.Detection;

namespace UniAD.Cli.Tests;

/// <summary>Issue 11, section 4: every command on System.CommandLine, with help, --version and rejected mistakes (exit code 2).</summary>
[Collection(CliCollection.Name)]
public sealed class ParsingTests(CliFixture fixture)
{
    [Fact]
    public void Version_prints_the_library_version()
    {
        var run = CliRunner.Run("--version");
        Assert.True(run.ExitCode == 0, run.ToString());
        var version = typeof(AnomalyDetector).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .Cast<System.Reflection.AssemblyInformationalVersionAttribute>().Single().InformationalVersion;
        Assert.Equal(version, run.Output.Trim());
    }

    [Theory]
    [InlineData("train", "--tile-placement")]
    [InlineData("train", "--missing-masks")]
    [InlineData("evaluate", "--keep-going")]
    [InlineData("score", "--json")]
    [InlineData("calibrate", "--method")]
    [InlineData("import", "--checkpoint")]
    public void Every_command_has_its_own_help_with_the_exit_codes(string command, string option)
    {
        var run = CliRunner.Run(command, "--help");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains($"uniad {command}", run.Output, StringComparison.Ordinal);
        Assert.Contains(option, run.Output, StringComparison.Ordinal);
        Assert.Contains("Exit codes:", run.Output, StringComparison.Ordinal);
        Assert.Contains("130", run.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Help_command_and_no_arguments_show_the_commands()
    {
        var help = CliRunner.Run("help", "score");
        Assert.True(help.ExitCode == 0, help.ToString());
        Assert.Contains("--keep-going", help.Output, StringComparison.Ordinal);

        var none = CliRunner.Run();
        Assert.Equal(2, none.ExitCode);
        foreach (var command in new[] { "train", "evaluate", "score", "calibrate", "import" })
        {
            Assert.Contains(command, none.Output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void A_mistyped_epochs_option_is_refused_instead_of_training_1000_epochs()
    {
        var run = CliRunner.Run(Train(fixture, "--epoch", "2"));
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Contains("'--epoch'", run.Error, StringComparison.Ordinal);
        Assert.Contains("did you mean --epochs", run.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("Training on", run.All, StringComparison.Ordinal);
    }

    [Fact]
    public void A_mistyped_heatmaps_option_of_score_is_refused_instead_of_ignored()
    {
        var folder = Path.Combine(fixture.Root, "typo-heatmaps");
        var run = CliRunner.Run("score", "--model", fixture.Model, "--heatmap", folder, fixture.GoodImages()[0]);
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Contains("'--heatmap'", run.Error, StringComparison.Ordinal);
        Assert.Contains("--heatmaps", run.Error, StringComparison.Ordinal);
        Assert.Equal(string.Empty, run.Output);
    }

    [Theory]
    [InlineData("--score", "median", "max, mean, std, plainmax, topmean")]
    [InlineData("--schedule", "linear", "step, cosine, onecycle")]
    [InlineData("--missing-masks", "ignore", "error, image-level")]
    [InlineData("--tile-placement", "centre", "shift, spread")]
    [InlineData("--device", "tpu", "cpu, cuda, cuda:N")]
    [InlineData("--backbone", "vgg16", "efficientnet-b4")]
    [InlineData("--epochs", "ten", "whole number")]
    [InlineData("--epochs", "0", "at least 1")]
    [InlineData("--lr", "1,5e-4", "number")]
    [InlineData("--holdout", "1.5", "from 0 to 1")]
    [InlineData("--budget", "soon", "time budget")]
    [InlineData("--tile-stride", "160,x", "S|H,W")]
    [InlineData("--score-window", "8,x", "S|H,W")]
    [InlineData("--resize", "448", "HEIGHTxWIDTH")]
    public void Bad_train_values_are_usage_errors_naming_the_option_and_the_allowed_values(string option, string value, string allowed)
    {
        var run = CliRunner.Run(Train(fixture, option, value));
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Contains(option, run.Error, StringComparison.Ordinal);
        Assert.Contains(allowed, run.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("Training on", run.All, StringComparison.Ordinal);
    }

    [Fact]
    public void A_bad_calibration_method_is_refused_and_FAR_means_far()
    {
        var bad = CliRunner.Run("calibrate", "--model", fixture.Model, "--data", $"mvtec:{fixture.Data}", "--method", "bogus", "--out", Path.Combine(fixture.Root, "never.safetensors"));
        Assert.True(bad.ExitCode == 2, bad.ToString());
        Assert.Contains("--method is one of f1, far", bad.Error, StringComparison.Ordinal);

        var output = Path.Combine(fixture.Root, "far.safetensors");
        var far = CliRunner.Run("calibrate", "--model", fixture.Model, "--data", $"mvtec:{fixture.Data}", "--method", "FAR", "--rate", "0.2", "--out", output);
        Assert.True(far.ExitCode == 0, far.ToString());
        Assert.Equal(CalibrationMethod.FalseAlarmRate, DetectorCheckpoint.ReadInfo(output).Calibration!.Method);
    }

    [Theory]
    [InlineData("evaluate", "--data", "x")]
    [InlineData("score", "--model")]
    [InlineData("import", "--checkpoint", "c", "--config", "c")]
    public void Missing_required_options_and_values_are_usage_errors(params string[] args)
    {
        var run = CliRunner.Run(args);
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Contains("--", run.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unknown_command_is_a_usage_error_with_a_suggestion()
    {
        var run = CliRunner.Run("trian", "--data", "x");
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Contains("'trian'", run.Error, StringComparison.Ordinal);
        Assert.Contains("did you mean train", run.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Conflicting_options_are_usage_errors()
    {
        var run = CliRunner.Run(Train(fixture, "--tile", "32"));
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Contains("--tile 32 and --input 64 disagree", run.Error, StringComparison.Ordinal);
        var warmup = CliRunner.Run(Train(fixture, "--schedule", "step", "--warmup", "0.1"));
        Assert.True(warmup.ExitCode == 2, warmup.ToString());
        Assert.Contains("--warmup needs --schedule cosine or onecycle", warmup.Error, StringComparison.Ordinal);
    }

    /// <summary>A tiny training command line on the fixture's data (1 epoch), with <paramref name="extra"/> added or replacing its options.</summary>
    internal static string[] Train(CliFixture fixture, params string[] extra)
    {
        var defaults = new[] { "--out", Path.Combine(fixture.Root, $"train-{Guid.NewGuid():N}.safetensors"), "--epochs", "1" }.Concat(CliFixture.TinyTraining).ToArray();
        var args = new List<string> { "train", "--data", $"mvtec:{fixture.Data}" };
        for (int i = 0; i < defaults.Length; i += 2)
        {
            if (!extra.Contains(defaults[i]))
            {
                args.Add(defaults[i]);
                args.Add(defaults[i + 1]);
            }
        }

        // The tiny test backbone is random on purpose; say so, as a user must (unless the test gives weights itself).
        if (!extra.Contains("--weights") && !extra.Contains("--random-weights") && !extra.Contains("--preset"))
        {
            args.Add("--random-weights");
        }

        args.AddRange(extra);
        return args.ToArray();
    }
}
