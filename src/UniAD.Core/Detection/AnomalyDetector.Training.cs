using System.Diagnostics;
using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using UniAD.Core.MemoryBank;
using UniAD.Core.Metrics;
using UniAD.Core.Reconstruction;
using UniAD.Core.Training;
using static TorchSharp.torch;

namespace UniAD.Core.Detection;

public sealed partial class AnomalyDetector
{
    /// <summary>
    /// Trains the reconstruction network on the normal images of <paramref name="train"/> (all classes at
    /// once; anomalous samples are ignored), following <paramref name="options"/> (the reference recipe by
    /// default). The frozen backbone's features are cached unless augmentation is on. Optionally validates,
    /// writes checkpoints (atomically) and resumes from one. Cancellation stops at the next step and throws
    /// <see cref="OperationCanceledException"/>; the last checkpoint on disk stays intact and loadable.
    /// </summary>
    /// <exception cref="ArgumentException">Invalid options, or a resume checkpoint that has already trained <see cref="TrainingOptions.Epochs"/> epochs.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder of <see cref="TrainingOptions.CheckpointPath"/> does not exist (checked before anything is trained).</exception>
    /// <exception cref="FileNotFoundException"><see cref="TrainingOptions.ResumeFrom"/> does not exist.</exception>
    /// <exception cref="InvalidDataException">No normal training image, or a resume checkpoint of another architecture or without optimizer state.</exception>
    public TrainingResult Train(IImageSource train, TrainingOptions? options = null, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(train);
        options ??= new TrainingOptions();
        options.Validate();
        CheckPaths(options);
        var normal = train is ImageSource concrete ? concrete.Where(s => s.Label == 0) : new ImageSource(train.Name, train.Samples.Where(s => s.Label == 0));
        if (normal.Samples.Count == 0)
        {
            throw new InvalidDataException($"'{train.Name}' has no normal (label 0) image to train on.");
        }

        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            var samples = TrainingImages(normal, options.OnBadInput);
            return AnomalyModel is MemoryBankModel bank
                ? FitLocked(bank, samples, options, progress, cancellationToken)
                : TrainLocked(samples, options, progress, cancellationToken);
        }
    }

    /// <summary>
    /// The memory-bank family's <see cref="Train"/>: one pass over the normal samples fits the bank (<see cref="BankFitter"/>);
    /// nothing is trained, so epochs, learning rates and resuming do not apply. The checkpoint is written once and the
    /// validation set evaluated once.
    /// </summary>
    private TrainingResult FitLocked(MemoryBankModel model, IImageSource samples, TrainingOptions options, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        if (options.ResumeFrom is { } resume)
        {
            throw new ArgumentException($"ResumeFrom = '{resume}': a memory bank is fitted in one pass and has nothing to resume; fit again.", nameof(options));
        }

        var clock = Stopwatch.StartNew();
        var loader = new LoaderOptions { BatchSize = options.BatchSize, Preprocess = Preprocess, OnBadInput = options.OnBadInput };
        var limit = model.Options.CoresetTimeLimit ?? options.TimeBudget;
        var report = BankFitter.Fit(
            model, samples, loader, Device, limit, logger,
            progress is null ? null : new Progress<(string Stage, int Done, int Total)>(p => progress.Report(new TrainingProgress(p.Stage, 0, 0, p.Done, p.Total, double.NaN, 0, clock.Elapsed))),
            cancellationToken);
        LastFit = report;
        string? checkpoint = null;
        if (options.CheckpointPath is { } path)
        {
            DetectorCheckpoint.Save(this, path, optimizer: null);
            checkpoint = path;
        }

        MetricsReport? validation = null;
        string? failure = null;
        if (options.Validation is { } validationSource && validationSource.Samples.Any(s => s.IsAnomalous))
        {
            try
            {
                progress?.Report(new TrainingProgress("evaluation", 0, 0, 0, 0, double.NaN, 0, clock.Elapsed));
                validation = Evaluate(validationSource, cancellationToken: cancellationToken);
            }
            catch (Exception ex) when (ex is IOException or InvalidDataException or ArgumentException)
            {
                failure = ex.Message;
                logger.LogError(ex, "Validation failed ({Message}); the fitted bank is kept.", ex.Message);
            }
        }

        double? pixel = validation is not null && validation.Mean.TryGetValue(MetricKeys.PixelAuroc, out var v) ? v : null;
        return new TrainingResult(EpochsTrained, Array.Empty<double>(), validation, pixel, checkpoint, clock.Elapsed)
        {
            StopReason = report.BankSize < report.RequestedBankSize ? TrainingStopReason.TimeBudget : TrainingStopReason.Fitted,
            ValidationFailure = failure,
        };
    }

    /// <summary>What the last fit of a memory-bank detector did (candidates, bank size, times), or null.</summary>
    public BankFitReport? LastFit { get; private set; }

    /// <summary>Runs <see cref="Train"/> on a worker thread.</summary>
    public Task<TrainingResult> TrainAsync(IImageSource train, TrainingOptions? options = null, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Task.Run(() => Train(train, options, progress, cancellationToken), cancellationToken);

    private TrainingResult TrainLocked(IImageSource train, TrainingOptions options, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var reconstruction = Model.Reconstruction;
        using var optimizer = new AdamW(reconstruction.named_parameters(), options.Optimizer);
        ScheduleTotalSteps = null;
        int firstEpoch = 1;
        if (options.ResumeFrom is { } resume)
        {
            firstEpoch = DetectorCheckpoint.Resume(this, resume, optimizer) + 1;
            EpochsTrained = firstEpoch - 1;
            if (firstEpoch > options.Epochs)
            {
                // Nothing would be trained and nothing written: say so rather than return as if it had been.
                throw new ArgumentException($"'{resume}' has already trained {firstEpoch - 1} epochs and Epochs = {options.Epochs}: nothing is left to train. Raise Epochs to continue training.", nameof(options));
            }

            logger.LogInformation("Resuming from {Checkpoint} at epoch {Epoch}.", resume, firstEpoch);
        }

        bool useCache = options.CacheFeatures && !options.Augmentation.IsEnabled;
        FeatureCache? cache = null;
        if (useCache)
        {
            cache = NewFeatureCache(options);
            var report = cache.Populate(
                train,
                progress is null ? null : new Progress<DataProgress>(p => progress.Report(new TrainingProgress("features", 0, options.Epochs, p.Completed, p.Total, double.NaN, optimizer.LearningRate, clock.Elapsed))),
                cancellationToken);
            logger.LogInformation("Feature cache: {Total} images ({Computed} computed, {Memory} in memory, {Disk} from disk, {Skipped} skipped).", report.Total, report.Computed, report.InMemory, report.FromDisk, report.Skipped.Count);
        }
        else if (options.CacheFeatures)
        {
            logger.LogInformation("Augmentation is on: backbone features are recomputed every epoch.");
        }

        var loader = useCache ? null : new ImageBatchLoader(train, new LoaderOptions
        {
            BatchSize = options.BatchSize, Shuffle = true, Seed = options.Seed, LoadMasks = false, Preprocess = Preprocess,
            Augmentation = options.Augmentation, OnBadInput = options.OnBadInput,
        });

        var parameters = optimizer.Parameters.ToList();
        int steps = (train.Samples.Count + options.BatchSize - 1) / options.BatchSize;
        var heldOut = options.HeldOutNormal is { } heldOutSource ? HeldOutSet.Prepare(this, heldOutSource, options, cancellationToken) : null;
        // Validation images that are all normal are scored by their reconstruction loss: cache their features once.
        var normalValidation = options.Validation is { } vs && !vs.Samples.Any(s => s.IsAnomalous) ? HeldOutSet.Prepare(this, vs, options, cancellationToken) : null;
        var plan = PlanSchedule(options, train, cache, loader, parameters, steps, heldOut, clock, cancellationToken);
        TrainingStopReason? stop = null;
        var losses = new List<double>();
        MetricsReport? validation = null;
        double? best = null, bestLoss = null;
        string? lastCheckpoint = null;
        string? validationFailure = null;
        bool replan = options.TimeBudget is not null && firstEpoch == 1;
        for (int epoch = firstEpoch; epoch <= plan.Epochs; epoch++)
        {
            var epochStart = clock.Elapsed;
            reconstruction.ReseedNoise(EpochSeed(options.Seed, epoch));
            Model.train();
            double sum = 0;
            int step = 0;
            var batches = cache is not null
                ? cache.Batches(train, options.BatchSize, shuffle: true, seed: options.Seed, epoch: epoch, cancellationToken: cancellationToken).Select(b => (SampleBatch)b)
                : loader!.Batches(epoch, cancellationToken: cancellationToken);
            foreach (var batch in batches)
            {
                using (batch)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    using var scope = NewDisposeScope();
                    var features = batch is FeatureBatch fb ? fb.Features.to(Device) : Model.ExtractFeatures(((ImageBatch)batch).Images.to(Device));
                    optimizer.LearningRate = options.Schedule.LearningRateAt(options.Optimizer.LearningRate, ((long)(epoch - 1) * steps) + step, plan.TotalSteps, steps);
                    optimizer.ZeroGrad();
                    var loss = AnomalyMap.Loss(reconstruction.Reconstruct(features), features);
                    loss.backward();
                    double gradNorm = options.ClipGradNorm > 0 ? TorchSharp.torch.nn.utils.clip_grad_norm_(parameters, options.ClipGradNorm) : 0;
                    float value = loss.item<float>();
                    if (!float.IsFinite(value) || !double.IsFinite(gradNorm))
                    {
                        // Before the step: the weights stay those that produced a finite loss one step ago.
                        throw new TrainingDivergedException(epoch, step + 1, float.IsFinite(value) ? $"the gradient norm is {gradNorm}" : $"the loss is {value}", optimizer.LearningRate, lastCheckpoint);
                    }

                    optimizer.Step();
                    sum += value;
                    step++;
                    progress?.Report(new TrainingProgress("training", epoch, plan.Epochs, step, steps, sum / step, optimizer.LearningRate, clock.Elapsed));
                }
            }

            Model.eval();
            if (TorchSupport.Finiteness.FirstNonFinite(reconstruction) is { } poisoned)
            {
                // The last step's update overflowed: stop before anything is checkpointed.
                throw new TrainingDivergedException(epoch, 0, $"the weight '{poisoned}' is NaN or infinite after the epoch's last step", optimizer.LearningRate, lastCheckpoint);
            }

            EpochsTrained = epoch;
            double epochLoss = step == 0 ? double.NaN : sum / step;
            losses.Add(epochLoss);
            logger.LogDebug("Epoch {Epoch}/{Epochs}: loss {Loss:G6}, lr {Lr:G3}.", epoch, plan.Epochs, epochLoss, optimizer.LearningRate);
            stop = StopAfterEpoch(epoch, plan.Epochs, options, heldOut, clock, progress, optimizer.LearningRate, cancellationToken);
            if (replan && stop is null)
            {
                plan = Replan(options, plan, steps, clock.Elapsed - epochStart, clock.Elapsed);
                replan = false;
            }

            bool last = epoch == plan.Epochs || stop is not null;

            // The checkpoint first: a validation that fails (a bad image) must not cost the epoch's model.
            if (options.CheckpointPath is { } checkpoint && (last || (options.CheckpointEvery > 0 && epoch % options.CheckpointEvery == 0)))
            {
                DetectorCheckpoint.Save(this, checkpoint, optimizer);
                lastCheckpoint = checkpoint;
            }

            if (validationFailure is null && options.Validation is { } validationSource && (last || (options.EvaluateEvery > 0 && epoch % options.EvaluateEvery == 0)))
            {
                bool improved = false;
                try
                {
                    progress?.Report(new TrainingProgress("evaluation", epoch, plan.Epochs, 0, 0, epochLoss, optimizer.LearningRate, clock.Elapsed));
                    if (validationSource.Samples.Any(s => s.IsAnomalous))
                    {
                        validation = Evaluate(validationSource, cancellationToken: cancellationToken); // the lock is re-entrant on this thread
                        double pixelAuroc = validation.Mean.TryGetValue(MetricKeys.PixelAuroc, out var v) ? v : double.NaN;
                        logger.LogInformation("Epoch {Epoch}: validation mean pixel AUROC {Auroc:F4}.", epoch, pixelAuroc);
                        improved = !double.IsNaN(pixelAuroc) && (best is null || pixelAuroc > best);
                        best = improved ? pixelAuroc : best;
                    }
                    else
                    {
                        // Normal validation images only (e.g. held out from training): no AUROC exists; the lowest
                        // validation reconstruction loss is the best.
                        double loss = normalValidation!.Measure(this, options.BatchSize, epoch, clock.Elapsed, cancellationToken);
                        logger.LogInformation("Epoch {Epoch}: validation loss {Loss:G6} on {Images} normal images.", epoch, loss, validationSource.Samples.Count);
                        improved = bestLoss is null || loss < bestLoss;
                        bestLoss = improved ? loss : bestLoss;
                    }
                }
                catch (Exception ex) when (ex is IOException or InvalidDataException or ArgumentException)
                {
                    // Reported, not thrown: training goes on and its model is kept; validation is not retried.
                    validationFailure = $"epoch {epoch}: {ex.Message}";
                    logger.LogError(ex, "Validation failed at epoch {Epoch} ({Message}); training goes on without validation and the checkpoint is kept.", epoch, ex.Message);
                }

                if (improved && options.CheckpointPath is { } path)
                {
                    DetectorCheckpoint.Save(this, BestPath(path), optimizer);
                }
            }

            if (stop is not null)
            {
                break;
            }
        }

        return new TrainingResult(EpochsTrained, losses, validation, best, lastCheckpoint, clock.Elapsed, bestLoss)
        {
            StopReason = stop ?? (plan.Epochs < options.Epochs ? TrainingStopReason.TimeBudget : TrainingStopReason.EpochsDone),
            TotalSteps = plan.TotalSteps,
            PlannedEpochs = plan.Epochs,
            HeldOutLosses = heldOut?.Losses ?? (IReadOnlyList<HeldOutLoss>)Array.Empty<HeldOutLoss>(),
            BestHeldOutEpoch = heldOut?.BestEpoch,
            ValidationFailure = validationFailure,
        };
    }

    /// <summary>Every path of the options checked before the first epoch, so a typo never costs a training run.</summary>
    private static void CheckPaths(TrainingOptions options)
    {
        if (options.CheckpointPath is { } checkpoint)
        {
            var folder = Path.GetDirectoryName(Path.GetFullPath(checkpoint))!;
            if (!Directory.Exists(folder))
            {
                throw new DirectoryNotFoundException($"CheckpointPath '{checkpoint}': the folder '{folder}' does not exist (checked before training).");
            }

            if (Directory.Exists(checkpoint))
            {
                throw new IOException($"CheckpointPath '{checkpoint}' is a folder; name a file.");
            }
        }

        if (options.ResumeFrom is { } resume && !File.Exists(resume))
        {
            throw new FileNotFoundException($"ResumeFrom '{resume}' does not exist.", resume);
        }
    }

    /// <summary>The file the best validation checkpoint goes to: <c>name.best.ext</c> beside <paramref name="path"/>.</summary>
    public static string BestPath(string path) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, Path.GetFileNameWithoutExtension(path) + ".best" + Path.GetExtension(path));

    private static long EpochSeed(long seed, int epoch) => unchecked((seed * 1_000_003L) + epoch);

    private string BackboneFingerprint()
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var (name, tensor) in Model.Backbone.state_dict().OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes(name));
            using var cpu = tensor.detach().cpu().contiguous();
            hash.AppendData(cpu.bytes);
        }

        var weights = Convert.ToHexString(hash.GetHashAndReset())[..16];
        return $"{Options.Backbone}|{string.Join(',', Options.BackboneLayers)}|stride{Options.NeckStride}|{Options.InputSize}|{weights}";
    }

    /// <summary>The schedule's total for a time budget read from the resumed checkpoint or planned in this call (stored in checkpoints), or null.</summary>
    internal long? ScheduleTotalSteps { get; set; }

    private FeatureCache NewFeatureCache(TrainingOptions options) => new(
        images =>
        {
            using var scope = NewDisposeScope();
            return Model.ExtractFeatures(images.to(Device)).cpu().MoveToOuterDisposeScope();
        },
        BackboneFingerprint(),
        new FeatureCacheOptions { Directory = options.FeatureCacheDirectory, Preprocess = Preprocess, OnBadInput = options.OnBadInput },
        loggerFactory.CreateLogger<FeatureCache>());

    /// <summary>
    /// The epochs to run and the schedule's total steps: from the options, or for a time budget the total
    /// stored in the resumed checkpoint, or planned from probe steps and the time left (whole epochs).
    /// </summary>
    private (int Epochs, long TotalSteps) PlanSchedule(TrainingOptions options, IImageSource train, FeatureCache? cache, ImageBatchLoader? loader, List<TorchSharp.Modules.Parameter> parameters, int steps, HeldOutSet? heldOut, Stopwatch clock, CancellationToken cancellationToken)
    {
        if (options.TimeBudget is not { } budget)
        {
            ScheduleTotalSteps = null;
            return (options.Epochs, (long)options.Epochs * steps);
        }

        if (ScheduleTotalSteps is { } stored && stored > 0)
        {
            int resumed = (int)Math.Clamp((stored + steps - 1) / steps, 1, options.Epochs);
            logger.LogInformation("Time budget {Budget}: reusing the checkpoint's plan of {Total} steps ({Epochs} epochs).", budget, stored, resumed);
            return (resumed, stored);
        }

        double stepSeconds = ProbeStepSeconds(options, train, cache, loader, parameters, budget / 50, cancellationToken);
        int heldOutBatches = heldOut is null ? 0 : (heldOut.Source.Samples.Count + options.BatchSize - 1) / options.BatchSize;

        // A held-out batch is a forward pass only: about a third of a training step.
        double epochSeconds = stepSeconds * (steps + (heldOutBatches / 3.0 / options.HeldOutEvery));
        double left = (budget - clock.Elapsed).TotalSeconds;
        int epochs = (int)Math.Clamp(Math.Floor(left / epochSeconds), 1, options.Epochs);
        long total = (long)epochs * steps;
        ScheduleTotalSteps = total;
        logger.LogInformation(
            "Time budget {Budget}: {StepMs:F1} ms per step measured, {Left:F0} s left, planned {Epochs} epochs = {Total} steps (fixed for the schedule and stored in checkpoints).",
            budget, stepSeconds * 1000, left, epochs, total);
        if (left <= epochSeconds)
        {
            logger.LogWarning("Time budget {Budget}: only {Left:F0} s are left after the feature cache and the probe steps, less than one epoch ({Epoch:F0} s); training runs one epoch.", budget, left, epochSeconds);
        }

        return (epochs, total);
    }

    /// <summary>
    /// A time budget's plan fixed again after the first epoch from that epoch's measured duration (training steps and
    /// the held-out loss together), which the probe steps only estimate: the epochs that fit into the time left, at
    /// least one more than done and at most <see cref="TrainingOptions.Epochs"/>. The schedule runs over the new
    /// total from the second epoch on (the first epoch's rates came from the probe's plan); checkpoints store it.
    /// </summary>
    private (int Epochs, long TotalSteps) Replan(TrainingOptions options, (int Epochs, long TotalSteps) plan, int steps, TimeSpan firstEpoch, TimeSpan elapsed)
    {
        double left = (options.TimeBudget!.Value - elapsed).TotalSeconds;
        int epochs = EpochsThatFit(options.TimeBudget.Value, firstEpoch, elapsed, options.Epochs);
        if (epochs == plan.Epochs)
        {
            return plan;
        }

        long total = (long)epochs * steps;
        ScheduleTotalSteps = total;
        logger.LogInformation(
            "Time budget {Budget}: the first epoch took {Epoch:F0} s; {Left:F0} s are left: re-planned {Epochs} epochs = {Total} steps (was {Old}).",
            options.TimeBudget, firstEpoch.TotalSeconds, left, epochs, total, plan.Epochs);
        return (epochs, total);
    }

    /// <summary>The epochs of a budget after a first epoch of <paramref name="firstEpoch"/> ending at <paramref name="elapsed"/>: 1 + the whole epochs that fit into the time left, at most <paramref name="cap"/>.</summary>
    internal static int EpochsThatFit(TimeSpan budget, TimeSpan firstEpoch, TimeSpan elapsed, int cap) =>
        (int)Math.Clamp(1 + Math.Floor((budget - elapsed).TotalSeconds / Math.Max(firstEpoch.TotalSeconds, 1e-3)), 1, cap);

    /// <summary>
    /// Seconds per training step, measured on the first batches of epoch 1 (at most <see cref="TrainingOptions.BudgetProbeSteps"/>,
    /// and no more once 2 steps or more have taken <paramref name="limit"/>): forward, backward and clipping on
    /// the real parameters (gradients are cleared afterwards; nothing is updated and the noise is reseeded at
    /// the start of every epoch, so training is unchanged), plus an AdamW update timed on copies.
    /// </summary>
    private double ProbeStepSeconds(TrainingOptions options, IImageSource train, FeatureCache? cache, ImageBatchLoader? loader, List<TorchSharp.Modules.Parameter> parameters, TimeSpan limit, CancellationToken cancellationToken)
    {
        var batches = cache is not null
            ? cache.Batches(train, options.BatchSize, shuffle: true, seed: options.Seed, epoch: 1, cancellationToken: cancellationToken).Select(b => (SampleBatch)b)
            : loader!.Batches(1, cancellationToken: cancellationToken);
        Model.train();
        var watch = Stopwatch.StartNew();
        var times = new List<double>();
        foreach (var batch in batches.Take(options.BudgetProbeSteps))
        {
            using (batch)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var features = batch is FeatureBatch fb ? fb.Features.to(Device) : Model.ExtractFeatures(((ImageBatch)batch).Images.to(Device));
                AnomalyMap.Loss(Model.Reconstruction.Reconstruct(features), features).backward();
                if (options.ClipGradNorm > 0)
                {
                    TorchSharp.torch.nn.utils.clip_grad_norm_(parameters, options.ClipGradNorm);
                }
            }

            TorchSupport.TorchDevices.Synchronize(Device); // CUDA queues kernels: time the work, not the launches
            times.Add(watch.Elapsed.TotalSeconds);
            watch.Restart();
            if (times.Count >= 2 && times.Sum() >= limit.TotalSeconds)
            {
                break; // the probe may take 2 % of the budget (and at least 2 steps)
            }
        }

        Model.eval();
        double update = TimeOptimizerUpdate(options, parameters);
        foreach (var p in parameters)
        {
            p.grad?.zero_();
        }

        if (times.Count == 0)
        {
            return update;
        }

        return (times.Count > 1 ? times.Skip(1).Average() : times[0]) + update;
    }

    private static double TimeOptimizerUpdate(TrainingOptions options, List<TorchSharp.Modules.Parameter> parameters)
    {
        using var scope = NewDisposeScope();
        var copies = parameters.Select((p, i) => ($"p{i}", new TorchSharp.Modules.Parameter(p.detach().clone(), requires_grad: true))).ToList();
        using (var loss = copies.Select(c => c.Item2.square().sum()).Aggregate((a, b) => a + b))
        {
            loss.backward();
        }

        try
        {
            using var optimizer = new AdamW(copies, options.Optimizer);
            optimizer.Step(); // allocates the moments
            var device = parameters[0].device;
            TorchSupport.TorchDevices.Synchronize(device);
            var watch = Stopwatch.StartNew();
            optimizer.Step();
            TorchSupport.TorchDevices.Synchronize(device);
            return watch.Elapsed.TotalSeconds;
        }
        finally
        {
            foreach (var (_, copy) in copies)
            {
                copy.Dispose();
            }
        }
    }

    /// <summary>After an epoch: measures the held-out loss when due and says whether early stopping or the time budget ends training.</summary>
    private TrainingStopReason? StopAfterEpoch(int epoch, int plannedEpochs, TrainingOptions options, HeldOutSet? heldOut, Stopwatch clock, IProgress<TrainingProgress>? progress, double learningRate, CancellationToken cancellationToken)
    {
        if (heldOut is not null && (epoch % options.HeldOutEvery == 0 || epoch == plannedEpochs))
        {
            double loss = heldOut.Measure(this, options.BatchSize, epoch, clock.Elapsed, cancellationToken);
            progress?.Report(new TrainingProgress("held-out", epoch, plannedEpochs, 0, 0, loss, learningRate, clock.Elapsed));
            logger.LogInformation("Epoch {Epoch}: held-out loss {Loss:G6} (best {Best:G6} at epoch {BestEpoch}).", epoch, loss, heldOut.BestLoss, heldOut.BestEpoch);
            if (options.EarlyStopping is { } early && heldOut.EvaluationsSinceBest >= early.Patience && epoch < plannedEpochs)
            {
                logger.LogInformation("Early stopping after epoch {Epoch}: no held-out improvement for {Patience} evaluations.", epoch, early.Patience);
                return TrainingStopReason.EarlyStopping;
            }
        }

        if (options.TimeBudget is { } budget && clock.Elapsed >= budget && epoch < plannedEpochs)
        {
            logger.LogInformation("Time budget {Budget} passed after epoch {Epoch} of {Planned} planned.", budget, epoch, plannedEpochs);
            return TrainingStopReason.TimeBudget;
        }

        return null;
    }

    /// <summary>The held-out normal images, their cached features and the losses measured on them.</summary>
    private sealed class HeldOutSet
    {
        private readonly FeatureCache cache;
        private readonly double minDelta;
        private readonly List<HeldOutLoss> losses = new();

        private HeldOutSet(IImageSource source, FeatureCache cache, double minDelta)
        {
            Source = source;
            this.cache = cache;
            this.minDelta = minDelta;
        }

        /// <summary>The held-out normal images, or with tiling their tiles (as training sees them).</summary>
        public IImageSource Source { get; }

        public IReadOnlyList<HeldOutLoss> Losses => losses;

        public double? BestLoss { get; private set; }

        public int? BestEpoch { get; private set; }

        public int EvaluationsSinceBest { get; private set; }

        public static HeldOutSet Prepare(AnomalyDetector detector, IImageSource source, TrainingOptions options, CancellationToken cancellationToken)
        {
            var normal = new ImageSource(source.Name, source.Samples.Where(s => s.Label == 0));
            if (normal.Samples.Count == 0)
            {
                throw new InvalidDataException($"The held-out source '{source.Name}' has no normal (label 0) image.");
            }

            var samples = detector.TrainingImages(normal, options.OnBadInput);
            var cache = detector.NewFeatureCache(options);
            cache.Populate(samples, cancellationToken: cancellationToken);
            return new HeldOutSet(samples, cache, options.EarlyStopping?.MinDelta ?? 0);
        }

        /// <summary>Mean reconstruction loss over the images, in evaluation mode and without gradients.</summary>
        public double Measure(AnomalyDetector detector, int batchSize, int epoch, TimeSpan elapsed, CancellationToken cancellationToken)
        {
            double loss = detector.MeanReconstructionLoss(cache.Batches(Source, batchSize, cancellationToken: cancellationToken), b => b.Features.to(detector.Device));
            losses.Add(new HeldOutLoss(epoch, loss, elapsed));
            if (BestLoss is null || loss < BestLoss.Value - minDelta)
            {
                BestLoss = loss;
                BestEpoch = epoch;
                EvaluationsSinceBest = 0;
            }
            else
            {
                EvaluationsSinceBest++;
            }

            return loss;
        }
    }
}
