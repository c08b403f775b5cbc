// uniad: command-line front end of UniAD.Core.
//   uniad train     --data SOURCE --out MODEL [--validation SOURCE | --holdout 0.1] [options] [--tile 224 --tile-stride 160 --resize-width 448]
//   uniad evaluate  --model MODEL --data SOURCE [--markdown FILE] [--json FILE] [--heatmaps DIR]
//   uniad score     --model MODEL IMAGE|FOLDER... [--heatmaps DIR]
//   uniad calibrate --model MODEL --data SOURCE [--method f1|far] [--rate R] [--out MODEL]
//   uniad import    --checkpoint ckpt.pth.tar --config config.json --out MODEL
// SOURCE: mvtec:ROOT[:class,class]  meta:FILE@IMAGE_ROOT  cifar10:ROOT[:0,1,2,3,4]  folder:ROOT
// Exit codes: 0 success, 1 failure (bad data, files or options), 2 usage error, 130 cancelled.
using System.Globalization;
using Spectre.Console;
using UniAD.Core;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;
using UniAD.Core.Training;
using UniAD.Core.Tiling;

var culture = CultureInfo.InvariantCulture;
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cancel.Cancel();
};

if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
{
    Usage();
    return args.Length == 0 ? 2 : 0;
}

var missingMasks = MissingMaskPolicy.Throw;
try
{
    var command = args[0];
    var options = Options.Parse(args.Skip(1).ToArray());
    missingMasks = options.Get("missing-masks") switch
    {
        null or "error" => MissingMaskPolicy.Throw,
        "image-level" => MissingMaskPolicy.ImageLevelOnly,
        var other => throw new UsageException($"--missing-masks is error or image-level, got '{other}'"),
    };
    return command switch
    {
        "train" => Train(options),
        "evaluate" => Evaluate(options),
        "score" => Score(options),
        "calibrate" => Calibrate(options),
        "import" => Import(options),
        _ => throw new UsageException($"unknown command '{command}'"),
    };
}
catch (UsageException ex)
{
    AnsiConsole.MarkupLineInterpolated($"[red]usage error:[/] {ex.Message}");
    Usage();
    return 2;
}
catch (OperationCanceledException)
{
    AnsiConsole.MarkupLine("[yellow]cancelled[/] (the last checkpoint, if any, is intact)");
    return 130;
}
catch (Exception ex) when (ex is IOException or InvalidDataException or ArgumentException or InvalidOperationException or FormatException or UnauthorizedAccessException)
{
    AnsiConsole.MarkupLineInterpolated($"[red]error:[/] {ex.Message}");
    return 1;
}

int Train(Options o)
{
    var recipe = TrainingRecipe(o); // usage errors first
    var (train, _) = OpenSource(o.Required("data"), DatasetSplit.Train);
    var output = o.Required("out");
    // Validation and calibration never look at the test split: an explicit --validation source (which may hold
    // defects), else a seeded hold-out of the normal training images (--holdout, default 10 %; 0 for none).
    double holdout = o.Double("holdout", DataSplits.DefaultHoldoutFraction);
    IImageSource? validation = null;
    string validationLabel = "none";
    if ((o.Get("validation") ?? o.Get("validate")) is { } v)
    {
        validation = OpenSource(v, DatasetSplit.Test).Test;
        int defects = validation.Samples.Count(s => s.IsAnomalous);
        validationLabel = $"{validation.Samples.Count} images of the validation source {v} ({defects} anomalous)";
    }
    else if (holdout > 0)
    {
        var (kept, heldOut) = DataSplits.HoldOutNormal(train, holdout, o.Int("seed", 133));
        train = kept;
        validation = heldOut;
        validationLabel = $"{heldOut.Samples.Count} held-out normal training images";
    }

    int input = o.Int("input", 224);
    var tiling = Tiling(o, ref input);
    var builder = new AnomalyDetectorBuilder()
        .WithBackbone(o.Get("backbone") ?? "efficientnet-b4", o.Ints("layers") ?? new[] { 1, 2, 3, 4 }, o.Get("weights"))
        .WithInputSize(input, input)
        .WithNeckStride(o.Int("stride", 16))
        .WithDevice(o.Get("device") ?? "cpu")
        .WithSeed(o.Int("seed", 133));
    if (o.Get("score") == "mean")
    {
        builder.WithImageScore(ImageScoreKind.Mean);
    }

    if (tiling is not null)
    {
        builder.WithTiling(tiling);
    }

    using var detector = builder.Build();
    var training = recipe with
    {
        Epochs = o.Int("epochs", recipe.Epochs),
        BatchSize = o.Int("batch", recipe.BatchSize),
        Optimizer = recipe.Optimizer with { LearningRate = o.Double("lr", recipe.Optimizer.LearningRate) },
        Seed = o.Int("seed", 133),
        FeatureCacheDirectory = o.Get("cache-dir"),
        Validation = validation,
        EvaluateEvery = o.Int("evaluate-every", 10),
        CheckpointPath = output,
        CheckpointEvery = o.Int("checkpoint-every", 10),
        ResumeFrom = o.Get("resume"),
    };
    AnsiConsole.MarkupLineInterpolated($"Training on [bold]{train.Samples.Count}[/] images ({string.Join(", ", train.Samples.Select(s => s.ClassName).Distinct())}), {(training.TimeBudget is { } budget ? $"a budget of {budget} (at most {training.Epochs} epochs)" : $"{training.Epochs} epochs")}, batch {training.BatchSize}, {training.Schedule}; validation: {validationLabel}.");
    DescribeTiling(detector);
    TrainingResult? result = null;
    AnsiConsole.Progress()
        .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
        .Start(ctx =>
        {
            var features = ctx.AddTask("features", maxValue: train.Samples.Count);
            var epochs = ctx.AddTask("epochs", maxValue: training.Epochs);
            var progress = new SynchronousProgress<TrainingProgress>(p =>
            {
                if (p.Stage == "features")
                {
                    features.MaxValue = Math.Max(1, p.Steps); // tiles, when tiling
                    features.Value = p.Step;
                }
                else
                {
                    features.Value = features.MaxValue;
                    epochs.MaxValue = p.Epochs; // the planned epochs with a time budget
                    epochs.Value = p.Epoch - 1 + (p.Steps == 0 ? 1 : (double)p.Step / p.Steps);
                    epochs.Description = string.Create(culture, $"epoch {p.Epoch}/{p.Epochs} loss {p.Loss:F4}");
                }
            });
            result = detector.Train(train, training, progress, cancel.Token);
        });
    AnsiConsole.MarkupLineInterpolated($"Trained {result!.EpochsCompleted} epochs ({result.TotalSteps} scheduled steps) in {result.Duration.TotalMinutes:F1} min, stopped by {result.StopReason}; model written to [bold]{output}[/].");
    if (result.Validation is { } report)
    {
        AnsiConsole.MarkupLineInterpolated($"Validation metrics ({validationLabel}):");
        AnsiConsole.WriteLine(report.ToMarkdown());
    }
    else if (result.BestValidationLoss is { } bestLoss)
    {
        AnsiConsole.MarkupLineInterpolated($"Best validation loss {bestLoss.ToString("G6", culture)} on {validationLabel} (best checkpoint: {AnomalyDetector.BestPath(output)}).");
    }

    if (validation is null)
    {
        AnsiConsole.MarkupLine("calibration: none (--holdout 0 and no --validation); run 'uniad calibrate' on a validation source.");
        return 0;
    }

    double rate = o.Double("rate", 0.01);
    var calibration = detector.CalibrateOnValidation(validation, rate, cancellationToken: cancel.Token);
    detector.Save(output);
    var rule = calibration.Method == CalibrationMethod.F1Max ? "F1-max" : string.Create(culture, $"false-alarm rate {rate * 100:G3}%");
    AnsiConsole.MarkupLineInterpolated($"calibration: {rule} on {validationLabel}: image threshold {calibration.ImageThreshold.ToString("G6", culture)}, pixel threshold {calibration.PixelThreshold?.ToString("G6", culture) ?? "none"}; saved to [bold]{output}[/].");
    return 0;
}

// --budget selects TrainingPreset.CpuBudget (batch 8, warm-up + cosine over the budget), otherwise the
// reference recipe; --schedule and --warmup replace the schedule.
static TrainingOptions TrainingRecipe(Options o)
{
    TimeSpan? budget = null;
    if (o.Get("budget") is { } text)
    {
        try
        {
            budget = TrainingPreset.ParseBudget(text);
        }
        catch (FormatException ex)
        {
            throw new UsageException($"--budget: {ex.Message}");
        }
    }

    var recipe = budget is { } b ? TrainingPreset.CpuBudget(b) : TrainingPreset.Paper();
    double? warmup = o.Get("warmup") is null ? null : o.Double("warmup", 0);
    LearningRateSchedule schedule = (o.Get("schedule") ?? (budget is null ? "step" : "cosine")) switch
    {
        "step" when warmup is null => recipe.Schedule is StepLRSchedule ? recipe.Schedule : new StepLRSchedule(),
        "step" => throw new UsageException("--warmup needs --schedule cosine or onecycle"),
        "cosine" => (recipe.Schedule as WarmupCosineSchedule ?? new WarmupCosineSchedule()) with { WarmupFraction = warmup ?? TrainingPreset.CpuWarmupFraction },
        "onecycle" => warmup is { } w ? new OneCycleSchedule { PeakFraction = w } : new OneCycleSchedule(),
        var other => throw new UsageException($"--schedule needs step, cosine or onecycle, got '{other}'"),
    };
    try
    {
        schedule.Validate();
    }
    catch (ArgumentException ex)
    {
        throw new UsageException($"--warmup: {ex.Message}");
    }

    return recipe with { Schedule = schedule };
}

int Evaluate(Options o)
{
    using var detector = AnomalyDetector.Load(o.Required("model"), o.Get("device"));
    DescribeTiling(detector);
    var (_, test) = OpenSource(o.Required("data"), DatasetSplit.Test);
    MetricsReport? report = null;
    AnsiConsole.Progress().Start(ctx =>
    {
        var task = ctx.AddTask("evaluating", maxValue: test.Samples.Count);
        report = detector.Evaluate(test, progress: new SynchronousProgress<DataProgress>(p => task.Value = p.Completed), cancellationToken: cancel.Token);
    });
    AnsiConsole.WriteLine(report!.ToMarkdown());
    if (o.Get("markdown") is { } md)
    {
        File.WriteAllText(md, report.ToMarkdown());
    }

    if (o.Get("json") is { } json)
    {
        File.WriteAllText(json, report.ToJson());
    }

    if (o.Get("heatmaps") is { } folder)
    {
        var files = detector.SaveCompoundViews(test, folder, cancellationToken: cancel.Token);
        AnsiConsole.MarkupLineInterpolated($"Wrote {files.Count} heat maps to [bold]{folder}[/].");
    }

    return 0;
}

int Score(Options o)
{
    using var detector = AnomalyDetector.Load(o.Required("model"), o.Get("device"));
    DescribeTiling(detector);
    var files = o.Positional.SelectMany<string, string>(p => Directory.Exists(p)
            ? Directory.EnumerateFiles(p).Where(f => ImageSource.ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant())).Order(StringComparer.Ordinal)
            : new[] { p }).ToList();
    if (files.Count == 0)
    {
        throw new UsageException("score needs image files or folders");
    }

    var heatmaps = o.Get("heatmaps");
    if (heatmaps is not null)
    {
        Directory.CreateDirectory(heatmaps);
    }

    var table = new Table().AddColumns("image", "score", "normalized", "anomalous");
    foreach (var result in detector.ScoreStream(files, cancellationToken: cancel.Token))
    {
        table.AddRow(
            Markup.Escape(result.Source ?? "?"),
            result.Score.ToString("G5", culture),
            result.NormalizedScore?.ToString("F3", culture) ?? "-",
            result.IsAnomalous is null ? "uncalibrated" : result.IsAnomalous.Value ? "[red]yes[/]" : "no");
        if (heatmaps is not null)
        {
            var image = ImageDecoder.Decode(result.Source!);
            using var overlay = HeatmapRenderer.Overlay(image, result, detector.Calibration);
            HeatmapRenderer.SavePng(overlay, Path.Combine(heatmaps, Path.GetFileNameWithoutExtension(result.Source!) + "_heatmap.png"));
        }
    }

    AnsiConsole.Write(table);
    return 0;
}

int Calibrate(Options o)
{
    var model = o.Required("model");
    using var detector = AnomalyDetector.Load(model, o.Get("device"));
    DescribeTiling(detector);
    var (_, images) = OpenSource(o.Required("data"), DatasetSplit.Test);
    var method = o.Get("method") is "far" ? CalibrationMethod.FalseAlarmRate : CalibrationMethod.F1Max;
    var calibration = detector.Calibrate(images, new CalibrationOptions { Method = method, FalseAlarmRate = o.Double("rate", 0.01) }, cancel.Token);
    var output = o.Get("out") ?? model;
    detector.Save(output);
    AnsiConsole.MarkupLineInterpolated($"calibration: {method} on {calibration.Images} images of {o.Required("data")} (use a validation split, never the test split): image threshold {calibration.ImageThreshold.ToString("G6", culture)}, pixel threshold {calibration.PixelThreshold?.ToString("G6", culture) ?? "none"}; saved to [bold]{output}[/].");
    return 0;
}

int Import(Options o)
{
    using var detector = AnomalyDetector.ImportReference(o.Required("checkpoint"), o.Required("config"), o.Get("device"));
    var output = o.Required("out");
    detector.Save(output);
    AnsiConsole.MarkupLineInterpolated($"Imported {detector.Options.Backbone} model to [bold]{output}[/].");
    return 0;
}

// --tile N (the tile = the network input, N x N), --tile-stride S or H,W, --resize-width W or --resize HxW,
// --tile-placement shift|spread, --tile-margin M; any of them turns tiling on. Evaluate, score and calibrate read it from the model.
TilingOptions? Tiling(Options o, ref int input)
{
    if (o.Get("tile") is null && o.Get("tile-stride") is null && o.Get("resize-width") is null && o.Get("resize") is null && o.Get("tile-placement") is null && o.Get("tile-margin") is null)
    {
        return null;
    }

    if (o.Get("tile") is not null)
    {
        int tile = o.Int("tile", input);
        if (o.Get("input") is not null && tile != input)
        {
            throw new UsageException($"--tile {tile} and --input {input} disagree: a tile is the network input");
        }

        input = tile;
    }

    GridSize? stride = o.Ints("tile-stride") switch
    {
        null => null,
        [var both] => new GridSize(both, both),
        [var h, var w] => new GridSize(h, w),
        _ => throw new UsageException("--tile-stride needs S or H,W"),
    };
    GridSize? resize = null;
    if (o.Get("resize") is { } text)
    {
        var parts = text.Split('x', 'X');
        resize = parts.Length == 2 && int.TryParse(parts[0], NumberStyles.Integer, culture, out var h) && int.TryParse(parts[1], NumberStyles.Integer, culture, out var w)
            ? new GridSize(h, w)
            : throw new UsageException($"--resize needs HEIGHTxWIDTH, got '{text}'");
    }

    var placement = o.Get("tile-placement") switch
    {
        null or "shift" => TilePlacement.ShiftLast,
        "spread" => TilePlacement.Spread,
        var other => throw new UsageException($"--tile-placement is shift or spread, got '{other}'"),
    };
    return new TilingOptions { Stride = stride, ResizeWidth = o.Get("resize-width") is null ? null : o.Int("resize-width", 0), ResizeTo = resize, Placement = placement, Margin = o.Int("tile-margin", 0) };
}

void DescribeTiling(AnomalyDetector detector)
{
    if (detector.Options.Tiling is { } t)
    {
        AnsiConsole.MarkupLineInterpolated($"Tiling: {t.Describe(detector.Options.InputSize)}.");
    }
}

(IImageSource Train, IImageSource Test) OpenSource(string spec, DatasetSplit split)
{
    int colon = spec.IndexOf(':');
    if (colon <= 0)
    {
        throw new UsageException($"data source '{spec}' needs a kind: mvtec:ROOT, meta:FILE@ROOT, cifar10:ROOT or folder:ROOT");
    }

    string kind = spec[..colon], rest = spec[(colon + 1)..];
    switch (kind)
    {
        case "mvtec":
        {
            var (root, list) = SplitList(rest);
            var options = new MvtecOptions { Classes = list, MissingMasks = missingMasks };
            return (MvtecAd.Open(root, DatasetSplit.Train, options), MvtecAd.Open(root, DatasetSplit.Test, options));
        }

        case "meta":
        {
            var at = rest.LastIndexOf('@');
            if (at <= 0)
            {
                throw new UsageException("meta sources are meta:FILE@IMAGE_ROOT");
            }

            var source = MetaFile.Open(rest[..at], rest[(at + 1)..]);
            return (source, source);
        }

        case "cifar10":
        {
            var (root, list) = SplitList(rest);
            var normal = list?.Select(c => int.Parse(c, culture)).ToArray() ?? Cifar10.ReferenceSplits[0].ToArray();
            var protocol = Directory.Exists(Path.Combine(root, "train"))
                ? Cifar10.FromJpegFolder(root, new Cifar10Options { NormalClasses = normal })
                : Cifar10.FromBinaryBatches(root, new Cifar10Options { NormalClasses = normal });
            return (protocol.Train, protocol.Test);
        }

        case "folder":
        {
            var source = ImageFolder.Open(rest);
            return split == DatasetSplit.Train ? ImageFolder.SplitNormal(source, 0.8, 133) : (source, source);
        }

        default:
            throw new UsageException($"unknown data kind '{kind}' (mvtec, meta, cifar10, folder)");
    }
}

static (string Root, IReadOnlyList<string>? List) SplitList(string text)
{
    // ROOT[:a,b,c]; a Windows drive letter (C:\...) is part of the root.
    int colon = text.LastIndexOf(':');
    return colon > 1 && text[(colon + 1)..].Length > 0 && !text[(colon + 1)..].Contains(Path.DirectorySeparatorChar, StringComparison.Ordinal)
        ? (text[..colon], text[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        : (text, null);
}

static void Usage()
{
    Console.WriteLine("""
        uniad: unified multi-class anomaly detection (UniAD) from the command line.

          uniad train     --data SOURCE --out MODEL [--backbone efficientnet-b4] [--layers 1,2,3,4] [--weights FILE]
                          [--epochs 1000] [--batch 64] [--lr 1e-4] [--input 224] [--stride 16] [--device cpu|cuda]
                          [--validation SOURCE | --holdout 0.1] [--rate 0.01] [--evaluate-every 10]
                          [--checkpoint-every 10] [--resume MODEL] [--cache-dir DIR] [--score max|mean] [--seed 133]
                          [--budget 30m] [--schedule step|cosine|onecycle] [--warmup 0.05]
                          Validation (best checkpoint) and calibration use --validation SOURCE (F1-max when it has
                          defects) or else the held-out normal training images (false-alarm rate --rate); never the test split.
                          [--tile 224] [--tile-stride 160|H,W] [--resize-width 448 | --resize HxW] [--tile-placement shift|spread] [--tile-margin 16]
                          (tiling: high-resolution images cut into overlapping input-size tiles; saved with the model)
          uniad evaluate  --model MODEL --data SOURCE [--markdown FILE] [--json FILE] [--heatmaps DIR]
          uniad score     --model MODEL IMAGE|FOLDER... [--heatmaps DIR]
          uniad calibrate --model MODEL --data SOURCE [--method f1|far] [--rate 0.01] [--out MODEL]
          uniad import    --checkpoint ckpt.pth.tar --config config.json --out MODEL

        SOURCE: mvtec:ROOT[:bottle,cable,...]   meta:FILE@IMAGE_ROOT   cifar10:ROOT[:0,1,2,3,4]   folder:ROOT
                [--missing-masks error|image-level]: an MVTec defect type without ground_truth is an error (default)
                or counts for image metrics only; folder and meta sources always accept image-level labels.
        --budget: wall-clock time for training (90s, 30m, 1h30m, or whole minutes: 45); selects the CPU recipe
          (batch 8, lr 1e-3, warm-up + cosine over the steps planned for the budget; --epochs caps it).
        --schedule: step (reference StepLR; default without --budget), cosine (linear warm-up + cosine), onecycle.
        --warmup: cosine's warm-up fraction of the steps (default 0.05), or onecycle's rise fraction (default 0.3).
        Exit codes: 0 success, 1 failure, 2 usage error, 130 cancelled (Ctrl+C).
        """);
}

/// <summary>Parsed <c>--name value</c> options and positional arguments.</summary>
internal sealed class Options
{
    private readonly Dictionary<string, string> named = new(StringComparer.Ordinal);

    public List<string> Positional { get; } = new();

    public static Options Parse(string[] args)
    {
        var o = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i].StartsWith("--", StringComparison.Ordinal))
            {
                if (i + 1 >= args.Length)
                {
                    throw new UsageException($"{args[i]} needs a value");
                }

                o.named[args[i][2..]] = args[++i];
            }
            else
            {
                o.Positional.Add(args[i]);
            }
        }

        return o;
    }

    public string? Get(string name) => named.TryGetValue(name, out var v) ? v : null;

    public string Required(string name) => Get(name) ?? throw new UsageException($"--{name} is required");

    public int Int(string name, int fallback) => Get(name) is { } v
        ? int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i) ? i : throw new UsageException($"--{name} needs an integer, got '{v}'")
        : fallback;

    public double Double(string name, double fallback) => Get(name) is { } v
        ? double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : throw new UsageException($"--{name} needs a number, got '{v}'")
        : fallback;

    public int[]? Ints(string name) => Get(name)?.Split(',').Select(s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i) ? i : throw new UsageException($"--{name} needs integers, got '{s}'")).ToArray();
}

/// <summary>A command line that cannot be understood (exit code 2).</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>Reports progress on the calling thread.</summary>
internal sealed class SynchronousProgress<T>(Action<T> handler) : IProgress<T>
{
    public void Report(T value) => handler(value);
}
