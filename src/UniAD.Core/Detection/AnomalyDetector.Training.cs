using System.Diagnostics;
using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
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
    /// <exception cref="ArgumentException">Invalid options.</exception>
    /// <exception cref="InvalidOperationException">No normal training image, or a resume checkpoint of another architecture.</exception>
    public TrainingResult Train(IImageSource train, TrainingOptions? options = null, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(train);
        options ??= new TrainingOptions();
        options.Validate();
        var normal = train is ImageSource concrete ? concrete.Where(s => s.Label == 0) : new ImageSource(train.Name, train.Samples.Where(s => s.Label == 0));
        if (normal.Samples.Count == 0)
        {
            throw new InvalidOperationException($"'{train.Name}' has no normal (label 0) image to train on.");
        }

        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            return TrainLocked(TrainingImages(normal, options.OnBadInput), options, progress, cancellationToken);
        }
    }

    /// <summary>Runs <see cref="Train"/> on a worker thread.</summary>
    public Task<TrainingResult> TrainAsync(IImageSource train, TrainingOptions? options = null, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Task.Run(() => Train(train, options, progress, cancellationToken), cancellationToken);

    private TrainingResult TrainLocked(IImageSource train, TrainingOptions options, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var reconstruction = Model.Reconstruction;
        using var optimizer = new AdamW(reconstruction.named_parameters(), options.Optimizer);
        int firstEpoch = 1;
        if (options.ResumeFrom is { } resume)
        {
            firstEpoch = DetectorCheckpoint.Resume(this, resume, optimizer) + 1;
            logger.LogInformation("Resuming from {Checkpoint} at epoch {Epoch}.", resume, firstEpoch);
        }

        bool useCache = options.CacheFeatures && !options.Augmentation.IsEnabled;
        FeatureCache? cache = null;
        if (useCache)
        {
            cache = new FeatureCache(
                images =>
                {
                    using var scope = NewDisposeScope();
                    return Model.ExtractFeatures(images.to(Device)).cpu().MoveToOuterDisposeScope();
                },
                BackboneFingerprint(),
                new FeatureCacheOptions { Directory = options.FeatureCacheDirectory, Preprocess = Preprocess, OnBadInput = options.OnBadInput },
                loggerFactory.CreateLogger<FeatureCache>());
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
        var losses = new List<double>();
        MetricsReport? validation = null;
        double? best = null;
        string? lastCheckpoint = null;
        for (int epoch = firstEpoch; epoch <= options.Epochs; epoch++)
        {
            optimizer.LearningRate = options.Schedule.LearningRateAt(options.Optimizer.LearningRate, epoch - 1);
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
                    optimizer.ZeroGrad();
                    var loss = AnomalyMap.Loss(reconstruction.Reconstruct(features), features);
                    loss.backward();
                    if (options.ClipGradNorm > 0)
                    {
                        TorchSharp.torch.nn.utils.clip_grad_norm_(parameters, options.ClipGradNorm);
                    }

                    optimizer.Step();
                    sum += loss.item<float>();
                    step++;
                    progress?.Report(new TrainingProgress("training", epoch, options.Epochs, step, steps, sum / step, optimizer.LearningRate, clock.Elapsed));
                }
            }

            Model.eval();
            EpochsTrained = epoch;
            double epochLoss = step == 0 ? double.NaN : sum / step;
            losses.Add(epochLoss);
            logger.LogDebug("Epoch {Epoch}/{Epochs}: loss {Loss:G6}, lr {Lr:G3}.", epoch, options.Epochs, epochLoss, optimizer.LearningRate);

            bool last = epoch == options.Epochs;
            if (options.Validation is { } validationSource && (last || (options.EvaluateEvery > 0 && epoch % options.EvaluateEvery == 0)))
            {
                progress?.Report(new TrainingProgress("evaluation", epoch, options.Epochs, 0, 0, epochLoss, optimizer.LearningRate, clock.Elapsed));
                validation = Evaluate(validationSource, cancellationToken: cancellationToken); // the lock is re-entrant on this thread
                double pixelAuroc = validation.Mean.TryGetValue(MetricKeys.PixelAuroc, out var v) ? v : double.NaN;
                logger.LogInformation("Epoch {Epoch}: validation mean pixel AUROC {Auroc:F4}.", epoch, pixelAuroc);
                if (!double.IsNaN(pixelAuroc) && (best is null || pixelAuroc > best))
                {
                    best = pixelAuroc;
                    if (options.CheckpointPath is { } path)
                    {
                        DetectorCheckpoint.Save(this, BestPath(path), optimizer);
                    }
                }
            }

            if (options.CheckpointPath is { } checkpoint && (last || (options.CheckpointEvery > 0 && epoch % options.CheckpointEvery == 0)))
            {
                DetectorCheckpoint.Save(this, checkpoint, optimizer);
                lastCheckpoint = checkpoint;
            }
        }

        return new TrainingResult(EpochsTrained, losses, validation, best, lastCheckpoint, clock.Elapsed);
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
}
