using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using UniAD.Core.Data;
using UniAD.Core.MemoryBank;
using UniAD.Core.Metrics;
using UniAD.Core.Models;
using static TorchSharp.torch;

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
public sealed class AnomalyDetector : ImageScorer, IDisposable
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
    public Calibration SetThresholds(double imageThreshold, double? pixelThreshold = null) =>
        DetectorCalibration.SetThresholds(this, imageThreshold, pixelThreshold);

    /// <summary>
    /// Sets the sensitivities (each in [0, 1]; 0.5 = the calibrated thresholds; higher flags more) of the current
    /// calibration, as anomalib's post-processor does. Stored with the model by <see cref="Save"/>.
    /// </summary>
    /// <param name="image">Image sensitivity.</param>
    /// <param name="pixel">Pixel sensitivity (default: the image one).</param>
    /// <exception cref="ArgumentOutOfRangeException">A sensitivity is outside [0, 1].</exception>
    /// <exception cref="InvalidOperationException">The detector has no calibration or thresholds yet.</exception>
    public Calibration SetSensitivity(double image, double? pixel = null) =>
        DetectorCalibration.SetSensitivity(this, image, pixel);

    /// <summary>The device the model runs on.</summary>
    public Device Device { get; }

    /// <summary>The full path of the checkpoint this detector was loaded from (<see cref="Load"/>), or null for a detector built or imported.</summary>
    public string? SourcePath { get; internal set; }

    /// <summary>Thresholds and normalisation from <see cref="Calibrate"/>, or null when not calibrated.</summary>
    public Calibration? Calibration { get; internal set; }

    /// <summary>Epochs trained so far (restored from checkpoints).</summary>
    public int EpochsTrained { get; internal set; }

    /// <summary>The preprocessing that turns an image into the network's input.</summary>
    public PreprocessOptions Preprocess => new() { InputSize = Options.InputSize, Mean = Options.PixelMean, Std = Options.PixelStd };

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
    public TrainingResult Train(IImageSource train, TrainingOptions? options = null, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default) =>
        DetectorTraining.Train(this, train, options, progress, cancellationToken);

    /// <summary>What the last fit of a memory-bank detector did (candidates, bank size, times), or null.</summary>
    public BankFitReport? LastFit { get; internal set; }

    /// <summary>Runs <see cref="Train"/> on a worker thread.</summary>
    public Task<TrainingResult> TrainAsync(IImageSource train, TrainingOptions? options = null, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Task.Run(() => Train(train, options, progress, cancellationToken), cancellationToken);

    /// <summary>The file the best validation checkpoint goes to: <c>name.best.ext</c> beside <paramref name="path"/>.</summary>
    public static string BestPath(string path) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, Path.GetFileNameWithoutExtension(path) + ".best" + Path.GetExtension(path));

    /// <summary>The schedule's total for a time budget read from the resumed checkpoint or planned in this call (stored in checkpoints), or null.</summary>
    internal long? ScheduleTotalSteps { get; set; }

    /// <summary>
    /// Scores normalized images already at the network's input size (B x 3 x H x W); maps stay at that size.
    /// Float64 and float16/bfloat16 tensors are converted to the model's float32; other dtypes are refused.
    /// </summary>
    /// <exception cref="ArgumentException">The tensor does not have the input size, is not floating point, or holds NaN or infinity.</exception>
    /// <exception cref="InvalidDataException">The model produced a non-finite map (its weights hold NaN or infinity).</exception>
    /// <param name="images">Normalised images, B x 3 x H x W.</param>
    /// <param name="names">Names for the results' sources, or null.</param>
    /// <param name="classNames">The images' classes: needed when the detector has <see cref="ReferenceMaps"/>.</param>
    public IReadOnlyList<AnomalyResult> ScoreTensor(Tensor images, IReadOnlyList<string?>? names = null, IReadOnlyList<string?>? classNames = null) =>
        DetectorScoring.ScoreTensor(this, images, names, classNames);

    /// <summary>
    /// Chooses decision thresholds and the score normalisation from <paramref name="images"/> (normal images,
    /// and for <see cref="CalibrationMethod.F1Max"/> also anomalous ones, with masks for a pixel threshold),
    /// stores them in the detector (and so in its checkpoints) and returns them. Anomalous images without a mask
    /// (<see cref="ImageSample.HasPixelLabels"/>) count for the image threshold only. Never calibrate on the test
    /// split: use held-out normal training images (<see cref="DataSplits.HoldOutNormal"/>) or a validation set.
    /// </summary>
    /// <exception cref="InvalidDataException">No image; F1-max calibration without both normal and anomalous images; false-alarm calibration with fewer than <see cref="CalibrationOptions.MinimumNormalImages"/> normal images.</exception>
    public Calibration Calibrate(IImageSource images, CalibrationOptions? options = null, CancellationToken cancellationToken = default) =>
        DetectorCalibration.Calibrate(this, images, options, cancellationToken);

    /// <summary>
    /// Evaluates on a labelled test set: per-class image and pixel metrics and their mean (see <see cref="MetricsReport"/>).
    /// An anomalous image without a mask (<see cref="ImageSample.HasPixelLabels"/> false) counts for the image
    /// metrics only; the report's notes say, per class, how many the pixel metrics left out.
    /// </summary>
    public MetricsReport Evaluate(IImageSource test, MetricsReportOptions? options = null, int batchSize = 8, IProgress<DataProgress>? progress = null, CancellationToken cancellationToken = default) =>
        DetectorEvaluation.Evaluate(this, test, options, batchSize, progress, cancellationToken);

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
    /// <param name="cancellationToken">Cancels between batches.</param>
    /// <returns>The calibration, also stored in the detector.</returns>
    public Calibration CalibrateOnValidation(IImageSource validation, double falseAlarmRate = 0.01, CancellationToken cancellationToken = default) =>
        DetectorCalibration.OnValidation(this, validation, new CalibrationOptions { FalseAlarmRate = falseAlarmRate }, cancellationToken);

    /// <summary>
    /// As <see cref="CalibrateOnValidation(IImageSource, double, CancellationToken)"/>, with every setting of
    /// <paramref name="options"/> (the false-alarm rate, the batch size, the fewest normal images accepted) except the
    /// method, which the validation split decides: F1-max with anomalous images, the false-alarm rate without.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The rate is not in (0, 1).</exception>
    /// <exception cref="InvalidDataException">The validation split has no normal image, or (normal-only rule) fewer than <see cref="CalibrationOptions.MinimumNormalImages"/>.</exception>
    /// <param name="validation">The validation split (never the test split).</param>
    /// <param name="options">The settings; <see cref="CalibrationOptions.Method"/> is ignored.</param>
    /// <param name="cancellationToken">Cancels between batches.</param>
    /// <returns>The calibration, also stored in the detector.</returns>
    public Calibration CalibrateOnValidation(IImageSource validation, CalibrationOptions options, CancellationToken cancellationToken = default) =>
        DetectorCalibration.OnValidation(this, validation, options, cancellationToken);

    /// <summary>
    /// The mean reconstruction loss (feature MSE, the training loss, in eval mode: no jitter, no dropout) over
    /// the normal images of <paramref name="source"/> (with tiling, over their tiles, as training sees them): the
    /// validation measure when there is no anomalous validation image (lower is better).
    /// </summary>
    /// <exception cref="InvalidDataException">The source has no normal image.</exception>
    public double ValidationLoss(IImageSource source, int batchSize = 8, CancellationToken cancellationToken = default) =>
        ValidationLosses.Validation(this, source, batchSize, cancellationToken);

    /// <summary>Per-class reference maps that every map is divided by, or null (the default: raw maps). Stored with the model.</summary>
    public ReferenceMaps? ReferenceMaps { get; internal set; }

    /// <summary>
    /// Fits per-class reference maps (opt-in; for aligned parts whose normal images have a fixed layout of
    /// reconstruction error): the mean raw map of up to <see cref="ReferenceMapOptions.ImagesPerClass"/> normal images
    /// per class, averaged in blocks down to <see cref="ReferenceMapOptions.MaxSide"/> and smoothed. From then on every
    /// map is divided by its class's reference plus epsilon, so scoring needs the image's class. Any calibration is
    /// dropped (its thresholds were on the raw scale): calibrate afterwards. Use normal TRAINING images (the
    /// held-out ones stay unbiased for calibration); never the test split.
    /// </summary>
    /// <exception cref="InvalidDataException">The source has no normal image.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public ReferenceMaps FitReferenceMaps(IImageSource normalImages, ReferenceMapOptions? options = null, CancellationToken cancellationToken = default) =>
        ReferenceMapFitting.Fit(this, normalImages, options, cancellationToken);

    /// <summary>Removes the reference maps (maps are raw again) and the calibration made with them.</summary>
    public void ClearReferenceMaps() =>
        ReferenceMapFitting.Clear(this);

    /// <summary>Restores reference maps read from a checkpoint.</summary>
    internal void RestoreReferenceMaps(ReferenceMaps? references) => ReferenceMaps = references;

    /// <summary>
    /// Chooses the pooled-max window of the image score on a VALIDATION source that holds normal and anomalous images
    /// (never the test split): every candidate's image AUROC is measured on the same maps (computed once, with the
    /// reference maps if fitted), the best one is set with <see cref="SetImageScore"/> (so a calibration is dropped:
    /// calibrate afterwards) and every figure is returned. Long, thin defects running across the part (scratches,
    /// KolektorSDD's cracks) favour wide, flat windows; blobs favour square ones. A window larger than a map scores it
    /// by its plain maximum, as <see cref="ImageScoreKind.PooledMax"/> does.
    /// </summary>
    /// <param name="validation">Validation images with image-level labels (masks are not needed).</param>
    /// <param name="candidates">Windows to compare (rows x columns in map pixels, each side at least 1).</param>
    /// <param name="batchSize">Batch size of the scoring pass.</param>
    /// <param name="progress">Receives the images scored so far.</param>
    /// <param name="cancellationToken">Cancels between batches.</param>
    /// <exception cref="ArgumentException">No candidate, or a candidate with a side below 1 (named).</exception>
    /// <exception cref="InvalidDataException">No class of the source holds both normal and anomalous images.</exception>
    public ScoreWindowSelection SelectScoreWindow(IImageSource validation, IReadOnlyList<GridSize> candidates, int batchSize = 8, IProgress<DataProgress>? progress = null, CancellationToken cancellationToken = default) =>
        ScoreWindowSelector.Select(this, validation, candidates, batchSize, progress, cancellationToken);

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
    public static AnomalyDetector ImportReference(string checkpointPath, string configPath, string? device = null, ILoggerFactory? loggerFactory = null) =>
        DetectorCheckpoint.ImportReference(checkpointPath, configPath, device, loggerFactory);

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

    /// <inheritdoc />
    private protected override long MaxImagePixels => Preprocess.MaxImagePixels;

    /// <inheritdoc />
    private protected override IReadOnlyList<AnomalyResult> ScoreDecoded(IReadOnlyList<(RgbImage Image, string? Name)> images, string? className) =>
        DetectorScoring.ScoreImages(this, images, className, () => WarnStretched(images, Options.InputSize, warning => logger.LogWarning("{Warning}", warning)));

    /// <summary>The detector's lock, for its components (<see cref="MapSource"/>, <see cref="DetectorScoring"/>, ...): held where the detector's own methods hold it.</summary>
    internal object Gate => gate;

    /// <summary>The logger factory the detector was made with, for its components' loggers.</summary>
    internal ILoggerFactory LoggerFactory => loggerFactory;

    /// <summary>The detector's logger, shared by its components.</summary>
    internal ILogger Logger => logger;

    /// <summary>Throws <see cref="ObjectDisposedException"/> once the detector is disposed (call under <see cref="Gate"/>).</summary>
    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(disposed, this);
}
