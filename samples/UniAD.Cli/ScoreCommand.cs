using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using UniAD.Core.Data;
using UniAD.Core.Detection;

namespace UniAD.Cli;

/// <summary>
/// <c>uniad score</c>: scores image files and folders, printing each result as it comes (a line, or a JSON object
/// with <c>--json</c>); a file that cannot be scored is reported in its place.
/// </summary>
internal static class ScoreCommand
{
    private static readonly CultureInfo Culture = CultureInfo.InvariantCulture;

    public const string Epilog = """
        Results are printed as they come, in input order (a folder's images sorted by name). With --json, standard
        output is JSON Lines, one object per image: {"path", "score", "normalized", "anomalous"} (normalized and
        anomalous are null when the model is not calibrated; "heatmap" is added with --heatmaps), or {"path",
        "error"} for an input that could not be scored. Without --keep-going the first such input stops the run
        (exit 1, after the results already printed); with it every input is tried and the exit code is 3 if any failed.
        Heat maps are named after the image (NAME_heatmap.png), with as many parent folders as it takes to keep
        names apart (a_good_000_heatmap.png, b_good_000_heatmap.png) and -2, -3, ... for the same file twice.
        """;

    public static Command Create(CliContext ctx)
    {
        var model = CliOptions.Text("--model", "MODEL", "The model to score with (written by train, calibrate or import).", required: true);
        var inputs = new Argument<string[]>("IMAGE|FOLDER")
        {
            Description = "Image files, or folders whose images (png, jpg, jpeg, bmp) are scored.",
            Arity = ArgumentArity.OneOrMore,
        };
        inputs.Validators.Add(result =>
        {
            // An unknown option would otherwise be taken for a file name (e.g. --heatmap for --heatmaps).
            foreach (var token in result.Tokens.Select(t => t.Value).Where(v => v.Length > 1 && v[0] == '-'))
            {
                var command = result.Parent is System.CommandLine.Parsing.CommandResult c ? c.Command : null;
                result.AddError($"Unrecognized option '{token}'{Cli.Suggest(token, command)}; a file whose name starts with '-' is written ./{token}");
            }
        });
        var heatmaps = CliOptions.Text("--heatmaps", "DIR", "Write each image's heat-map overlay (PNG) into this folder (created if needed).");
        var json = new Option<bool>("--json") { Description = "Write JSON Lines to standard output (one object per image); notes go to standard error." };
        var keepGoing = new Option<bool>("--keep-going") { Description = "Report an input that cannot be scored and go on with the rest (exit code 3 if any failed)." };
        var device = CliOptions.Device("The device to score on [default: cpu].");
        var className = CliOptions.Text("--class", "NAME", "The images' class, for a model with per-class reference maps or per-class memory banks (ignored otherwise).");
        var command = new Command("score", "Score images with a trained model: one result per image, printed as it comes.")
        {
            model, inputs, heatmaps, json, keepGoing, device, className,
        };
        command.SetAction(p => Cli.Guard(ctx, p, () =>
        {
            var modelPath = p.GetRequiredValue(model);
            PathChecks.InputFile(modelPath, "--model");
            var folder = p.GetValue(heatmaps);
            if (folder is not null)
            {
                PathChecks.OutputFolder(folder, "--heatmaps");
            }

            var entries = Expand(p.GetRequiredValue(inputs));
            var names = folder is null ? null : HeatmapNames.Assign(entries.Select(e => e.Path).ToList());
            using var detector = AnomalyDetector.Load(modelPath, p.GetValue(device));
            Cli.DescribeTiling(ctx, detector);
            var writer = new ResultWriter(ctx, p.GetValue(json));
            bool keep = p.GetValue(keepGoing);
            int failed = 0, heatmapCount = 0;
            for (int i = 0; i < entries.Count; i++)
            {
                ctx.Cancel.ThrowIfCancellationRequested();
                var (path, problem) = entries[i];
                try
                {
                    if (problem is not null)
                    {
                        throw new FileNotFoundException(problem, path);
                    }

                    // Decoded once: the same pixels are scored and drawn under the heat map.
                    var image = ImageDecoder.Decode(path, detector.Preprocess.MaxImagePixels);
                    var result = detector.Score(image, path, p.GetValue(className));
                    string? heatmap = null;
                    if (folder is not null)
                    {
                        heatmap = Path.Combine(folder, names![i] + "_heatmap.png");
                        using var overlay = HeatmapRenderer.Overlay(image, result, detector.Calibration);
                        HeatmapRenderer.SavePng(overlay, heatmap);
                        heatmapCount++;
                    }

                    writer.Result(path, result, heatmap);
                }
                catch (Exception ex) when (ExitCodes.IsDocumentedFailure(ex))
                {
                    failed++;
                    writer.Failure(path, ex.Message);
                    if (!keep)
                    {
                        ctx.Note($"stopped at the first input that could not be scored ({i} of {entries.Count} scored); --keep-going scores the rest.");
                        return ExitCodes.Failure;
                    }
                }
            }

            if (folder is not null)
            {
                ctx.Note($"Wrote {heatmapCount} heat maps to [bold]{folder}[/].");
            }

            if (failed > 0)
            {
                ctx.Note($"[red]{failed} of {entries.Count} inputs could not be scored[/] (each is reported above).");
                return ExitCodes.SomeFilesFailed;
            }

            return ExitCodes.Success;
        }));
        return command;
    }

    /// <summary>The images to score, in order: files as given, folders' images by name; a problem for what cannot be listed.</summary>
    private static List<(string Path, string? Problem)> Expand(IEnumerable<string> inputs)
    {
        var entries = new List<(string, string?)>();
        foreach (var input in inputs)
        {
            if (Directory.Exists(input))
            {
                var files = Directory.EnumerateFiles(input)
                    .Where(f => ImageSource.ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                    .Order(StringComparer.Ordinal)
                    .ToList();
                if (files.Count == 0)
                {
                    entries.Add((input, $"The folder '{input}' holds no image ({string.Join(", ", ImageSource.ImageExtensions)})."));
                }

                entries.AddRange(files.Select(f => (f, (string?)null)));
            }
            else
            {
                entries.Add((input, File.Exists(input) ? null : $"'{input}' is neither a file nor a folder."));
            }
        }

        return entries;
    }

    /// <summary>Writes results as lines of text or JSON, flushed one by one.</summary>
    private sealed class ResultWriter(CliContext ctx, bool json)
    {
        private bool headerWritten;

        public void Result(string path, AnomalyResult result, string? heatmap)
        {
            if (json)
            {
                Line(ScoreJson.Result(path, result, heatmap));
                return;
            }

            if (!headerWritten)
            {
                ctx.Output.WriteLine($"{"score",-12} {"normalized",-10} {"anomalous",-12} image");
                headerWritten = true;
            }

            var verdict = result.IsAnomalous switch { null => "uncalibrated", true => "[red]yes[/]", false => "no" };
            var pad = new string(' ', Math.Max(0, 12 - (result.IsAnomalous switch { null => 12, true => 3, false => 2 })));
            ctx.Out.MarkupLine($"{result.Score.ToString("G5", Culture),-12} {result.NormalizedScore?.ToString("F3", Culture) ?? "-",-10} {verdict}{pad} {Markup.Escape(path)}");
            ctx.Output.Flush();
        }

        public void Failure(string path, string message)
        {
            if (json)
            {
                Line(ScoreJson.Failure(path, message));
                return;
            }

            ctx.Fail($"{path}: {message}");
        }

        private void Line(string line)
        {
            ctx.Output.WriteLine(line);
            ctx.Output.Flush();
        }
    }
}
