using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using UniAD.Core.Data;
using UniAD.Core.Detection;

namespace UniAD.Cli;

/// <summary><c>uniad calibrate</c>: sets a model's thresholds on a validation source (never the test split).</summary>
internal static class CalibrateCommand
{
    private static readonly CultureInfo Culture = CultureInfo.InvariantCulture;

    public const string Epilog = """
        --method f1: the threshold that maximises F1 (the source needs normal and anomalous images);
        --method far: the --rate quantile of the normal images' scores (a false-alarm rate).
        False-alarm calibration needs at least 10 normal images. Only the calibration is replaced, in place or in
        --out: the weights, the optimizer state of a training checkpoint (it can still be resumed) and any reference
        maps are kept.
        """;

    public static Command Create(CliContext ctx)
    {
        var model = CliOptions.Text("--model", "MODEL", "The model to calibrate.", required: true);
        var data = CliOptions.Text("--data", DataSources.HelpName, $"Validation images (never the test split): {DataSources.Description}.", required: true);
        var method = CliOptions.Choice("--method", "The threshold rule: F1-max, or a false-alarm rate on the normal images [default: f1].", ("f1", CalibrationMethod.F1Max), ("far", CalibrationMethod.FalseAlarmRate));
        var rate = CliOptions.Double("--rate", "The false-alarm rate of --method far [default: 0.01].", 0, 1, exclusive: true, helpName: "R");
        var output = CliOptions.Text("--out", "MODEL", "Write the calibrated model here [default: update --model in place; only its calibration changes].");
        var device = CliOptions.Device("The device to calibrate on [default: cpu].");
        var missingMasks = DataSources.MissingMasksOption();
        var command = new Command("calibrate", "Calibrate a model's image and pixel thresholds on a validation source.")
        {
            model, data, method, rate, output, device, missingMasks,
        };
        command.SetAction(p => Cli.Guard(ctx, p, () =>
        {
            var modelPath = p.GetRequiredValue(model);
            PathChecks.InputFile(modelPath, "--model");
            var outputPath = p.GetValue(output) ?? modelPath;
            PathChecks.OutputFile(outputPath, "--out");
            using var detector = AnomalyDetector.Load(modelPath, p.GetValue(device));
            Cli.DescribeTiling(ctx, detector);
            var dataSpec = p.GetRequiredValue(data);
            var images = DataSources.Open(dataSpec, DatasetSplit.Test, p.GetValue(missingMasks) ?? MissingMaskPolicy.Throw);
            var chosen = p.GetValue(method) ?? CalibrationMethod.F1Max;
            var calibration = detector.Calibrate(images, new CalibrationOptions { Method = chosen, FalseAlarmRate = p.GetValue(rate) ?? 0.01 }, ctx.Cancel);
            DetectorCheckpoint.WriteCalibration(modelPath, calibration, outputPath); // keeps optimizer state and reference maps
            ctx.Out.MarkupLineInterpolated($"calibration: {chosen} on {calibration.Images} images of {dataSpec} (use a validation split, never the test split): image threshold {calibration.ImageThreshold.ToString("G6", Culture)}, pixel threshold {calibration.PixelThreshold?.ToString("G6", Culture) ?? "none"}; saved to [bold]{outputPath}[/].");
            return ExitCodes.Success;
        }));
        return command;
    }
}
