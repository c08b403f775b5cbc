using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using UniAD.Core;
using UniAD.Core.Backbones;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;
using UniAD.Core.Tiling;
using UniAD.Core.Training;

namespace UniAD.Cli;

/// <summary><c>uniad train</c>: trains one model on every class of a source, validates, checkpoints and calibrates.</summary>
internal static class TrainCommand
{
    private static readonly CultureInfo Culture = CultureInfo.InvariantCulture;

    public const string Epilog = """
        Validation (best checkpoint) and calibration use --validation SOURCE (F1-max when it has defects) or else the
        held-out normal training images (false-alarm rate --rate); never the test split.
        --budget: wall-clock time for training (90s, 30m, 1h30m, or whole minutes: 45); selects the CPU recipe
          (batch 8, lr 1e-3, warm-up + cosine over the steps planned for the budget; --epochs caps it).
        --schedule: step (reference StepLR; default without --budget), cosine (linear warm-up + cosine), onecycle.
        --warmup: cosine's warm-up fraction of the steps (default 0.05), or onecycle's rise fraction (default 0.3).
        Tiling (--tile, --tile-stride, --resize-width, --resize, --tile-placement, --tile-margin; any of them turns it
        on): high-resolution images are cut into overlapping input-size tiles; saved with the model.
        Before training starts: the output folder, --weights and --resume are checked, --resume from a checkpoint that
        has already trained --epochs epochs is refused (nothing would be trained), and so are validation images that
        cannot calibrate (false-alarm calibration needs at least 10 normal images). The calibration is stored in the
        checkpoint, which keeps its optimizer state (it can still be resumed).
        """;

    private static readonly (string, ImageScoreKind)[] ScoreKinds =
    {
        ("max", ImageScoreKind.PooledMax), ("mean", ImageScoreKind.Mean), ("std", ImageScoreKind.Std), ("plainmax", ImageScoreKind.PlainMax), ("topmean", ImageScoreKind.TopMean),
    };

    public static Command Create(CliContext ctx)
    {
        var data = CliOptions.Text("--data", DataSources.HelpName, $"Training images: {DataSources.Description}.", required: true);
        var output = CliOptions.Text("--out", "MODEL", "The model file to write (a .safetensors checkpoint; the best validation checkpoint goes beside it as NAME.best.safetensors).", required: true);
        var validation = CliOptions.Text("--validation", DataSources.HelpName, "A validation source (may hold defects) for the best checkpoint and calibration, instead of --holdout.", aliases: "--validate");
        var holdout = CliOptions.Double("--holdout", string.Create(Culture, $"Fraction of each class's normal training images held out for validation and calibration; 0 for none [default: {DataSplits.DefaultHoldoutFraction}]."), 0, 1, helpName: "F");
        var rate = CliOptions.Double("--rate", "The false-alarm rate of the calibration on normal images [default: 0.01].", 0, 1, exclusive: true, helpName: "R");
        var backbone = CliOptions.Name("--backbone", "NAME", "The frozen CNN backbone [default: efficientnet-b4].", Backbone.ModelNames);
        var layers = CliOptions.Ints("--layers", "The backbone's output layers [default: 1,2,3,4].", "L,L,...", min: 1);
        var weights = CliOptions.Text("--weights", "FILE", "The backbone's pretrained weights (.pth, .safetensors or .onnx); needed for every backbone but mlnet-resnet18 (which NuGet ships) unless --random-weights.");
        var randomWeights = new Option<bool>("--random-weights") { Description = "Train on a backbone with RANDOM weights, knowingly (scores on real images are then meaningless; for tests and comparisons)." };
        var preset = CliOptions.Choice("--preset", "cpu: the CPU preset (ImageNet ResNet-18 from NuGet layers 1-3, 256-pixel tiles of images 448 wide, width 128, 2 + 2 layers, the CPU recipe with a 30-minute budget unless --budget); paper: the paper's network and recipe (EfficientNet-B4: needs --weights) [default: the paper's network, as paper].", ("cpu", Preset.Cpu), ("paper", Preset.Paper));
        var epochs = CliOptions.Int("--epochs", "Epochs to train (with --budget: the most) [default: 1000; with --budget 10000].", min: 1);
        var batch = CliOptions.Int("--batch", "Batch size [default: 64; with --budget 8].", min: 1);
        var lr = CliOptions.Double("--lr", "The (peak) learning rate [default: 1e-4; with --budget 1e-3].", 0, double.MaxValue, exclusive: true);
        var input = CliOptions.Int("--input", "The network's input size (square) [default: 224].", min: 1);
        var stride = CliOptions.Int("--stride", "The neck's output stride [default: 16].", min: 1);
        var device = CliOptions.Device("The device to train on [default: cpu].");
        var evaluateEvery = CliOptions.Int("--evaluate-every", "Validate every N epochs (and after the last); 0 for the last only [default: 10].", min: 0);
        var checkpointEvery = CliOptions.Int("--checkpoint-every", "Write the checkpoint every N epochs (and after the last) [default: 10].", min: 0);
        var resume = CliOptions.Text("--resume", "MODEL", "Continue from a training checkpoint (written by uniad train, with its optimizer state) up to --epochs.");
        var cacheDir = CliOptions.Text("--cache-dir", "DIR", "A folder for the backbone feature cache (reused across runs).");
        var score = CliOptions.Choice("--score", "The image score: pooled max (the reference's), mean (CIFAR-10's), std, plain max, or the mean of the top 1 % [default: max].", ScoreKinds);
        var scoreWindow = CliOptions.Ints("--score-window", "The pooled-max window in map pixels: S (square) or H,W (a wide, flat H,W suits long, thin defects running across the part) [default: 16].", "S|H,W", min: 1, maxCount: 2);
        var seed = CliOptions.Int("--seed", "The random seed [default: 133].", min: 0);
        var budget = BudgetOption();
        var schedule = CliOptions.Choice("--schedule", "The learning-rate schedule [default: step; with --budget cosine].", ("step", ScheduleKind.Step), ("cosine", ScheduleKind.Cosine), ("onecycle", ScheduleKind.OneCycle));
        var warmup = CliOptions.Double("--warmup", "Cosine's warm-up fraction [default: 0.05] or onecycle's rise fraction [default: 0.3].", 0, 1, helpName: "F");
        var tile = CliOptions.Int("--tile", "Tile size (the network input, N x N); turns tiling on.", min: 1);
        var tileStride = CliOptions.Ints("--tile-stride", "Tile stride: S or H,W [default: the tile size, no overlap].", "S|H,W", min: 1, maxCount: 2);
        var resizeWidth = CliOptions.Int("--resize-width", "Resize images to this width first (keeping the aspect ratio).", min: 1, helpName: "W");
        var resize = ResizeOption();
        var placement = CliOptions.Choice("--tile-placement", "Where the last tile of a row goes: shifted to the edge, or all tiles spread evenly [default: shift].", ("shift", TilePlacement.ShiftLast), ("spread", TilePlacement.Spread));
        var margin = CliOptions.Int("--tile-margin", "Pixels of each tile's border left out of the stitched map [default: 0].", min: 0, helpName: "M");
        var missingMasks = DataSources.MissingMasksOption();
        var model = CliOptions.Choice("--model", "The model family: uniad (a transformer reconstructs the features; trained) or memory-bank (a coreset of normal patch features, PatchCore; fitted in one pass, no epochs: ImageNet ResNet-18 from NuGet layers 2-3, 256-pixel tiles of images 256 wide) [default: uniad].", ("uniad", ModelKind.UniAD), ("memory-bank", ModelKind.MemoryBank));
        var coresetRatio = CliOptions.Double("--coreset-ratio", "memory-bank: the fraction of the candidate patches the bank keeps [default: 0.01].", 0, 1, helpName: "R");
        var bankPerClass = new Option<bool>("--bank-per-class") { Description = "memory-bank: one bank per class instead of one for all; scoring then needs each image's class (score --class NAME)." };

        var command = new Command("train", "Train (UniAD) or fit (memory bank) one model on every class of a data source, validate, checkpoint and calibrate it.")
        {
            data, output, validation, holdout, rate, backbone, layers, weights, randomWeights, preset, epochs, batch, lr, input, stride, device,
            evaluateEvery, checkpointEvery, resume, cacheDir, score, scoreWindow, seed, budget, schedule, warmup,
            tile, tileStride, resizeWidth, resize, placement, margin, missingMasks, model, coresetRatio, bankPerClass,
        };
        command.SetAction(p => Cli.Guard(ctx, p, () =>
        {
            // Everything the command line can get wrong first (exit 2), then every path (exit 1), then the work.
            bool memoryBank = p.GetValue(model) == ModelKind.MemoryBank;
            RequireFamilyOptions(memoryBank, p.GetValue(preset) is not null, p.GetValue(resume) is not null, p.GetValue(coresetRatio) is not null, p.GetValue(bankPerClass));
            bool cpuPreset = p.GetValue(preset) == Preset.Cpu;
            var recipe = memoryBank
                ? new TrainingOptions { BatchSize = 8, TimeBudget = p.GetValue(budget) }
                : Recipe(p.GetValue(budget) ?? (cpuPreset ? CpuPresetBudget : null), p.GetValue(schedule), p.GetValue(warmup));
            int seedValue = p.GetValue(seed) ?? 133;
            int inputSize = p.GetValue(input) ?? (cpuPreset || memoryBank ? DetectorPreset.CpuTile : 224);
            var backboneName = p.GetValue(backbone) ?? (cpuPreset || memoryBank ? DetectorPreset.CpuBackbone : "efficientnet-b4");
            RequireFeatures(backboneName, p.GetValue(weights), p.GetValue(randomWeights));
            var tiling = Tiling(p.GetValue(tile), p.GetValue(input), p.GetInts(tileStride), p.GetValue(resizeWidth), p.GetValue(resize), p.GetValue(placement), p.GetValue(margin), ref inputSize);
            var training = recipe with
            {
                Epochs = p.GetValue(epochs) ?? recipe.Epochs,
                BatchSize = p.GetValue(batch) ?? recipe.BatchSize,
                Optimizer = recipe.Optimizer with { LearningRate = p.GetValue(lr) ?? recipe.Optimizer.LearningRate },
                Seed = seedValue,
                FeatureCacheDirectory = p.GetValue(cacheDir),
                EvaluateEvery = p.GetValue(evaluateEvery) ?? 10,
                CheckpointEvery = p.GetValue(checkpointEvery) ?? 10,
                ResumeFrom = p.GetValue(resume),
            };

            var outputPath = p.GetRequiredValue(output);
            PathChecks.OutputFile(outputPath, "--out");
            // Checkpoints go to --out and its .best file during training: neither may be a file training reads.
            PathChecks.NotAnInput(outputPath, "--out", (training.ResumeFrom, "--resume"), (p.GetValue(weights), "--weights"));
            PathChecks.NotAnInput(AnomalyDetector.BestPath(outputPath), "the best checkpoint beside --out", (training.ResumeFrom, "--resume"), (p.GetValue(weights), "--weights"));
            if (p.GetValue(weights) is { } weightsPath)
            {
                PathChecks.InputFile(weightsPath, "--weights");
            }

            if (training.ResumeFrom is { } resumePath)
            {
                CheckResume(resumePath, training.Epochs);
            }

            if (training.FeatureCacheDirectory is { } cache)
            {
                PathChecks.OutputFolder(cache, "--cache-dir");
            }

            var policy = p.GetValue(missingMasks) ?? MissingMaskPolicy.Throw;
            var dataSpec = p.GetRequiredValue(data);
            var train = DataSources.Open(dataSpec, DatasetSplit.Train, policy);

            // Validation and calibration never look at the test split: an explicit --validation source (which may hold
            // defects), else a seeded hold-out of the normal training images (--holdout, default 10 %; 0 for none).
            IImageSource? validationSource = null;
            string validationLabel = "none";
            if (p.GetValue(validation) is { } v)
            {
                validationSource = DataSources.Open(v, DatasetSplit.Test, policy);
                int defects = validationSource.Samples.Count(s => s.IsAnomalous);
                validationLabel = $"{validationSource.Samples.Count} images of the validation source {v} ({defects} anomalous)";
            }
            else if ((p.GetValue(holdout) ?? DataSplits.DefaultHoldoutFraction) is var fraction && fraction > 0)
            {
                var (kept, heldOut) = DataSplits.HoldOutNormal(train, fraction, seedValue);
                train = kept;
                validationSource = heldOut;
                validationLabel = $"{heldOut.Samples.Count} held-out normal training images";
            }

            if (validationSource is not null)
            {
                CheckCalibrationSource(validationSource, validationLabel);
            }

            training = training with { Validation = validationSource, CheckpointPath = outputPath };
            // A preset gives the network; explicit options change it (the backbone, layers, input, stride, tiling, score).
            var builder = (memoryBank ? DetectorPreset.MemoryBank() : cpuPreset ? DetectorPreset.CpuBudget() : DetectorPreset.Paper())
                .WithBackbone(backboneName, p.GetInts(layers) ?? (memoryBank ? new[] { 2, 3 } : cpuPreset ? new[] { 1, 2, 3 } : new[] { 1, 2, 3, 4 }), p.GetValue(weights))
                .WithInputSize(inputSize, inputSize)
                .WithNeckStride(p.GetValue(stride) ?? 16)
                .WithDevice(p.GetValue(device) ?? "cpu")
                .WithSeed(seedValue);
            if (p.GetInts(scoreWindow) is { } window)
            {
                builder.WithImageScore(p.GetValue(score) ?? ImageScoreKind.PooledMax, window[0], window[^1]);
            }
            else if (p.GetValue(score) is { } kind)
            {
                builder.WithImageScore(kind);
            }

            if (tiling is not null)
            {
                builder.WithTiling(tiling);
            }

            if (memoryBank && (p.GetValue(coresetRatio) is not null || p.GetValue(bankPerClass)))
            {
                builder.WithMemoryBank(o => o with { CoresetRatio = p.GetValue(coresetRatio) ?? o.CoresetRatio, PerClassBanks = p.GetValue(bankPerClass) });
            }

            using var detector = builder.Build();
            var plan = memoryBank
                ? string.Create(Culture, $"{(detector.Options.MemoryBank!.PerClassBanks ? "a memory bank per class" : "a memory bank")} of {detector.Options.MemoryBank.CoresetRatio:P1} of at most {detector.Options.MemoryBank.MaxCandidates:N0} patches{(training.TimeBudget is { } limit ? $" within {limit}" : string.Empty)}")
                : training.TimeBudget is { } timeBudget ? $"a budget of {timeBudget} (at most {training.Epochs} epochs)" : $"{training.Epochs} epochs";
            ctx.Out.MarkupLineInterpolated($"Training on [bold]{train.Samples.Count}[/] images ({string.Join(", ", train.Samples.Select(s => s.ClassName).Distinct())}), {plan}, batch {training.BatchSize}, {training.Schedule}; validation: {validationLabel}.");
            Cli.DescribeTiling(ctx, detector);
            var result = Run(ctx, detector, train, training);
            if (detector.LastFit is { } fit)
            {
                string perClass = fit.ClassBankSizes is { } sizes ? string.Create(Culture, $" ({string.Join(", ", sizes.Select(kv => $"{kv.Key} {kv.Value}"))})") : string.Empty;
                ctx.Out.MarkupLineInterpolated($"Fitted {(fit.ClassBankSizes is null ? "a memory bank" : "memory banks")} of {fit.BankSize} patches{perClass} from {fit.Candidates} candidates of {fit.Patches} patches in {result.Duration.TotalMinutes.ToString("F1", Culture)} min (features {fit.FeatureTime.TotalSeconds.ToString("F0", Culture)} s, coreset {fit.CoresetTime.TotalSeconds.ToString("F0", Culture)} s); model written to [bold]{outputPath}[/].");
            }
            else
            {
                ctx.Out.MarkupLineInterpolated($"Trained {result.EpochsCompleted} epochs ({result.TotalSteps} scheduled steps) in {result.Duration.TotalMinutes.ToString("F1", Culture)} min, stopped by {result.StopReason}; model written to [bold]{outputPath}[/].");
            }

            if (result.ValidationFailure is { } failure)
            {
                ctx.Err.MarkupLineInterpolated($"[yellow]warning:[/] validation failed ({failure}); the model is written, without its validation figures.");
            }

            if (result.Validation is { } report)
            {
                ctx.Out.MarkupLineInterpolated($"Validation metrics ({validationLabel}):");
                ctx.Output.WriteLine(report.ToMarkdown());
            }
            else if (result.BestValidationLoss is { } bestLoss)
            {
                ctx.Out.MarkupLineInterpolated($"Best validation loss {bestLoss.ToString("G6", Culture)} on {validationLabel} (best checkpoint: {AnomalyDetector.BestPath(outputPath)}).");
            }

            if (validationSource is null)
            {
                ctx.Out.MarkupLine("calibration: none (--holdout 0 and no --validation); run 'uniad calibrate' on a validation source.");
                return ExitCodes.Success;
            }

            double rateValue = p.GetValue(rate) ?? 0.01;
            var calibration = detector.CalibrateOnValidation(validationSource, rateValue, cancellationToken: ctx.Cancel);
            DetectorCheckpoint.WriteCalibration(outputPath, calibration); // keeps the optimizer state: --resume still works
            var rule = calibration.Method == CalibrationMethod.F1Max ? "F1-max" : string.Create(Culture, $"false-alarm rate {rateValue * 100:G3}%");
            ctx.Out.MarkupLineInterpolated($"calibration: {rule} on {validationLabel}: image threshold {calibration.ImageThreshold.ToString("G6", Culture)}, pixel threshold {calibration.PixelThreshold?.ToString("G6", Culture) ?? "none"}; saved to [bold]{outputPath}[/].");
            return ExitCodes.Success;
        }));
        return command;
    }

    /// <summary>A resume checkpoint must exist, be resumable and have epochs left to train.</summary>
    private static void CheckResume(string path, int epochs)
    {
        PathChecks.InputFile(path, "--resume");
        var info = DetectorCheckpoint.ReadInfo(path);
        if (!info.HasOptimizerState)
        {
            throw new RefusedException($"--resume '{path}' holds no optimizer state (a scoring file or an imported model, not a training checkpoint); it cannot be resumed.");
        }

        if (info.Epoch >= epochs)
        {
            throw new RefusedException($"--resume '{path}' has already trained {info.Epoch} epochs, at or past --epochs {epochs}: nothing to train, nothing written. Give --epochs above {info.Epoch} to train on.");
        }
    }

    /// <summary>The calibration after training must be possible: checked before training, so that no run ends in a refusal.</summary>
    private static void CheckCalibrationSource(IImageSource validation, string label)
    {
        int normal = validation.Samples.Count(s => !s.IsAnomalous);
        bool anomalous = validation.Samples.Any(s => s.IsAnomalous);
        if (normal == 0)
        {
            throw new RefusedException($"the validation images ({label}) hold no normal image, so the model could not be calibrated after training. Nothing was trained.");
        }

        if (!anomalous && normal < CalibrationOptions.DefaultMinimumNormalImages)
        {
            throw new RefusedException($"false-alarm calibration needs at least {CalibrationOptions.DefaultMinimumNormalImages} normal images and the validation images ({label}) are {normal}: raise --holdout, give --validation SOURCE, or train with --holdout 0 and run 'uniad calibrate' later. Nothing was trained.");
        }
    }

    private static TrainingResult Run(CliContext ctx, AnomalyDetector detector, IImageSource train, TrainingOptions training)
    {
        TrainingResult? result = null;
        ctx.Err.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(progressContext =>
            {
                var features = progressContext.AddTask("features", maxValue: Math.Max(1, train.Samples.Count));
                var epochTask = progressContext.AddTask("epochs", maxValue: training.Epochs);
                var progress = new SynchronousProgress<TrainingProgress>(p =>
                {
                    if (p.Stage == "coreset")
                    {
                        features.Value = features.MaxValue;
                        epochTask.MaxValue = Math.Max(1, p.Steps);
                        epochTask.Value = p.Step;
                        epochTask.Description = string.Create(Culture, $"coreset {p.Step}/{p.Steps}");
                    }
                    else if (p.Stage == "features")
                    {
                        features.MaxValue = Math.Max(1, p.Steps); // tiles, when tiling
                        features.Value = p.Step;
                    }
                    else
                    {
                        features.Value = features.MaxValue;
                        epochTask.MaxValue = Math.Max(1, p.Epochs); // the planned epochs with a time budget
                        epochTask.Value = p.Epoch - 1 + (p.Steps == 0 ? 1 : (double)p.Step / p.Steps);
                        epochTask.Description = string.Create(Culture, $"epoch {p.Epoch}/{p.Epochs} loss {p.Loss:F4}");
                    }
                });
                result = detector.Train(train, training, progress, ctx.Cancel);
            });
        return result!;
    }

    private enum ScheduleKind
    {
        Step,
        Cosine,
        OneCycle,
    }

    private static Option<TimeSpan?> BudgetOption() => new("--budget")
    {
        HelpName = "TIME",
        Description = "Wall-clock time for training (90s, 30m, 1h30m, or minutes: 45); selects the CPU recipe.",
        CustomParser = result =>
        {
            var text = result.Tokens.Count == 0 ? string.Empty : result.Tokens[^1].Value;
            try
            {
                return TrainingPreset.ParseBudget(text);
            }
            catch (FormatException ex)
            {
                result.AddError($"--budget: {ex.Message}");
                return null;
            }
        },
    };

    private static Option<GridSize?> ResizeOption() => new("--resize")
    {
        HelpName = "HxW",
        Description = "Resize images to HEIGHTxWIDTH first (instead of --resize-width).",
        CustomParser = result =>
        {
            var text = result.Tokens.Count == 0 ? string.Empty : result.Tokens[^1].Value;
            var parts = text.Split('x', 'X');
            if (parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, Culture, out var h) && int.TryParse(parts[1], NumberStyles.None, Culture, out var w) && h > 0 && w > 0)
            {
                return new GridSize(h, w);
            }

            result.AddError($"--resize needs HEIGHTxWIDTH (e.g. 512x768), got '{text}'.");
            return null;
        },
    };

    // --budget selects TrainingPreset.CpuBudget (batch 8, warm-up + cosine over the budget), otherwise the
    // reference recipe; --schedule and --warmup replace the schedule.
    /// <summary>The model families of <c>--model</c>.</summary>
    private enum ModelKind
    {
        UniAD,
        MemoryBank,
    }

    /// <summary>Options of one family only: <c>--preset</c> and <c>--resume</c> are UniAD's, <c>--coreset-ratio</c> and <c>--bank-per-class</c> the memory bank's (exit code 2 otherwise).</summary>
    private static void RequireFamilyOptions(bool memoryBank, bool preset, bool resume, bool coresetRatio, bool bankPerClass)
    {
        if (memoryBank && preset)
        {
            throw new UsageException("--preset chooses a UniAD network and recipe; --model memory-bank has its own settings (DetectorPreset.MemoryBank).");
        }

        if (memoryBank && resume)
        {
            throw new UsageException("--resume: a memory bank is fitted in one pass; there is nothing to resume (fit again).");
        }

        if (!memoryBank && coresetRatio)
        {
            throw new UsageException("--coreset-ratio applies to --model memory-bank only.");
        }

        if (!memoryBank && bankPerClass)
        {
            throw new UsageException("--bank-per-class applies to --model memory-bank only.");
        }
    }

    /// <summary>The presets of <c>--preset</c>.</summary>
    private enum Preset
    {
        Cpu,
        Paper,
    }

    /// <summary>The time budget of <c>--preset cpu</c> when <c>--budget</c> is not given.</summary>
    public static readonly TimeSpan CpuPresetBudget = TimeSpan.FromMinutes(30);

    /// <summary>
    /// A new user must never train on random features without asking: every backbone but the one NuGet ships needs
    /// <c>--weights</c>, or <c>--random-weights</c> to say that random features are meant (exit code 2 otherwise).
    /// </summary>
    private static void RequireFeatures(string backbone, string? weights, bool randomWeights)
    {
        bool shipped = string.Equals(backbone, DetectorPreset.CpuBackbone, StringComparison.OrdinalIgnoreCase);
        if (weights is not null && randomWeights)
        {
            throw new UsageException("--weights and --random-weights exclude each other.");
        }

        if (!shipped && weights is null && !randomWeights)
        {
            throw new UsageException(
                $"--backbone {backbone} has no pretrained weights unless you give them: --weights FILE (docs/weights.md says where to get them), " +
                $"or --preset cpu (the ImageNet ResNet-18 that NuGet ships, nothing to download), or --random-weights to train on random features knowingly.");
        }
    }

    private static TrainingOptions Recipe(TimeSpan? budget, ScheduleKind? schedule, double? warmup)
    {
        var recipe = budget is { } b ? TrainingPreset.CpuBudget(b) : TrainingPreset.Paper();
        LearningRateSchedule chosen = (schedule ?? (budget is null ? ScheduleKind.Step : ScheduleKind.Cosine)) switch
        {
            ScheduleKind.Step when warmup is null => recipe.Schedule is StepLRSchedule ? recipe.Schedule : new StepLRSchedule(),
            ScheduleKind.Step => throw new UsageException("--warmup needs --schedule cosine or onecycle"),
            ScheduleKind.Cosine => (recipe.Schedule as WarmupCosineSchedule ?? new WarmupCosineSchedule()) with { WarmupFraction = warmup ?? TrainingPreset.CpuWarmupFraction },
            _ => warmup is { } w ? new OneCycleSchedule { PeakFraction = w } : new OneCycleSchedule(),
        };
        try
        {
            chosen.Validate();
        }
        catch (ArgumentException ex)
        {
            throw new UsageException($"--warmup: {ex.Message}");
        }

        return recipe with { Schedule = chosen };
    }

    // --tile N (the tile = the network input, N x N), --tile-stride S or H,W, --resize-width W or --resize HxW,
    // --tile-placement shift|spread, --tile-margin M; any of them turns tiling on. Evaluate, score and calibrate read it from the model.
    private static TilingOptions? Tiling(int? tile, int? explicitInput, int[]? stride, int? resizeWidth, GridSize? resize, TilePlacement? placement, int? margin, ref int input)
    {
        if (tile is null && stride is null && resizeWidth is null && resize is null && placement is null && margin is null)
        {
            return null;
        }

        if (tile is { } t)
        {
            if (explicitInput is not null && t != input)
            {
                throw new UsageException($"--tile {t} and --input {input} disagree: a tile is the network input");
            }

            input = t;
        }

        return new TilingOptions
        {
            Stride = stride switch { null => null, [var both] => new GridSize(both, both), [var h, var w] => new GridSize(h, w), _ => null },
            ResizeWidth = resizeWidth,
            ResizeTo = resize,
            Placement = placement ?? TilePlacement.ShiftLast,
            Margin = margin ?? 0,
        };
    }
}
