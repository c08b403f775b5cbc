using System.CommandLine;
using Spectre.Console;
using UniAD.Core.Detection;

namespace UniAD.Cli;

/// <summary><c>uniad import</c>: converts a checkpoint of the authors' trainer into a UniAD.Core model file.</summary>
internal static class ImportCommand
{
    public static Command Create(CliContext ctx)
    {
        var checkpoint = CliOptions.Text("--checkpoint", "FILE", "The reference trainer's checkpoint (ckpt.pth.tar).", required: true);
        var config = CliOptions.Text("--config", "FILE", "The reference config as JSON (it needs the 'net' list).", required: true);
        var output = CliOptions.Text("--out", "MODEL", "The model file to write.", required: true);
        var device = CliOptions.Device("The device to load on [default: cpu].");
        var command = new Command("import", "Import a model trained with the authors' code (ckpt.pth.tar + config.json).")
        {
            checkpoint, config, output, device,
        };
        command.SetAction(p => Cli.Guard(ctx, p, () =>
        {
            var checkpointPath = p.GetRequiredValue(checkpoint);
            var configPath = p.GetRequiredValue(config);
            var outputPath = p.GetRequiredValue(output);
            PathChecks.InputFile(checkpointPath, "--checkpoint");
            PathChecks.InputFile(configPath, "--config");
            PathChecks.OutputFile(outputPath, "--out");
            using var detector = AnomalyDetector.ImportReference(checkpointPath, configPath, p.GetValue(device));
            detector.Save(outputPath);
            ctx.Out.MarkupLineInterpolated($"Imported {detector.Options.Backbone} model to [bold]{outputPath}[/].");
            return ExitCodes.Success;
        }));
        return command;
    }
}
