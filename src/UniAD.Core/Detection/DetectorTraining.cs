using System.Diagnostics;
using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using UniAD.Core.MemoryBank;
using UniAD.Core.Metrics;
using UniAD.Core.Reconstruction;
using UniAD.Core.Training;
using static TorchSharp.torch;

namespace UniAD.Core.Detection;

/// <summary>
/// The UniAD training loop: AdamW over the reconstruction network on cached or freshly extracted backbone features, the
/// learning-rate schedule (planned by <see cref="TrainingSchedulePlanner"/> for a time budget), divergence checks, the
/// held-out loss and early stopping (<see cref="HeldOutSet"/>), checkpoints per epoch and the best validation checkpoint.
/// </summary>
internal static class DetectorTraining
{
    /// <summary>
    /// The body of <see cref="AnomalyDetector.Train"/>: checks the options and paths, keeps the normal images, then under the
    /// detector's lock (held for the whole run) fits a memory bank (<see cref="BankFitting"/>) or trains UniAD (<see cref="Run"/>).
    /// </summary>
    public static TrainingResult Train(AnomalyDetector detector, IImageSource train, TrainingOptions? options, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
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

        lock (detector.Gate)
        {
            detector.ThrowIfDisposed();
            var samples = TiledScoring.TrainingImages(detector, normal, options.OnBadInput);
            return detector.AnomalyModel is MemoryBankModel bank
                ? BankFitting.Fit(detector, bank, samples, options, progress, cancellationToken)
                : Run(detector, samples, options, progress, cancellationToken);
        }
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

    /// <summary>The UniAD family's <see cref="AnomalyDetector.Train"/> on the prepared samples, under the detector's lock (held by the caller for the whole run).</summary>
    public static TrainingResult Run(AnomalyDetector detector, IImageSource train, TrainingOptions options, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var reconstruction = detector.Model.Reconstruction;
        using var optimizer = new AdamW(reconstruction.named_parameters(), options.Optimizer);
        detector.ScheduleTotalSteps = null;
        int firstEpoch = 1;
        if (options.ResumeFrom is { } resume)
        {
            firstEpoch = DetectorCheckpoint.Resume(detector, resume, optimizer) + 1;
            detector.EpochsTrained = firstEpoch - 1;
            if (firstEpoch > options.Epochs)
            {
                // Nothing would be trained and nothing written: say so rather than return as if it had been.
                throw new ArgumentException($"'{resume}' has already trained {firstEpoch - 1} epochs and Epochs = {options.Epochs}: nothing is left to train. Raise Epochs to continue training.", nameof(options));
            }

            detector.Logger.LogInformation("Resuming from {Checkpoint} at epoch {Epoch}.", resume, firstEpoch);
        }

        bool useCache = options.CacheFeatures && !options.Augmentation.IsEnabled;
        FeatureCache? cache = null;
        if (useCache)
        {
            cache = DetectorFeatureCache.Create(detector, options);
            var report = cache.Populate(
                train,
                progress is null ? null : new Progress<DataProgress>(p => progress.Report(new TrainingProgress("features", 0, options.Epochs, p.Completed, p.Total, double.NaN, optimizer.LearningRate, clock.Elapsed))),
                cancellationToken);
            detector.Logger.LogInformation("Feature cache: {Total} images ({Computed} computed, {Memory} in memory, {Disk} from disk, {Skipped} skipped).", report.Total, report.Computed, report.InMemory, report.FromDisk, report.Skipped.Count);
        }
        else if (options.CacheFeatures)
        {
            detector.Logger.LogInformation("Augmentation is on: backbone features are recomputed every epoch.");
        }

        var loader = useCache ? null : new ImageBatchLoader(train, new LoaderOptions
        {
            BatchSize = options.BatchSize, Shuffle = true, Seed = options.Seed, LoadMasks = false, Preprocess = detector.Preprocess,
            Augmentation = options.Augmentation, OnBadInput = options.OnBadInput,
        });

        var parameters = optimizer.Parameters.ToList();
        int steps = (train.Samples.Count + options.BatchSize - 1) / options.BatchSize;
        var heldOut = options.HeldOutNormal is { } heldOutSource ? HeldOutSet.Prepare(detector, heldOutSource, options, cancellationToken) : null;
        // Validation images that are all normal are scored by their reconstruction loss: cache their features once.
        var normalValidation = options.Validation is { } vs && !vs.Samples.Any(s => s.IsAnomalous) ? HeldOutSet.Prepare(detector, vs, options, cancellationToken) : null;
        var plan = TrainingSchedulePlanner.Plan(detector, options, train, cache, loader, parameters, steps, heldOut, clock, cancellationToken);
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
            detector.Model.train();
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
                    var features = batch is FeatureBatch fb ? fb.Features.to(detector.Device) : detector.Model.ExtractFeatures(((ImageBatch)batch).Images.to(detector.Device));
                    long globalStep = ((long)(epoch - 1) * steps) + step;
                    optimizer.LearningRate = options.Schedule.LearningRateAt(options.Optimizer.LearningRate, globalStep, plan.TotalSteps, steps);
                    optimizer.ZeroGrad();
                    var loss = reconstruction.Loss(reconstruction.Reconstruct(features), features, globalStep); // the configured objective
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

            detector.Model.eval();
            if (TorchSupport.Finiteness.FirstNonFinite(reconstruction) is { } poisoned)
            {
                // The last step's update overflowed: stop before anything is checkpointed.
                throw new TrainingDivergedException(epoch, 0, $"the weight '{poisoned}' is NaN or infinite after the epoch's last step", optimizer.LearningRate, lastCheckpoint);
            }

            detector.EpochsTrained = epoch;
            double epochLoss = step == 0 ? double.NaN : sum / step;
            losses.Add(epochLoss);
            detector.Logger.LogDebug("Epoch {Epoch}/{Epochs}: loss {Loss:G6}, lr {Lr:G3}.", epoch, plan.Epochs, epochLoss, optimizer.LearningRate);
            stop = StopAfterEpoch(detector, epoch, plan.Epochs, options, heldOut, clock, progress, optimizer.LearningRate, cancellationToken);
            if (replan && stop is null)
            {
                plan = TrainingSchedulePlanner.Replan(detector, options, plan, steps, clock.Elapsed - epochStart, clock.Elapsed);
                replan = false;
            }

            bool last = epoch == plan.Epochs || stop is not null;

            // The checkpoint first: a validation that fails (a bad image) must not cost the epoch's model.
            if (options.CheckpointPath is { } checkpoint && (last || (options.CheckpointEvery > 0 && epoch % options.CheckpointEvery == 0)))
            {
                DetectorCheckpoint.Save(detector, checkpoint, optimizer);
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
                        validation = detector.Evaluate(validationSource, cancellationToken: cancellationToken); // the lock is re-entrant on this thread
                        double pixelAuroc = validation.Mean.TryGetValue(MetricKeys.PixelAuroc, out var v) ? v : double.NaN;
                        detector.Logger.LogInformation("Epoch {Epoch}: validation mean pixel AUROC {Auroc:F4}.", epoch, pixelAuroc);
                        improved = !double.IsNaN(pixelAuroc) && (best is null || pixelAuroc > best);
                        best = improved ? pixelAuroc : best;
                    }
                    else
                    {
                        // Normal validation images only (e.g. held out from training): no AUROC exists; the lowest
                        // validation reconstruction loss is the best.
                        double loss = normalValidation!.Measure(detector, options.BatchSize, epoch, clock.Elapsed, cancellationToken);
                        detector.Logger.LogInformation("Epoch {Epoch}: validation loss {Loss:G6} on {Images} normal images.", epoch, loss, validationSource.Samples.Count);
                        improved = bestLoss is null || loss < bestLoss;
                        bestLoss = improved ? loss : bestLoss;
                    }
                }
                catch (Exception ex) when (ex is IOException or InvalidDataException or ArgumentException)
                {
                    // Reported, not thrown: training goes on and its model is kept; validation is not retried.
                    validationFailure = $"epoch {epoch}: {ex.Message}";
                    detector.Logger.LogError(ex, "Validation failed at epoch {Epoch} ({Message}); training goes on without validation and the checkpoint is kept.", epoch, ex.Message);
                }

                if (improved && options.CheckpointPath is { } path)
                {
                    DetectorCheckpoint.Save(detector, AnomalyDetector.BestPath(path), optimizer);
                }
            }

            if (stop is not null)
            {
                break;
            }
        }

        return new TrainingResult(detector.EpochsTrained, losses, validation, best, lastCheckpoint, clock.Elapsed, bestLoss)
        {
            StopReason = stop ?? (plan.Epochs < options.Epochs ? TrainingStopReason.TimeBudget : TrainingStopReason.EpochsDone),
            TotalSteps = plan.TotalSteps,
            PlannedEpochs = plan.Epochs,
            HeldOutLosses = heldOut?.Losses ?? (IReadOnlyList<HeldOutLoss>)Array.Empty<HeldOutLoss>(),
            BestHeldOutEpoch = heldOut?.BestEpoch,
            ValidationFailure = validationFailure,
        };
    }

    /// <summary>After an epoch: measures the held-out loss when due and says whether early stopping or the time budget ends training.</summary>
    private static TrainingStopReason? StopAfterEpoch(AnomalyDetector detector, int epoch, int plannedEpochs, TrainingOptions options, HeldOutSet? heldOut, Stopwatch clock, IProgress<TrainingProgress>? progress, double learningRate, CancellationToken cancellationToken)
    {
        if (heldOut is not null && (epoch % options.HeldOutEvery == 0 || epoch == plannedEpochs))
        {
            double loss = heldOut.Measure(detector, options.BatchSize, epoch, clock.Elapsed, cancellationToken);
            progress?.Report(new TrainingProgress("held-out", epoch, plannedEpochs, 0, 0, loss, learningRate, clock.Elapsed));
            detector.Logger.LogInformation("Epoch {Epoch}: held-out loss {Loss:G6} (best {Best:G6} at epoch {BestEpoch}).", epoch, loss, heldOut.BestLoss, heldOut.BestEpoch);
            if (options.EarlyStopping is { } early && heldOut.EvaluationsSinceBest >= early.Patience && epoch < plannedEpochs)
            {
                detector.Logger.LogInformation("Early stopping after epoch {Epoch}: no held-out improvement for {Patience} evaluations.", epoch, early.Patience);
                return TrainingStopReason.EarlyStopping;
            }
        }

        if (options.TimeBudget is { } budget && clock.Elapsed >= budget && epoch < plannedEpochs)
        {
            detector.Logger.LogInformation("Time budget {Budget} passed after epoch {Epoch} of {Planned} planned.", budget, epoch, plannedEpochs);
            return TrainingStopReason.TimeBudget;
        }

        return null;
    }

    private static long EpochSeed(long seed, int epoch) => unchecked((seed * 1_000_003L) + epoch);
}
