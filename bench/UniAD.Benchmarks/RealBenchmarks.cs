using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;

/// <summary>
/// Group <c>real</c>: ONE model trained with a named recipe over every class of an MVTec-layout root (default
/// <c>../shared/data/real-defects</c> beside the repository) plus the synthetic classes, for a wall-clock budget.
/// Prints the plan, the held-out (validation) loss curve, an explicitly labelled test curve, the per-class test
/// table and one <c>real CLASS image-auroc X pixel-auroc Y</c> line per real class. Runs only with <c>--only real</c>.
/// Options: [--data-root DIR] [--classes a,b] [--minutes N] [--backbone NAME] [--recipe cpu|paper] [--weights FILE]
/// [--curve-points N] [--seed N] [--width N] [--layers N] (the last two shrink the network to check the code path quickly)
/// [--dropout P] (the reconstruction's dropout; default the preset's: none for the CPU preset, 0.1 for EfficientNet's paper network)
/// [--save FILE] (keeps the calibrated detector, for looking at its maps afterwards) [--reference-maps on|off]
/// (default on: the final table divides maps by per-class reference maps; the raw table is printed first)
/// [--feature-cache on|off] (default on; off runs the backbone in every step, for the time-to-quality comparison).
/// After the test curve it prints the time to quality: the first curve point whose mean image and pixel AUROC are
/// both within 0.01 of the last point's.
/// [--score-windows HxW,HxW,...|off] (default <see cref="DefaultWindows"/>): after the final table, for each real class,
/// its test images are split in two by file order; the image-score window is chosen among the candidates on one half
/// (<see cref="AnomalyDetector.SelectScoreWindow"/>: a validation half with defects, as a user with a labelled
/// validation set would) and the other half, which took no part in the choice, is scored with it and with the preset's
/// window; then the halves swap roles, and the mean of the two held-out figures is printed. [--load FILE] skips training and evaluates a detector saved by --save.
/// [--score plainmax|pooledmax|topmean] (with --load: another image score on the loaded weights) [--map-sigma S] (UniAD's map smoothing, sigma in pixels; with --load, applied to a copy of the loaded file)
/// [--objective mse|cosine] (UniAD's training objective, default the paper's MSE; cosine: the global cosine with hard-point
/// mining and the cosine-distance map, issue 28) [--lr X] (the peak learning rate instead of the recipe's)
/// [--bottleneck-dropout P] (the noisy bottleneck: dropout on the projected tokens in training; default none)
/// [--jitter on|off] (feature jitter; default the preset's: on).
/// [--family uniad|memory-bank|both] (default both): the memory-bank family (<see cref="MemoryBankBenchmarks"/>) runs first on
/// the same split, at UniAD's working width (448) unless [--bank-width W]; [--ratio R] [--candidates N] [--per-class on] as there.
/// </summary>
internal static class RealBenchmarks
{
    private const double HeldOutFraction = 0.2;
    private const int CurveImagesPerClass = 40;
    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    /// <summary>The candidate windows (rows x columns of working-image pixels): the preset's square one, then wide, flat ones.</summary>
    private const string DefaultWindows = "64x64,32x64,32x128,16x128,8x128,16x256,8x256";

    public static void Run(Func<string, string?> text, Func<string, int, int> number)
    {
        int minutes = number("--minutes", 30);
        if (minutes < 1)
        {
            throw new ArgumentException($"--minutes needs at least 1, got {minutes}.");
        }

        var recipe = text("--recipe") ?? "cpu";
        if (recipe is not ("cpu" or "paper"))
        {
            throw new ArgumentException($"--recipe needs cpu or paper, got '{recipe}'.");
        }

        var backbone = text("--backbone") ?? DetectorPreset.CpuBackbone;
        var cache = text("--feature-cache") ?? "on";
        if (cache is not ("on" or "off"))
        {
            throw new ArgumentException($"--feature-cache needs on or off, got '{cache}'.");
        }

        long seed = number("--seed", 133);
        int curvePoints = number("--curve-points", 6);
        var wanted = text("--classes")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal);
        var explicitRoot = text("--data-root");
        var realRoot = explicitRoot is null ? DefaultDataRoot() : Path.GetFullPath(explicitRoot);
        var budget = TimeSpan.FromMinutes(minutes);
        var wall = Stopwatch.StartNew();
        var temp = Directory.CreateTempSubdirectory("uniad-bench-real-").FullName;
        try
        {
            // Real classes (any MVTec-layout root), then the synthetic ones generated like the quick start's.
            var realTrain = new List<ImageSample>();
            var realTest = new List<ImageSample>();
            if (Directory.Exists(realRoot))
            {
                var found = MvtecAd.Open(realRoot, DatasetSplit.Train).ClassNames.Where(c => wanted is null || wanted.Contains(c)).ToList();
                if (found.Count > 0)
                {
                    var options = new MvtecOptions { Classes = found };
                    realTrain.AddRange(MvtecAd.Open(realRoot, DatasetSplit.Train, options).Samples);
                    realTest.AddRange(MvtecAd.Open(realRoot, DatasetSplit.Test, options).Samples);
                }
            }
            else if (explicitRoot is not null)
            {
                throw new DirectoryNotFoundException($"--data-root '{realRoot}' does not exist.");
            }
            else
            {
                Console.WriteLine($"note: no real data at {realRoot}; synthetic classes only (pass --data-root DIR).");
            }

            var realClasses = realTrain.Select(s => s.ClassName).Distinct(StringComparer.Ordinal).ToList();
            var synthetic = Enum.GetValues<SyntheticClass>().Where(c => wanted is null || wanted.Contains(SyntheticDefects.ClassName(c))).ToList();
            var syntheticTrain = new List<ImageSample>();
            var syntheticTest = new List<ImageSample>();
            if (synthetic.Count > 0)
            {
                var root = Path.Combine(temp, "synthetic");
                SyntheticDefects.Generate(root, new SyntheticDatasetOptions { Classes = synthetic, ImageSize = 224, TrainPerClass = 80, TestGoodPerClass = 20, TestPerDefect = 5, Seed = seed });
                syntheticTrain.AddRange(MvtecAd.Open(root, DatasetSplit.Train).Samples);
                syntheticTest.AddRange(MvtecAd.Open(root, DatasetSplit.Test).Samples);
            }

            var clash = syntheticTrain.Select(s => s.ClassName).Distinct().Intersect(realClasses).ToList();
            if (clash.Count > 0)
            {
                throw new InvalidDataException($"Real classes {string.Join(", ", clash)} have the names of synthetic ones.");
            }

            var unknown = wanted?.Except(realClasses).Except(synthetic.Select(SyntheticDefects.ClassName)).ToList();
            if (unknown is { Count: > 0 })
            {
                throw new ArgumentException($"--classes names {string.Join(", ", unknown)}, found neither in {realRoot} nor among the synthetic classes.");
            }

            var all = new ImageSource("real+synthetic", realTrain.Concat(syntheticTrain));
            var test = new ImageSource("test", realTest.Concat(syntheticTest));
            if (all.Samples.Count == 0)
            {
                throw new ArgumentException("No class to train on.");
            }

            var (train, heldOut) = DataSplits.HoldOutNormal(all, HeldOutFraction, seed);
            var curveTest = new ImageSource("test-curve", test.Samples.GroupBy(s => s.ClassName).SelectMany(g => SeededOrder.Shuffled(g, seed).Take(CurveImagesPerClass)));
            var windows = Windows(text("--score-windows") ?? DefaultWindows);
            var family = text("--family") ?? "both";
            if (family is not ("uniad" or "memory-bank" or "both"))
            {
                throw new ArgumentException($"--family needs uniad, memory-bank or both, got '{family}'.");
            }

            if (family != "uniad" && text("--load") is null)
            {
                // The memory bank first, on the same split and at UniAD's working width unless --bank-width says otherwise.
                var bankSettings = MemoryBankBenchmarks.Settings.From(name => name == "--bank-width" ? text(name) ?? DetectorPreset.CpuResizeWidth.ToString(Invariant) : text(name));
                MemoryBankBenchmarks.Evaluate(train, heldOut, test, realClasses, bankSettings, text("--per-class") == "on", seed, "real-memory-bank");
                if (family == "memory-bank")
                {
                    return;
                }
            }

            double? mapSigma = text("--map-sigma") is { } sigmaText
                ? double.TryParse(sigmaText, NumberStyles.Float, Invariant, out double sg) && sg >= 0 && double.IsFinite(sg) ? sg : throw new ArgumentException($"--map-sigma needs 0 or a positive number of pixels, got '{sigmaText}'.")
                : null;
            if (text("--load") is { } loadPath)
            {
                if (mapSigma is { } loadSigma)
                {
                    loadPath = WithMapSigma(loadPath, loadSigma);
                }

                using var loaded = AnomalyDetector.Load(loadPath);
                if (text("--reference-maps") == "off")
                {
                    loaded.ClearReferenceMaps();
                }

                if (text("--score") is { } scoreText)
                {
                    // Another image score on the loaded weights (the maps do not depend on it): plainmax, pooledmax or topmean.
                    var kind = Enum.TryParse<ImageScoreKind>(scoreText, ignoreCase: true, out var k) && Enum.IsDefined(k) ? k : throw new ArgumentException($"--score needs plainmax, pooledmax or topmean, got '{scoreText}'.");
                    loaded.SetImageScore(kind, loaded.Options.ScorePoolHeight ?? loaded.Options.ScorePoolSize, loaded.Options.ScorePoolSize);
                }

                Console.WriteLine(string.Create(Invariant, $"map smoothing sigma {loaded.Options.Reconstruction.MapSmoothingSigma}"));
                Console.WriteLine($"loaded {loadPath}: {loaded.EpochsTrained} epochs, reference maps {(loaded.ReferenceMaps is null ? "none" : "fitted")}, window {loaded.Options.ScorePoolHeight ?? loaded.Options.ScorePoolSize} x {loaded.Options.ScorePoolSize}");
                var loadedKey = MetricKeys.ImageAuroc(loaded.Options.ScoreKind);
                var loadedReport = loaded.Evaluate(test);
                PrintTable(loadedReport, realClasses, loadedKey, MetricKeys.ImageAveragePrecision(loaded.Options.ScoreKind), MetricKeys.PixelAuPro(0.3));
                foreach (var c in loadedReport.Classes.Where(c => realClasses.Contains(c.Name)))
                {
                    Console.WriteLine(string.Create(Invariant, $"real {c.Name} image-auroc {Get(c.Values, loadedKey):F3} pixel-auroc {Get(c.Values, MetricKeys.PixelAuroc):F3}"));
                }

                ChooseWindows(loaded, test, realClasses, windows);
                return;
            }

            // The network: the CPU preset's (layers 1-3 at 224, width 256, 4 + 4 layers, 7 x 7 mask) for any
            // backbone but EfficientNet, whose paper configuration is the default builder's.
            var builder = backbone.StartsWith("efficientnet", StringComparison.Ordinal)
                ? DetectorPreset.Paper().WithBackbone(backbone, weightsFile: text("--weights"))
                : DetectorPreset.CpuBudget(backbone, text("--weights"));
            if (text("--width") is not null || text("--layers") is not null)
            {
                int width = number("--width", 256), layers = number("--layers", 4);
                builder.WithReconstruction(o => o with { HiddenDim = width, FeedForwardDim = 4 * width, NumHeads = Math.Min(8, Math.Max(1, width / 32)), NumEncoderLayers = layers, NumDecoderLayers = layers });
            }

            if (text("--dropout") is { } dropoutText)
            {
                double dropout = double.TryParse(dropoutText, NumberStyles.Float, Invariant, out double d) && d >= 0 && d < 1
                    ? d
                    : throw new ArgumentException($"--dropout needs a probability in [0, 1), got '{dropoutText}'.");
                builder.WithReconstruction(o => o with { Dropout = dropout });
            }

            if (text("--bottleneck-dropout") is { } bottleneckText)
            {
                double bottleneck = double.TryParse(bottleneckText, NumberStyles.Float, Invariant, out double d) && d >= 0 && d < 1
                    ? d
                    : throw new ArgumentException($"--bottleneck-dropout needs a probability in [0, 1), got '{bottleneckText}'.");
                builder.WithReconstruction(o => o with { BottleneckDropout = bottleneck });
            }

            if (text("--jitter") is { } jitterText)
            {
                builder.WithReconstruction(o => o with
                {
                    FeatureJitter = jitterText switch
                    {
                        "off" => null,
                        "on" => new UniAD.Core.Reconstruction.FeatureJitterOptions(),
                        _ => throw new ArgumentException($"--jitter needs on or off, got '{jitterText}'."),
                    },
                });
            }

            var objective = text("--objective") ?? "mse";
            if (objective is not ("mse" or "cosine"))
            {
                throw new ArgumentException($"--objective needs mse or cosine, got '{objective}'.");
            }

            if (objective == "cosine")
            {
                builder.WithReconstruction(o => o with { Objective = UniAD.Core.Reconstruction.ReconstructionObjective.GlobalCosine });
            }

            if (mapSigma is { } trainSigma)
            {
                builder.WithReconstruction(o => o with { MapSmoothingSigma = trainSigma });
            }

            using var logging = new ConsoleLoggerFactory();
            using var detector = builder.WithSeed(seed).WithLogging(logging).Build();
            Console.WriteLine(string.Create(Invariant, $"map smoothing sigma {detector.Options.Reconstruction.MapSmoothingSigma}"));
            var r = detector.Options.Reconstruction;
            var training = (recipe == "cpu" ? TrainingPreset.CpuBudget(budget) : TrainingPreset.Paper() with { TimeBudget = budget }) with
            {
                Seed = seed,
                HeldOutNormal = heldOut,
                HeldOutEvery = 1,
                CacheFeatures = cache == "on",
            };
            if (text("--lr") is { } lrText)
            {
                double lr = double.TryParse(lrText, NumberStyles.Float, Invariant, out double l) && l > 0 ? l : throw new ArgumentException($"--lr needs a positive number, got '{lrText}'.");
                training = training with { Optimizer = training.Optimizer with { LearningRate = lr } };
            }

            Console.WriteLine(string.Create(Invariant, $"classes: {string.Join(", ", realClasses.Select(c => c + " (real)").Concat(syntheticTrain.Select(s => s.ClassName).Distinct()))}"));
            Console.WriteLine(string.Create(Invariant, $"images: {train.Samples.Count} training, {heldOut.Samples.Count} held-out normal ({HeldOutFraction:P0} per class, seeded; calibration and validation loss), {test.Samples.Count} test"));
            Console.WriteLine(string.Create(Invariant, $"network: {detector.Options.Backbone} layers {string.Join(',', detector.Options.BackboneLayers)}, input {detector.Options.InputSize}, {r.InputChannels} channels, tokens {r.FeatureSize}, width {r.HiddenDim}, {r.NumEncoderLayers}+{r.NumDecoderLayers} layers, mask {r.NeighborSize?.ToString() ?? "none"}, jitter {r.FeatureJitter?.Scale.ToString(Invariant) ?? "off"}, dropout {r.Dropout.ToString(Invariant)}, bottleneck dropout {r.BottleneckDropout.ToString(Invariant)}"));
            Console.WriteLine(string.Create(Invariant, $"objective {detector.Options.Reconstruction.Objective} (hard mining: {detector.Options.Reconstruction.HardMining})"));
            Console.WriteLine(string.Create(Invariant, $"recipe {recipe}: batch {training.BatchSize}, lr {training.Optimizer.LearningRate:G3}, weight decay {training.Optimizer.WeightDecay:G3}, {training.Schedule}, clip {training.ClipGradNorm}, budget {budget}, feature cache {cache}"));

            // The test curve: the held-out split has normal images only (no AUROC), so AUROC against time is
            // measured on a fixed subsample of the TEST split. To keep evaluation out of the training budget,
            // training only saves snapshots at the curve points; they are evaluated after training.
            var snapshots = new List<(TimeSpan Elapsed, int Epoch, string Path)>();
            var snapshotTime = TimeSpan.Zero;
            var imageKey = MetricKeys.ImageAuroc(detector.Options.ScoreKind);
            var nextPoint = curvePoints > 0 ? budget / (curvePoints + 1) : TimeSpan.MaxValue;
            var progress = new SyncProgress(p =>
            {
                if (p.Stage == "held-out" && p.Elapsed >= nextPoint)
                {
                    var watch = Stopwatch.StartNew();
                    var path = Path.Combine(temp, string.Create(Invariant, $"snapshot-{snapshots.Count}.safetensors"));
                    detector.Save(path);
                    snapshotTime += watch.Elapsed;
                    snapshots.Add((p.Elapsed, p.Epoch, path));
                    nextPoint = p.Elapsed + (budget / (curvePoints + 1));
                }
            });
            var result = detector.Train(train, training, progress);

            Console.WriteLine();
            Console.WriteLine(string.Create(Invariant, $"trained {result.EpochsCompleted} of {result.PlannedEpochs} planned epochs ({result.TotalSteps} scheduled steps) in {result.Duration.TotalMinutes:F1} min; stopped by {result.StopReason}; {snapshots.Count} curve snapshots took {snapshotTime.TotalSeconds:F0} s of it"));
            Console.WriteLine("validation curve (held-out NORMAL training images, mean reconstruction loss; no anomalies, so no AUROC):");
            Console.WriteLine("| epoch | minutes | held-out loss |");
            Console.WriteLine("|---:|---:|---:|");
            foreach (var point in Thin(result.HeldOutLosses, 20))
            {
                Console.WriteLine(string.Create(Invariant, $"| {point.Epoch} | {point.Elapsed.TotalMinutes:F2} | {point.Loss:G5} |"));
            }

            Console.WriteLine(string.Create(Invariant, $"test-curve (TEST split, up to {CurveImagesPerClass} images per class; for the learning-curve figure only, not for model selection):"));
            Console.WriteLine($"| epoch | minutes | image AUROC | pixel AUROC |{string.Concat(realClasses.Select(c => $" {c} image / pixel |"))}");
            Console.WriteLine($"|---:|---:|---:|---:|{string.Concat(realClasses.Select(_ => "---:|"))}");
            var finalPoint = snapshots.Count > 0 && snapshots[^1].Epoch == result.EpochsCompleted ? Array.Empty<(TimeSpan, int, string)>() : new[] { (result.Duration, result.EpochsCompleted, "") };
            var curve = new List<(TimeSpan Elapsed, double Image, double Pixel)>();
            foreach (var (elapsed, epoch, path) in snapshots.Concat(finalPoint))
            {
                using var snapshot = path.Length == 0 ? null : AnomalyDetector.Load(path);
                var report = (snapshot ?? detector).Evaluate(curveTest);
                var perReal = string.Concat(report.Classes.Where(c => realClasses.Contains(c.Name)).Select(c => string.Create(Invariant, $" {Get(c.Values, imageKey):F3} / {Get(c.Values, MetricKeys.PixelAuroc):F3} |")));
                Console.WriteLine(string.Create(Invariant, $"| {epoch} | {elapsed.TotalMinutes:F2} | {report.Mean[imageKey]:F3} | {report.Mean[MetricKeys.PixelAuroc]:F3} |{perReal}"));
                curve.Add((elapsed, report.Mean[imageKey], report.Mean[MetricKeys.PixelAuroc]));
            }

            if (curve.Count > 1)
            {
                var last = curve[^1];
                var reached = curve.First(p => p.Image >= last.Image - 0.01 && p.Pixel >= last.Pixel - 0.01);
                Console.WriteLine(string.Create(Invariant, $"time to quality (feature cache {cache}): {reached.Elapsed.TotalMinutes:F1} min of training to mean image / pixel AUROC {reached.Image:F3} / {reached.Pixel:F3}, within 0.01 of the last point's {last.Image:F3} / {last.Pixel:F3} (test curve; the feature extraction before the first step is inside the budget)"));
            }

            // Raw maps first (the method as published), then with per-class reference maps fitted on normal TRAINING
            // images (the held-out ones stay unbiased for calibration); both on the full test split.
            string imageAp = MetricKeys.ImageAveragePrecision(detector.Options.ScoreKind), aupro = MetricKeys.PixelAuPro(0.3);
            var rawWatch = Stopwatch.StartNew();
            var rawReport = detector.Evaluate(test);
            Console.WriteLine();
            Console.WriteLine($"final test table, raw maps (evaluation {rawWatch.Elapsed.TotalSeconds:F0} s):");
            PrintTable(rawReport, realClasses, imageKey, imageAp, aupro);
            foreach (var c in rawReport.Classes.Where(c => realClasses.Contains(c.Name)))
            {
                Console.WriteLine(string.Create(Invariant, $"raw {c.Name} image-auroc {Get(c.Values, imageKey):F3} pixel-auroc {Get(c.Values, MetricKeys.PixelAuroc):F3}"));
            }

            bool useReferences = text("--reference-maps") != "off";
            if (useReferences)
            {
                var referenceWatch = Stopwatch.StartNew();
                var references = detector.FitReferenceMaps(train, new ReferenceMapOptions { ImagesPerClass = 48, Seed = seed });
                Console.WriteLine(string.Create(Invariant, $"reference maps: {string.Join(", ", references.Classes.Values.Select(r => $"{r.ClassName} {r.Height}x{r.Width} from {r.Images} images"))} ({referenceWatch.Elapsed.TotalSeconds:F0} s)"));
            }

            var calibration = detector.Calibrate(heldOut, new CalibrationOptions { Method = CalibrationMethod.FalseAlarmRate, FalseAlarmRate = 0.01 });
            Console.WriteLine(string.Create(Invariant, $"calibration on the held-out normal images (1 % false alarms): image threshold {calibration.ImageThreshold:G5}, pixel threshold {calibration.PixelThreshold?.ToString("G5", Invariant) ?? "none"}"));

            if (text("--save") is { } savePath)
            {
                detector.Save(savePath);
                Console.WriteLine($"saved the calibrated detector to {savePath}");
            }

            var evaluation = Stopwatch.StartNew();
            var final = useReferences ? detector.Evaluate(test) : rawReport;
            Console.WriteLine();
            Console.WriteLine($"final test table{(useReferences ? ", maps divided by the per-class reference maps" : ", raw maps")} (evaluation {evaluation.Elapsed.TotalSeconds:F0} s):");
            PrintTable(final, realClasses, imageKey, imageAp, aupro);

            foreach (var c in final.Classes.Where(c => realClasses.Contains(c.Name)))
            {
                Console.WriteLine(string.Create(Invariant, $"real {c.Name} image-auroc {Get(c.Values, imageKey):F3} pixel-auroc {Get(c.Values, MetricKeys.PixelAuroc):F3}"));
            }

            ChooseWindows(detector, test, realClasses, windows);
            Console.WriteLine(string.Create(Invariant, $"wall time {wall.Elapsed.TotalMinutes:F1} min (data, training {result.Duration.TotalMinutes:F1} min, calibration, evaluation)"));
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }
    }

    /// <summary>
    /// A copy of the saved UniAD detector at <paramref name="path"/> whose stored options smooth the map with
    /// <paramref name="sigma"/> (the weights do not depend on the smoothing), in the temp folder.
    /// </summary>
    private static string WithMapSigma(string path, double sigma)
    {
        var (tensors, metadata) = UniAD.Core.Weights.SafetensorsFile.Read(path);
        using (tensors)
        {
            var info = System.Text.Json.Nodes.JsonNode.Parse(metadata["uniad.info"])!.AsObject();
            var options = info.First(p => string.Equals(p.Key, "Options", StringComparison.OrdinalIgnoreCase)).Value!.AsObject();
            var reconstruction = options.First(p => string.Equals(p.Key, "Reconstruction", StringComparison.OrdinalIgnoreCase)).Value!.AsObject();
            string key = reconstruction.Select(p => p.Key).FirstOrDefault(k => string.Equals(k, "MapSmoothingSigma", StringComparison.OrdinalIgnoreCase)) ?? "MapSmoothingSigma";
            reconstruction[key] = sigma;
            var updated = metadata.ToDictionary(p => p.Key, p => p.Value);
            updated["uniad.info"] = info.ToJsonString();
            string copy = Path.Combine(Path.GetTempPath(), $"{Path.GetFileNameWithoutExtension(path)}-sigma{sigma.ToString(Invariant)}.safetensors");
            UniAD.Core.Weights.SafetensorsFile.Write(copy, tensors, updated);
            Console.WriteLine($"{copy}: {path} with map smoothing sigma {sigma.ToString(Invariant)}");
            return copy;
        }
    }

    private static double Get(IReadOnlyDictionary<string, double> values, string key) => values.TryGetValue(key, out var v) ? v : double.NaN;

    private static IReadOnlyList<UniAD.Core.GridSize> Windows(string spec)
    {
        if (spec == "off")
        {
            return [];
        }

        return spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(w =>
        {
            var parts = w.Split('x');
            return parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, Invariant, out int h) && int.TryParse(parts[1], NumberStyles.None, Invariant, out int wd) && h > 0 && wd > 0
                ? new UniAD.Core.GridSize(h, wd)
                : throw new ArgumentException($"--score-windows needs HxW,HxW,... or off, got '{w}'.");
        }).ToList();
    }

    /// <summary>
    /// Per real class, two folds: its test images split by file order into an even- and an odd-numbered half; the
    /// window chosen on one half (<see cref="AnomalyDetector.SelectScoreWindow"/>, the detector's own window always a
    /// candidate) is reported on the other half, which took no part in that choice, and the other way round. One scoring
    /// pass a half: every candidate's AUROC on both halves comes from the two selections. The figure of the protocol is
    /// the mean of the two held-out halves' AUROCs. The detector gets its own window back, uncalibrated.
    /// </summary>
    private static void ChooseWindows(AnomalyDetector detector, ImageSource test, IReadOnlyList<string> realClasses, IReadOnlyList<UniAD.Core.GridSize> windows)
    {
        if (windows.Count == 0 || realClasses.Count == 0)
        {
            return;
        }

        var own = new UniAD.Core.GridSize(detector.Options.ScorePoolHeight ?? detector.Options.ScorePoolSize, detector.Options.ScorePoolSize);
        var candidates = windows.Prepend(own).Distinct().ToList();
        Console.WriteLine();
        Console.WriteLine("image-score window chosen on a validation half: each real class's test images split by file order into an even- and an odd-numbered half; the window chosen on one half is reported on the other (two folds)");
        foreach (var name in realClasses)
        {
            var ordered = test.Samples.Where(s => s.ClassName == name).OrderBy(s => s.ImagePath, StringComparer.Ordinal).ToList();
            var halves = new[] { "even", "odd" }
                .Select((half, parity) => (Name: half, Source: new ImageSource($"{name}-{half}", ordered.Where((_, i) => i % 2 == parity))))
                .ToList();
            var selections = new List<ScoreWindowSelection>();
            foreach (var (half, source) in halves)
            {
                var watch = Stopwatch.StartNew();
                var selection = detector.SelectScoreWindow(source, candidates);
                selections.Add(selection);
                Console.WriteLine(string.Create(Invariant, $"{name} {half} half: {selection.Images} images ({selection.AnomalousImages} anomalous): {string.Join(", ", selection.Candidates.Select(c => $"{c.Window.Height}x{c.Window.Width} {c.ImageAuroc:F3}"))}; best {selection.Chosen.Height}x{selection.Chosen.Width} ({watch.Elapsed.TotalSeconds:F0} s)"));
            }

            double AurocOf(ScoreWindowSelection on, UniAD.Core.GridSize window) => on.Candidates.Single(c => c.Window == window).ImageAuroc;
            var folds = new List<(double Chosen, double Own)>();
            for (int f = 0; f < 2; f++)
            {
                var (chooser, reporter) = (selections[f], selections[1 - f]);
                var fold = (Chosen: AurocOf(reporter, chooser.Chosen), Own: AurocOf(reporter, own));
                folds.Add(fold);
                Console.WriteLine(string.Create(Invariant, $"real {name} held-out-half image-auroc {fold.Chosen:F3} (window {chooser.Chosen.Height}x{chooser.Chosen.Width}, chosen on the {halves[f].Name} half, reported on the {halves[1 - f].Name} half, {reporter.Images} images, {reporter.AnomalousImages} anomalous) against {fold.Own:F3} (the detector's {own.Height}x{own.Width})"));
            }

            Console.WriteLine(string.Create(Invariant, $"real {name} two-fold image-auroc {folds.Average(f => f.Chosen):F3} (mean of the two held-out halves) against {folds.Average(f => f.Own):F3} with the detector's {own.Height}x{own.Width}"));
        }

        // Back to the detector's own window (its calibration went with the first change; the bench is done with it).
        detector.SetImageScore(ImageScoreKind.PooledMax, own.Height, own.Width);
    }

    private static void PrintTable(MetricsReport report, IReadOnlyCollection<string> realClasses, string imageKey, string imageAp, string aupro)
    {
        Console.WriteLine("| class | image AUROC | image AP | pixel AUROC | pixel AP | AU-PRO |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        foreach (var (name, v) in report.Classes.Select(c => (c.Name, c.Values)).Append(("mean", report.Mean)))
        {
            Console.WriteLine(string.Create(Invariant, $"| {name}{(realClasses.Contains(name) ? " (real)" : "")} | {Get(v, imageKey):F3} | {Get(v, imageAp):F3} | {Get(v, MetricKeys.PixelAuroc):F3} | {Get(v, MetricKeys.PixelAveragePrecision):F3} | {Get(v, aupro):F3} |"));
        }
    }

    private static IEnumerable<HeldOutLoss> Thin(IReadOnlyList<HeldOutLoss> points, int count) =>
        points.Count <= count ? points : Enumerable.Range(0, count).Select(i => points[(int)((long)i * (points.Count - 1) / (count - 1))]).Distinct();

    /// <summary><c>../shared/data/real-defects</c> relative to the repository root (the folder holding Directory.Build.props), found from the working directory or the program's folder.</summary>
    internal static string DefaultDataRoot()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Directory.Build.props")) && Directory.Exists(Path.Combine(dir.FullName, "src", "UniAD.Core")))
                {
                    return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "data", "real-defects"));
                }
            }
        }

        return Path.GetFullPath(Path.Combine("..", "shared", "data", "real-defects"));
    }

    private sealed class SyncProgress(Action<TrainingProgress> handler) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => handler(value);
    }
}

/// <summary>A seeded order of samples for the labelled test curve's subset.</summary>
internal static class SeededOrder
{
    /// <summary>A seeded order that depends only on the file names (FNV-1a of seed and name), not on the runtime's random generator.</summary>
    public static IEnumerable<ImageSample> Shuffled(IEnumerable<ImageSample> samples, long seed) =>
        samples.OrderBy(s => Hash(seed, s.ClassName + "/" + s.DefectType + "/" + Path.GetFileName(s.ImagePath))).ThenBy(s => s.ImagePath, StringComparer.Ordinal);

    private static ulong Hash(long seed, string text)
    {
        ulong h = 14695981039346656037UL ^ unchecked((ulong)seed);
        foreach (char c in text)
        {
            h = unchecked((h ^ c) * 1099511628211UL);
        }

        return h;
    }
}

/// <summary>Writes information and above to the console (the training plan, the time budget, early stopping).</summary>
internal sealed class ConsoleLoggerFactory : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => new Logger(categoryName[(categoryName.LastIndexOf('.') + 1)..]);

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }

    private sealed class Logger(string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel) && category is "AnomalyDetector" or "AnomalyDetectorBuilder")
            {
                Console.WriteLine($"  [{logLevel}] {formatter(state, exception)}");
            }
        }
    }
}
