using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using SkiaSharp;
using UniAD.Core.Data;
using UniAD.Core.Metrics;
using UniAD.Core.Models;
using UniAD.Core.Reconstruction;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Detection;

/// <summary>
/// A unified multi-class anomaly detector: one UniAD model that scores images of every class it was
/// trained on. Built by <see cref="AnomalyDetectorBuilder"/> or loaded with <see cref="Load"/>.
/// </summary>
/// <remarks>
/// <para>Thread safety: every public operation takes one lock, so the detector may be shared between threads;
/// scoring calls from several threads run one after another (libtorch already uses every core within a
/// call). Calibration and evaluation take the lock per batch; the tensor model is reachable only through
/// <see cref="UseModel{T}"/>, under the lock.</para>
/// <para>Training holds the lock for the whole run (the weights change at every step), so an instance being
/// trained does not score meanwhile. The supported pattern for a service: score with one instance, train
/// another (or load a new checkpoint), then swap the scoring instance and dispose the old one once its calls
/// have finished (UniAD.Hosting's <c>AnomalyDetectorProvider</c> does exactly this).</para>
/// <para>Errors: every documented failure is an <see cref="InvalidDataException"/> (bad data or model file),
/// an <see cref="IOException"/> (files: <see cref="FileNotFoundException"/>, <see cref="ImageFileException"/>)
/// or an <see cref="ArgumentException"/> (bad options or input), or derives from one; misuse (a used builder,
/// a disposed detector) is an <see cref="InvalidOperationException"/>.</para>
/// <para>The scoring entry points (<c>Score</c> of a file, stream, bytes, bitmap or decoded image, <c>ScoreBatch</c>,
/// <c>ScoreStream</c>, <c>ScoreAsync</c>, <c>ScoreManyAsync</c>) are <see cref="ImageScorer"/>'s, shared with UniAD.Onnx's
/// scorer, so both read, batch and report alike; the detector adds <see cref="ScoreTensor"/>.</para>
/// </remarks>
public sealed partial class AnomalyDetector : ImageScorer, IDisposable
{
    private readonly object gate = new();
    private readonly ILoggerFactory loggerFactory;
    private readonly ILogger logger;
    private bool disposed;

    internal AnomalyDetector(DetectorOptions options, IAnomalyModel model, Device device, ILoggerFactory? loggerFactory, Calibration? calibration, int epochsTrained)
    {
        Options = options;
        AnomalyModel = model;
        Device = device;
        Calibration = calibration;
        EpochsTrained = epochsTrained;
        this.loggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        logger = this.loggerFactory.CreateLogger<AnomalyDetector>();
        AnomalyModel.Module.eval();
    }

    /// <summary>The detector's configuration (only <see cref="SetImageScore"/> changes it after construction).</summary>
    public DetectorOptions Options { get; private set; }

    /// <summary>
    /// Changes how image scores are taken from the maps (<see cref="DetectorOptions.ScoreKind"/> and the pooled-max
    /// window) on a built or trained detector: the weights do not depend on it, so a window can be chosen after
    /// training, on validation data. The calibration's image threshold belongs to the old score, so a calibration is
    /// dropped (calibrate again); reference maps are kept. Stored with the model by <see cref="Save"/>.
    /// </summary>
    /// <param name="kind">The image score.</param>
    /// <param name="poolHeight">Rows of the pooled-max window.</param>
    /// <param name="poolWidth">Columns of the pooled-max window.</param>
    /// <exception cref="ArgumentOutOfRangeException">A side of the window is below 1, or an unknown kind.</exception>
    /// <exception cref="ObjectDisposedException">The detector was disposed.</exception>
    public void SetImageScore(ImageScoreKind kind, int poolHeight, int poolWidth)
    {
        if (!Enum.IsDefined(kind))
        {
            throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown image score kind.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(poolHeight, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(poolWidth, 1);
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            var updated = Options.WithScoreWindow(kind, poolHeight, poolWidth);
            if (updated == Options)
            {
                return;
            }

            if (Calibration is not null)
            {
                logger.LogInformation("Image score changed to {Kind} over {Height} x {Width}: the calibration was dropped; calibrate again.", kind, poolHeight, poolWidth);
                Calibration = null;
            }

            Options = updated;
        }
    }

    /// <summary>
    /// The underlying tensor model of any family (<see cref="IAnomalyModel"/>). Internal: every use from outside goes through
    /// <see cref="UseAnomalyModel{T}"/> or <see cref="UseModel{T}"/>, which hold the detector's lock, so no caller can change
    /// weights under a running score.
    /// </summary>
    internal IAnomalyModel AnomalyModel { get; }

    /// <summary>The model family (<see cref="ModelFamilies"/>): <c>uniad</c> or <c>memory-bank</c>.</summary>
    public string Family => AnomalyModel.Family;

    /// <summary>The UniAD model (backbone, neck, reconstruction) of a UniAD detector.</summary>
    /// <exception cref="InvalidOperationException">The detector is of another family.</exception>
    internal UniADModel Model => AnomalyModel as UniADModel
        ?? throw new InvalidOperationException($"This detector's model family is '{Family}', not '{ModelFamilies.UniAD}': it has no reconstruction network.");

    /// <summary>
    /// Runs <paramref name="action"/> on the underlying UniAD model (backbone, neck, reconstruction) under the detector's
    /// lock: no scoring, training or calibration runs meanwhile. Do not keep the model or its tensors beyond the call.
    /// For any family, use <see cref="UseAnomalyModel{T}"/>.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The detector was disposed.</exception>
    /// <exception cref="InvalidOperationException">The detector's family is not UniAD.</exception>
    public T UseModel<T>(Func<UniADModel, T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            return action(Model);
        }
    }

    /// <summary>
    /// Runs <paramref name="action"/> on the underlying model of any family (<see cref="UniADModel"/>,
    /// <see cref="MemoryBank.MemoryBankModel"/>) under the detector's lock. Do not keep the model or its tensors beyond the call.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The detector was disposed.</exception>
    public T UseAnomalyModel<T>(Func<IAnomalyModel, T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            return action(AnomalyModel);
        }
    }

    /// <summary>
    /// Sets the decision thresholds by hand (<see cref="CalibrationMethod.Manual"/>), keeping the score normalisation
    /// of an existing calibration (without one, the normalised score is 1 at or above the threshold, else 0). Stored
    /// with the model by <see cref="Save"/>.
    /// </summary>
    /// <exception cref="ArgumentException">A threshold is not finite.</exception>
    public Calibration SetThresholds(double imageThreshold, double? pixelThreshold = null)
    {
        if (!double.IsFinite(imageThreshold) || (pixelThreshold is { } p && !double.IsFinite(p)))
        {
            throw new ArgumentException($"Thresholds must be finite; got image {imageThreshold}, pixel {pixelThreshold}.");
        }

        lock (gate)
        {
            var old = Calibration;
            double pixel = pixelThreshold ?? imageThreshold;
            Calibration = new Calibration(
                CalibrationMethod.Manual,
                imageThreshold,
                Math.Min(old?.ImageMin ?? imageThreshold, imageThreshold),
                Math.Max(old?.ImageMax ?? imageThreshold, imageThreshold),
                pixelThreshold,
                Math.Min(old?.PixelMin ?? pixel, pixel),
                Math.Max(old?.PixelMax ?? pixel, pixel),
                Math.Max(1, old?.Images ?? 1))
            {
                ImageSensitivity = old?.ImageSensitivity ?? 0.5,
                PixelSensitivity = old?.PixelSensitivity ?? 0.5,
            };
            return Calibration;
        }
    }

    /// <summary>
    /// Sets the sensitivities (each in [0, 1]; 0.5 = the calibrated thresholds; higher flags more) of the current
    /// calibration, as anomalib's post-processor does. Stored with the model by <see cref="Save"/>.
    /// </summary>
    /// <param name="image">Image sensitivity.</param>
    /// <param name="pixel">Pixel sensitivity (default: the image one).</param>
    /// <exception cref="ArgumentOutOfRangeException">A sensitivity is outside [0, 1].</exception>
    /// <exception cref="InvalidOperationException">The detector has no calibration or thresholds yet.</exception>
    public Calibration SetSensitivity(double image, double? pixel = null)
    {
        if (!(image >= 0 && image <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(image), image, "A sensitivity lies in [0, 1].");
        }

        if (pixel is { } p && !(p >= 0 && p <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(pixel), pixel, "A sensitivity lies in [0, 1].");
        }

        lock (gate)
        {
            var old = Calibration ?? throw new InvalidOperationException("Calibrate the detector (or SetThresholds) before setting a sensitivity.");
            Calibration = old with { ImageSensitivity = image, PixelSensitivity = pixel ?? image };
            return Calibration;
        }
    }

    /// <summary>The device the model runs on.</summary>
    public Device Device { get; }

    /// <summary>The full path of the checkpoint this detector was loaded from (<see cref="Load"/>), or null for a detector built or imported.</summary>
    public string? SourcePath { get; internal set; }

    /// <summary>Thresholds and normalisation from <see cref="Calibrate"/>, or null when not calibrated.</summary>
    public Calibration? Calibration { get; private set; }

    /// <summary>Epochs trained so far (restored from checkpoints).</summary>
    public int EpochsTrained { get; private set; }

    /// <summary>The preprocessing that turns an image into the network's input.</summary>
    public PreprocessOptions Preprocess => new() { InputSize = Options.InputSize, Mean = Options.PixelMean, Std = Options.PixelStd };

    /// <summary>
    /// Scores normalized images already at the network's input size (B x 3 x H x W); maps stay at that size.
    /// Float64 and float16/bfloat16 tensors are converted to the model's float32; other dtypes are refused.
    /// </summary>
    /// <exception cref="ArgumentException">The tensor does not have the input size, is not floating point, or holds NaN or infinity.</exception>
    /// <exception cref="InvalidDataException">The model produced a non-finite map (its weights hold NaN or infinity).</exception>
    /// <param name="images">Normalised images, B x 3 x H x W.</param>
    /// <param name="names">Names for the results' sources, or null.</param>
    /// <param name="classNames">The images' classes: needed when the detector has <see cref="ReferenceMaps"/>.</param>
    public IReadOnlyList<AnomalyResult> ScoreTensor(Tensor images, IReadOnlyList<string?>? names = null, IReadOnlyList<string?>? classNames = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        var size = Options.InputSize;
        if (images.dim() != 4 || images.shape[1] != 3 || images.shape[2] != size.Height || images.shape[3] != size.Width)
        {
            throw new ArgumentException($"Expected normalized images B x 3 x {size.Height} x {size.Width}; got [{string.Join(", ", images.shape)}].", nameof(images));
        }

        if (!images.is_floating_point())
        {
            throw new ArgumentException($"Expected floating-point normalized images; got dtype {images.dtype}.", nameof(images));
        }

        if (names is not null && names.Count != images.shape[0])
        {
            throw new ArgumentException($"{names.Count} names for {images.shape[0]} images.", nameof(names));
        }

        using var scope = NewDisposeScope();
        var input = images.dtype == float32 ? images : images.to(float32);
        using (var finite = isfinite(input).all(dim: 3).all(dim: 2).all(dim: 1).cpu())
        {
            var ok = finite.data<bool>().ToArray();
            int bad = Array.IndexOf(ok, false);
            if (bad >= 0)
            {
                throw new ArgumentException($"Image {bad}{(names?[bad] is { } n ? $" ('{n}')" : string.Empty)} of the batch holds NaN or infinity.", nameof(images));
            }
        }

        var sizes = Enumerable.Repeat(size, (int)images.shape[0]).ToArray();
        return Run(input, sizes, names ?? new string?[sizes.Length], classNames ?? new string?[sizes.Length]);
    }

    /// <summary>
    /// Chooses decision thresholds and the score normalisation from <paramref name="images"/> (normal images,
    /// and for <see cref="CalibrationMethod.F1Max"/> also anomalous ones, with masks for a pixel threshold),
    /// stores them in the detector (and so in its checkpoints) and returns them. Anomalous images without a mask
    /// (<see cref="ImageSample.HasPixelLabels"/>) count for the image threshold only. Never calibrate on the test
    /// split: use held-out normal training images (<see cref="DataSplits.HoldOutNormal"/>) or a validation set.
    /// </summary>
    /// <exception cref="InvalidDataException">No image; F1-max calibration without both normal and anomalous images; false-alarm calibration with fewer than <see cref="CalibrationOptions.MinimumNormalImages"/> normal images.</exception>
    public Calibration Calibrate(IImageSource images, CalibrationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(images);
        options ??= new CalibrationOptions();
        if (!(options.FalseAlarmRate > 0 && options.FalseAlarmRate < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.FalseAlarmRate, "The false-alarm rate must lie in (0, 1).");
        }

        if (options.MinimumNormalImages < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MinimumNormalImages, "MinimumNormalImages must be at least 1.");
        }

        // Normal pixels for the false-alarm quantile: a regular subsample of at most about 4 M values.
        int normalImages = Math.Max(1, images.Samples.Count(s => s.Label == 0));
        int pixelStride = (int)Math.Max(1, (long)normalImages * MapPixels(images) / 4_000_000);
        var scores = new List<double>();
        var labels = new List<bool>();
        var normalPixels = new List<float>();
        var pixels = new PixelMetricsAccumulator(computeAuPro: false);
        bool haveMasks = false;
        double pixelMin = double.PositiveInfinity, pixelMax = double.NegativeInfinity;
        foreach (var (maps, batch) in Maps(images, options.BatchSize, loadMasks: true, cancellationToken))
        {
            using (batch)
            {
                for (int i = 0; i < batch.Count; i++)
                {
                    scores.Add(ImageScore(maps[i]));
                    labels.Add(batch.Samples[i].Label != 0);
                }

                var flat = maps.cpu().contiguous().data<float>().ToArray();
                pixelMin = Math.Min(pixelMin, flat.Min());
                pixelMax = Math.Max(pixelMax, flat.Max());
                if (batch.Masks is { } m)
                {
                    // Only images with pixel labels: an anomalous image without a mask never sets a pixel threshold.
                    var withMask = Enumerable.Range(0, batch.Count).Where(i => batch.HasMask[i]).Select(i => (long)i).ToArray();
                    haveMasks |= withMask.Any(i => batch.Samples[(int)i].Label != 0);
                    if (withMask.Length == batch.Count)
                    {
                        pixels.Add(maps, m);
                    }
                    else if (withMask.Length > 0)
                    {
                        using var index = tensor(withMask, device: CPU);
                        using var someMaps = maps.index_select(0, index);
                        using var someMasks = m.index_select(0, index);
                        pixels.Add(someMaps, someMasks);
                    }
                }

                for (int i = 0; i < batch.Count; i++)
                {
                    if (batch.Samples[i].Label == 0)
                    {
                        int per = flat.Length / batch.Count;
                        for (int j = i * per; j < (i + 1) * per; j += pixelStride)
                        {
                            normalPixels.Add(flat[j]);
                        }
                    }
                }
            }
        }

        if (scores.Count == 0)
        {
            throw new InvalidDataException($"No image in '{images.Name}' to calibrate with.");
        }

        double imageThreshold;
        double? pixelThreshold;
        if (options.Method == CalibrationMethod.F1Max)
        {
            if (labels.All(l => l) || labels.All(l => !l))
            {
                throw new InvalidDataException($"F1-max calibration needs normal and anomalous images; '{images.Name}' has {labels.Count(l => l)} anomalous of {labels.Count}. Use CalibrationMethod.FalseAlarmRate with normal images only.");
            }

            imageThreshold = BinaryClassification.F1Max(scores.ToArray().AsSpan(), labels.ToArray().AsSpan()).Threshold;
            var pixelMetrics = haveMasks ? pixels.Compute() : null;
            pixelThreshold = pixelMetrics is { F1Max.Threshold: var t } && !double.IsNaN(t) ? t : null;
        }
        else
        {
            var normal = scores.Where((_, i) => !labels[i]).ToArray();
            if (normal.Length < options.MinimumNormalImages)
            {
                throw new InvalidDataException($"False-alarm calibration needs at least {options.MinimumNormalImages} normal images (CalibrationOptions.MinimumNormalImages); '{images.Name}' has {normal.Length}.");
            }

            if (normal.Length < Math.Ceiling(1 / options.FalseAlarmRate))
            {
                logger.LogWarning("False-alarm calibration at a rate of {Rate} on {Images} normal images of {Source}: fewer than 1/rate = {Needed}, so the threshold is interpolated between the highest scores and the achieved rate is uncertain. Calibrate on more normal images.", options.FalseAlarmRate, normal.Length, images.Name, Math.Ceiling(1 / options.FalseAlarmRate));
            }

            imageThreshold = MathNet.Numerics.Statistics.Statistics.QuantileCustom(normal, 1 - options.FalseAlarmRate, MathNet.Numerics.Statistics.QuantileDefinition.R7);
            pixelThreshold = normalPixels.Count > 0
                ? MathNet.Numerics.Statistics.Statistics.QuantileCustom(normalPixels.Select(v => (double)v), 1 - options.FalseAlarmRate, MathNet.Numerics.Statistics.QuantileDefinition.R7)
                : null;
        }

        var calibration = new Calibration(options.Method, imageThreshold, scores.Min(), scores.Max(), pixelThreshold, pixelMin, pixelMax, scores.Count);
        lock (gate)
        {
            Calibration = calibration;
        }

        logger.LogInformation("Calibrated on {Images} images of {Source} ({Method}): image threshold {Threshold:G6}, pixel threshold {Pixel}.", scores.Count, images.Name, options.Method, imageThreshold, pixelThreshold?.ToString("G6", CultureInfo.InvariantCulture) ?? "none");
        return calibration;
    }

    /// <summary>
    /// Evaluates on a labelled test set: per-class image and pixel metrics and their mean (see <see cref="MetricsReport"/>).
    /// An anomalous image without a mask (<see cref="ImageSample.HasPixelLabels"/> false) counts for the image
    /// metrics only; the report's notes say, per class, how many the pixel metrics left out.
    /// </summary>
    public MetricsReport Evaluate(IImageSource test, MetricsReportOptions? options = null, int batchSize = 8, IProgress<DataProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(test);
        var builder = new MetricsReportBuilder(options ?? new MetricsReportOptions { PoolSize = Options.ScorePoolSize, PoolHeight = Options.ScorePoolHeight });
        int done = 0;
        foreach (var (maps, batch) in Maps(test, batchSize, loadMasks: true, cancellationToken))
        {
            using (batch)
            {
                using var masks = batch.Masks ?? zeros(maps.shape, device: maps.device);
                if (batch.HasMask.All(m => m))
                {
                    builder.Add(batch.ClassNames, maps.cpu(), masks.cpu());
                }
                else
                {
                    // Images without pixel labels add their image scores only.
                    int height = (int)maps.shape[^2], width = (int)maps.shape[^1];
                    var mapValues = maps.cpu().contiguous().data<float>().ToArray();
                    var maskValues = masks.cpu().to(float32).contiguous().data<float>().ToArray();
                    int size = height * width;
                    for (int i = 0; i < batch.Count; i++)
                    {
                        var map = mapValues.AsSpan(i * size, size);
                        if (batch.HasMask[i])
                        {
                            builder.Add(batch.ClassNames[i], map, maskValues.AsSpan(i * size, size), height, width);
                        }
                        else
                        {
                            builder.AddWithoutMask(batch.ClassNames[i], map, height, width, batch.Samples[i].IsAnomalous);
                        }
                    }
                }
                done += batch.Count;
                progress?.Report(new DataProgress("evaluation", done, test.Samples.Count));
            }
        }

        return builder.Build();
    }

    /// <summary>
    /// Calibrates on a validation split, never the test split: with normal AND anomalous images, F1-max
    /// (<see cref="CalibrationMethod.F1Max"/>; the pixel threshold from the images with masks); with normal
    /// images only, e.g. held-out normal training images (<see cref="DataSplits.HoldOutNormal"/>), the
    /// <paramref name="falseAlarmRate"/> quantile (<see cref="CalibrationMethod.FalseAlarmRate"/>). The result's
    /// <see cref="Calibration.Method"/> and <see cref="Calibration.Images"/> say which rule and how many images.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The rate is not in (0, 1).</exception>
    /// <exception cref="InvalidDataException">The validation split has no normal image.</exception>
    /// <param name="validation">The validation split (never the test split).</param>
    /// <param name="falseAlarmRate">The false-alarm rate of the normal-only rule.</param>
    /// <param name="batchSize">Batch size of the scoring passes.</param>
    /// <param name="minimumNormalImages">For the normal-only rule: fewest normal images accepted (<see cref="CalibrationOptions.MinimumNormalImages"/>).</param>
    /// <param name="cancellationToken">Cancels between batches.</param>
    public Calibration CalibrateOnValidation(IImageSource validation, double falseAlarmRate = 0.01, int batchSize = 8, int minimumNormalImages = CalibrationOptions.DefaultMinimumNormalImages, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(validation);
        bool anomalous = validation.Samples.Any(s => s.IsAnomalous), normal = validation.Samples.Any(s => !s.IsAnomalous);
        if (!normal)
        {
            throw new InvalidDataException($"The validation split '{validation.Name}' has no normal image to calibrate with.");
        }

        var method = anomalous ? CalibrationMethod.F1Max : CalibrationMethod.FalseAlarmRate;
        return Calibrate(validation, new CalibrationOptions { Method = method, FalseAlarmRate = falseAlarmRate, BatchSize = batchSize, MinimumNormalImages = minimumNormalImages }, cancellationToken);
    }

    /// <summary>
    /// The mean reconstruction loss (feature MSE, the training loss, in eval mode: no jitter, no dropout) over
    /// the normal images of <paramref name="source"/> (with tiling, over their tiles, as training sees them): the
    /// validation measure when there is no anomalous validation image (lower is better).
    /// </summary>
    /// <exception cref="InvalidDataException">The source has no normal image.</exception>
    public double ValidationLoss(IImageSource source, int batchSize = 8, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        var normal = new ImageSource(source.Name, source.Samples.Where(s => !s.IsAnomalous));
        if (normal.Samples.Count == 0)
        {
            throw new InvalidDataException($"'{source.Name}' has no normal image for a validation loss.");
        }

        var loader = new ImageBatchLoader(TrainingImages(normal, BadInputPolicy.Throw), new LoaderOptions { BatchSize = batchSize, LoadMasks = false, Preprocess = Preprocess }, loggerFactory.CreateLogger<ImageBatchLoader>());
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            return MeanReconstructionLoss(loader.Batches(cancellationToken: cancellationToken), b => Model.ExtractFeatures(b.Images.to(Device)));
        }
    }

    /// <summary>
    /// The training loss (feature MSE) averaged over the images of <paramref name="batches"/>, in evaluation mode and
    /// without gradients; <paramref name="features"/> gives a batch's backbone features on the detector's device.
    /// </summary>
    private double MeanReconstructionLoss<TBatch>(IEnumerable<TBatch> batches, Func<TBatch, Tensor> features)
        where TBatch : IDisposable
    {
        Model.eval();
        double sum = 0;
        long images = 0;
        foreach (var batch in batches)
        {
            using (batch)
            {
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();
                var f = features(batch);
                long n = f.shape[0];
                sum += AnomalyMap.Loss(Model.Reconstruction.Reconstruct(f), f).item<float>() * (double)n;
                images += n;
            }
        }

        return images == 0 ? double.NaN : sum / images;
    }

    /// <summary>Writes the detector (weights, configuration, calibration) to one safetensors file, atomically.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    public void Save(string path)
    {
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            DetectorCheckpoint.Save(this, path, optimizer: null);
        }
    }

    /// <summary>Loads a detector written by <see cref="Save"/> (or by training's checkpoints).</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a detector checkpoint, is corrupt, or its weights do not fit its description.</exception>
    public static AnomalyDetector Load(string path, string? device = null, ILoggerFactory? loggerFactory = null) =>
        DetectorCheckpoint.Load(path, device, loggerFactory);

    /// <summary>
    /// Imports a model trained with the authors' code: their <c>ckpt.pth.tar</c> and the config file holding
    /// its <c>net</c> description. The image score is the reference's MVTec-AD one (16 x 16 pooled max).
    /// </summary>
    public static AnomalyDetector ImportReference(string checkpointPath, string configPath, string? device = null, ILoggerFactory? loggerFactory = null)
    {
        var model = ReferenceCheckpoint.Load(checkpointPath, configPath, loggerFactory?.CreateLogger("UniAD.Core.Models.ReferenceCheckpoint"));
        try
        {
            var o = model.Reconstruction.Options;
            var options = new DetectorOptions
            {
                Backbone = model.Backbone.ModelName,
                BackboneLayers = model.Backbone.Outputs.Select(x => x.Layer).ToArray(),
                NeckStride = model.Neck.OutputStride,
                InputSize = model.InputSize,
                Reconstruction = o,
            };
            var target = device is null ? CPU : TorchSupport.TorchDevices.Parse(device);
            model.to(target);
            return new AnomalyDetector(options, model, target, loggerFactory, calibration: null, epochsTrained: 0);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Disposes the model.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (!disposed)
            {
                AnomalyModel.Module.Dispose();
                disposed = true;
            }
        }
    }

    /// <summary>The image score of one map (H x W, 1 x H x W or 1 x 1 x H x W) as configured: <see cref="MapPostProcessor.ImageScore"/>, the rule of both runtimes.</summary>
    internal double ImageScore(Tensor map)
    {
        int height = (int)map.shape[^2], width = (int)map.shape[^1];
        using var onCpu = map.reshape(height, width).cpu().contiguous();
        return PostProcessor().ImageScore(onCpu.data<float>().ToArray(), height, width);
    }

    /// <summary>The map-to-result step (image score and reference maps as configured now), shared with the ONNX scorer.</summary>
    private MapPostProcessor PostProcessor()
    {
        var options = Options;
        var references = ReferenceMaps;
        return new MapPostProcessor(options.ScoreKind, options.ScoreWindowHeight, options.ScorePoolSize, references?.Classes.Keys.ToArray(), references is null ? null : references.Upsampled);
    }

    /// <summary>Maps of a source's images, batch by batch, normalised by the reference maps unless <paramref name="raw"/>.</summary>
    private IEnumerable<(Tensor Maps, ImageBatch Batch)> Maps(IImageSource source, int batchSize, bool loadMasks, CancellationToken cancellationToken, bool raw = false)
    {
        var references = raw ? null : ReferenceMaps;
        foreach (var (maps, batch) in RawMaps(source, batchSize, loadMasks, cancellationToken))
        {
            if (references is null)
            {
                yield return (maps, batch);
                continue;
            }

            using var normalized = references.Normalize(maps, batch.ClassNames);
            yield return (normalized, batch);
        }
    }

    private IEnumerable<(Tensor Maps, ImageBatch Batch)> RawMaps(IImageSource source, int batchSize, bool loadMasks, CancellationToken cancellationToken)
    {
        if (Options.Tiling is not null)
        {
            foreach (var item in TiledMaps(source, batchSize, loadMasks, cancellationToken))
            {
                yield return item;
            }

            yield break;
        }

        var loader = new ImageBatchLoader(source, new LoaderOptions { BatchSize = batchSize, LoadMasks = loadMasks, Preprocess = Preprocess }, loggerFactory.CreateLogger<ImageBatchLoader>());
        foreach (var batch in loader.Batches(cancellationToken: cancellationToken))
        {
            cancellationToken.ThrowIfCancellationRequested();
            Tensor maps;
            lock (gate)
            {
                ObjectDisposedException.ThrowIf(disposed, this);
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();
                AnomalyModel.Module.eval();
                maps = AnomalyModel.Maps(batch.Images.to(Device)).cpu().MoveToOuterDisposeScope();
            }

            using (maps)
            {
                yield return (maps, batch);
            }
        }
    }

    /// <inheritdoc />
    private protected override long MaxImagePixels => Preprocess.MaxImagePixels;

    /// <inheritdoc />
    private protected override IReadOnlyList<AnomalyResult> ScoreDecoded(IReadOnlyList<(RgbImage Image, string? Name)> images, string? className) =>
        ScoreImages(images, className);

    private List<AnomalyResult> ScoreImages(IReadOnlyList<(RgbImage Image, string? Name)> images, string? className = null)
    {
        var classes = Enumerable.Repeat(className, images.Count).ToArray();
        RequireClasses(classes);
        if (Options.Tiling is not null)
        {
            return ScoreTiled(images, className);
        }

        WarnStretched(images, Options.InputSize, warning => logger.LogWarning("{Warning}", warning));

        using var scope = NewDisposeScope();
        var inputs = stack(images.Select(i => ImagePreprocessor.ToTensor(i.Image, Preprocess)).ToArray());
        var sizes = images.Select(i => new GridSize(i.Image.Height, i.Image.Width)).ToArray();
        return Run(inputs, sizes, images.Select(i => i.Name).ToArray(), classes);
    }

    /// <summary>With reference maps, every image needs a known class (checked before the network runs).</summary>
    private void RequireClasses(IReadOnlyList<string?> classes) =>
        ScoringSteps.RequireClasses(ReferenceMaps?.Classes.Keys.ToArray(), classes);

    private List<AnomalyResult> Run(Tensor inputs, IReadOnlyList<GridSize> originalSizes, IReadOnlyList<string?> names, IReadOnlyList<string?> classNames)
    {
        RequireClasses(classNames);
        float[] values;
        int height, width;
        Calibration? calibration;
        MapPostProcessor post;
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            using var scope = NewDisposeScope();
            AnomalyModel.Module.eval();
            var maps = AnomalyModel.Maps(inputs.to(Device)).cpu().contiguous();
            height = (int)maps.shape[1];
            width = (int)maps.shape[2];
            values = maps.data<float>().ToArray();
            calibration = Calibration;
            post = PostProcessor();
        }

        int plane = height * width;
        ScoringSteps.RequireFinite(values, plane, names);
        var results = new List<AnomalyResult>(originalSizes.Count);
        for (int i = 0; i < originalSizes.Count; i++)
        {
            var map = values.AsSpan(i * plane, plane).ToArray();
            results.Add(post.Finish(map, height, width, i < names.Count ? names[i] : null, classNames[i], originalSizes[i], calibration));
        }

        return results;
    }

    /// <summary>Refuses maps holding NaN or infinity (a model whose weights are not finite): a NaN map would never be anomalous.</summary>
    /// <exception cref="InvalidDataException">A map is not finite.</exception>
    internal static void RequireFinite(Tensor maps, IReadOnlyList<string?> names)
    {
        using var finite = isfinite(maps).reshape(maps.shape[0], -1).all(dim: 1).cpu();
        var ok = finite.data<bool>().ToArray();
        int bad = Array.IndexOf(ok, false);
        if (bad >= 0)
        {
            throw ScoringSteps.NonFiniteMap(names, bad);
        }
    }
}
