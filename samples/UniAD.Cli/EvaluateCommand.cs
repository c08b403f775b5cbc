using System.Collections.Concurrent;
using System.CommandLine;
using Spectre.Console;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;

namespace UniAD.Cli;

/// <summary><c>uniad evaluate</c>: per-class image and pixel metrics of a model on a labelled test source.</summary>
internal static class EvaluateCommand
{
    public const string Epilog = """
        The report (markdown) goes to standard output; --markdown FILE and --json FILE also write it to files, and
        --json - writes the JSON report to standard output instead (the markdown then goes to standard error).
        --keep-going: an image or mask that cannot be read, or a folder that is missing, is reported and left out
        (every image is decoded once more up front to find them); the exit code is then 3.
        Heat maps (--heatmaps DIR): image | ground truth | overlay per test image, named CLASS_DEFECT_NAME.png, with
        parent folders added where two images would get the same name.
        """;

    public static Command Create(CliContext ctx)
    {
        var model = CliOptions.Text("--model", "MODEL", "The model to evaluate.", required: true);
        var data = CliOptions.Text("--data", DataSources.HelpName, $"The labelled test images: {DataSources.Description}.", required: true);
        var markdown = CliOptions.Text("--markdown", "FILE", "Also write the report as markdown to FILE.");
        var json = CliOptions.Text("--json", "FILE|-", "Also write the report as JSON to FILE; - writes it to standard output (alone).");
        var heatmaps = CliOptions.Text("--heatmaps", "DIR", "Write a compound heat-map view of every test image into this folder.");
        var keepGoing = new Option<bool>("--keep-going") { Description = "Leave out (and report) images that cannot be read instead of stopping (exit code 3 if any)." };
        var device = CliOptions.Device("The device to evaluate on [default: cpu].");
        var missingMasks = DataSources.MissingMasksOption();
        var command = new Command("evaluate", "Evaluate a model on a labelled test source: per-class image and pixel metrics.")
        {
            model, data, markdown, json, heatmaps, keepGoing, device, missingMasks,
        };
        command.SetAction(p => Cli.Guard(ctx, p, () =>
        {
            var modelPath = p.GetRequiredValue(model);
            PathChecks.InputFile(modelPath, "--model");
            var markdownPath = p.GetValue(markdown);
            var jsonPath = p.GetValue(json);
            bool jsonToStdout = jsonPath == "-";
            if (markdownPath is not null)
            {
                PathChecks.OutputFile(markdownPath, "--markdown");
                PathChecks.NotAnInput(markdownPath, "--markdown", (modelPath, "--model"));
            }

            if (jsonPath is not null && !jsonToStdout)
            {
                PathChecks.OutputFile(jsonPath, "--json");
                PathChecks.NotAnInput(jsonPath, "--json", (modelPath, "--model"), (markdownPath, "--markdown"));
            }

            var folder = p.GetValue(heatmaps);
            if (folder is not null)
            {
                PathChecks.OutputFolder(folder, "--heatmaps");
            }

            bool keep = p.GetValue(keepGoing);
            var test = DataSources.Open(p.GetRequiredValue(data), DatasetSplit.Test, p.GetValue(missingMasks) ?? MissingMaskPolicy.Throw, keep ? BadInputPolicy.Skip : BadInputPolicy.Throw);
            using var detector = AnomalyDetector.Load(modelPath, p.GetValue(device));
            Cli.DescribeTiling(ctx, detector);
            var skipped = test.Skipped.ToList();
            if (keep && test is ImageSource files)
            {
                // Image files only (CIFAR-10's binary batches are read whole when the source is opened).
                (test, var unreadable) = LeaveOutUnreadable(files, detector.Preprocess.MaxImagePixels, ctx.Cancel);
                skipped.AddRange(unreadable);
            }

            foreach (var file in skipped)
            {
                ctx.Fail($"{file.Path}: {file.Reason} (left out)");
            }

            MetricsReport? report = null;
            ctx.Err.Progress().Start(progressContext =>
            {
                var task = progressContext.AddTask("evaluating", maxValue: Math.Max(1, test.Samples.Count));
                report = detector.Evaluate(test, progress: new SynchronousProgress<DataProgress>(d => task.Value = d.Completed), cancellationToken: ctx.Cancel);
            });
            (jsonToStdout ? ctx.Error : ctx.Output).WriteLine(report!.ToMarkdown());
            if (jsonToStdout)
            {
                ctx.Output.WriteLine(report.ToJson());
            }
            else if (jsonPath is not null)
            {
                File.WriteAllText(jsonPath, report.ToJson());
            }

            if (markdownPath is not null)
            {
                File.WriteAllText(markdownPath, report.ToMarkdown());
            }

            if (folder is not null)
            {
                int written = WriteHeatmaps(detector, test, folder, ctx.Cancel);
                ctx.Note($"Wrote {written} heat maps to [bold]{folder}[/].");
            }

            if (skipped.Count > 0)
            {
                ctx.Note($"[red]{skipped.Count} files were left out[/] (each is reported above); the metrics cover the other {test.Samples.Count} images.");
                return ExitCodes.SomeFilesFailed;
            }

            return ExitCodes.Success;
        }));
        return command;
    }

    /// <summary>Decodes every image and mask of <paramref name="source"/>; those that fail are left out and reported.</summary>
    private static (IImageSource Source, List<SkippedFile> Unreadable) LeaveOutUnreadable(ImageSource source, long maxPixels, CancellationToken cancel)
    {
        var bad = new ConcurrentDictionary<int, SkippedFile>();
        Parallel.For(0, source.Samples.Count, new ParallelOptions { CancellationToken = cancel, MaxDegreeOfParallelism = Environment.ProcessorCount }, i =>
        {
            var sample = source.Samples[i];
            foreach (var file in new[] { sample.ImagePath, sample.MaskPath })
            {
                if (file is null)
                {
                    continue;
                }

                try
                {
                    ImageDecoder.Decode(file, maxPixels);
                }
                catch (Exception ex) when (ExitCodes.IsDocumentedFailure(ex))
                {
                    bad.TryAdd(i, new SkippedFile(file, ex.Message));
                    return;
                }
            }
        });
        if (bad.IsEmpty)
        {
            return (source, new List<SkippedFile>());
        }

        var kept = source.Samples.Where((_, i) => !bad.ContainsKey(i)).ToList();
        if (kept.Count == 0)
        {
            throw new InvalidDataException($"No image of '{source.Name}' can be read ({bad.Count} tried).");
        }

        return (new ImageSource(source.Name, kept), bad.OrderBy(kv => kv.Key).Select(kv => kv.Value).ToList());
    }

    /// <summary>
    /// The library's compound views (image | ground truth | overlay), under names that cannot collide: each is
    /// written alone into a scratch folder, then moved to its unique name.
    /// </summary>
    private static int WriteHeatmaps(AnomalyDetector detector, IImageSource source, string folder, CancellationToken cancel)
    {
        var samples = source.Samples;
        var names = HeatmapNames.Assign(
            samples.Select(s => s.ImagePath).ToList(),
            samples.Select(s => $"{s.ClassName}_{s.DefectType}_{Path.GetFileNameWithoutExtension(s.ImagePath)}").ToList());
        var scratch = Path.Combine(folder, $".uniad-{Guid.NewGuid():N}");
        try
        {
            for (int i = 0; i < samples.Count; i++)
            {
                var written = detector.SaveCompoundViews(new ImageSource(source.Name, new[] { samples[i] }), scratch, cancellationToken: cancel);
                File.Move(written.Single(), Path.Combine(folder, names[i] + ".png"), overwrite: true);
            }
        }
        finally
        {
            if (Directory.Exists(scratch))
            {
                Directory.Delete(scratch, recursive: true);
            }
        }

        return samples.Count;
    }
}
