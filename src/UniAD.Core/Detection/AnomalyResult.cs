namespace UniAD.Core.Detection;

/// <summary>An anomaly map (row-major, one value per pixel of the scored image, raw scale). Immutable.</summary>
public sealed class AnomalyMapData
{
    private readonly float[] values;

    /// <summary>Wraps the values (the array is taken over, not copied).</summary>
    /// <exception cref="ArgumentException">The array's length is not width x height.</exception>
    public AnomalyMapData(int width, int height, float[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (width <= 0 || height <= 0 || values.Length != (long)width * height)
        {
            throw new ArgumentException($"A {width} x {height} map needs {(long)width * height} values, got {values.Length}.", nameof(values));
        }

        Width = width;
        Height = height;
        this.values = values;
    }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>The values, row-major.</summary>
    public ReadOnlySpan<float> Values => values;

    /// <summary>The value at column <paramref name="x"/>, row <paramref name="y"/>.</summary>
    public float this[int x, int y] => (uint)x < (uint)Width && (uint)y < (uint)Height
        ? values[(y * Width) + x]
        : throw new ArgumentOutOfRangeException(nameof(x), $"({x}, {y}) lies outside the {Width} x {Height} map.");

    /// <summary>The largest value.</summary>
    public float Max => values.Max();

    /// <summary>A binary mask (1 = anomalous) of the values at or above <paramref name="threshold"/>.</summary>
    public byte[] Threshold(double threshold)
    {
        var mask = new byte[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            mask[i] = values[i] >= threshold ? (byte)1 : (byte)0;
        }

        return mask;
    }
}

/// <summary>The verdict on one image.</summary>
/// <param name="Source">The file or name the image came from, if known.</param>
/// <param name="Score">Raw image score (the configured <see cref="DetectorOptions.ScoreKind"/> of the map at network resolution).</param>
/// <param name="NormalizedScore">The score mapped to [0, 1] with the threshold at 0.5, or null when the detector is not calibrated.</param>
/// <param name="IsAnomalous">Score at or above the calibrated threshold (moved by the sensitivity: <see cref="Calibration.EffectiveImageThreshold"/>), or null when the detector is not calibrated.</param>
/// <param name="Map">The anomaly map resized to the original image size (raw scale).</param>
/// <param name="Mask">Binary defect mask at the original size (1 = anomalous) from the calibrated pixel threshold (after sensitivity: <see cref="Calibration.EffectivePixelThreshold"/>), or null when there is none.</param>
public sealed record AnomalyResult(string? Source, double Score, double? NormalizedScore, bool? IsAnomalous, AnomalyMapData Map, byte[]? Mask);

/// <summary>Progress of training.</summary>
/// <param name="Stage">"features" while the feature cache fills, "training" during epochs, "evaluation" while validating.</param>
/// <param name="Epoch">1-based epoch (0 before the first).</param>
/// <param name="Epochs">Total epochs.</param>
/// <param name="Step">1-based step within the epoch, or images done in the "features" stage.</param>
/// <param name="Steps">Steps per epoch, or images in the "features" stage.</param>
/// <param name="Loss">Mean loss of the epoch so far (NaN before the first step).</param>
/// <param name="LearningRate">Current learning rate.</param>
/// <param name="Elapsed">Time since training started.</param>
public sealed record TrainingProgress(string Stage, int Epoch, int Epochs, int Step, int Steps, double Loss, double LearningRate, TimeSpan Elapsed);

/// <summary>The outcome of <see cref="AnomalyDetector.Train"/>.</summary>
/// <param name="EpochsCompleted">The last completed epoch (counting epochs restored from a checkpoint).</param>
/// <param name="EpochLosses">Mean training loss of each epoch run in this call.</param>
/// <param name="Validation">The last validation report (image and pixel metrics), or null (also when the validation images are all normal).</param>
/// <param name="BestPixelAuroc">Best mean pixel AUROC seen in validation, or null.</param>
/// <param name="LastCheckpoint">The last checkpoint written, or null.</param>
/// <param name="Duration">Wall-clock time of this call.</param>
/// <param name="BestValidationLoss">Lowest validation reconstruction loss, when the validation images are all normal (the best-checkpoint rule then); else null.</param>
public sealed record TrainingResult(int EpochsCompleted, IReadOnlyList<double> EpochLosses, Metrics.MetricsReport? Validation, double? BestPixelAuroc, string? LastCheckpoint, TimeSpan Duration, double? BestValidationLoss = null)
{
    /// <summary>Why training stopped.</summary>
    public TrainingStopReason StopReason { get; init; }

    /// <summary>The total number of steps the learning-rate schedule ran over (epochs x steps per epoch, or the total planned for the time budget).</summary>
    public long TotalSteps { get; init; }

    /// <summary>The epochs training planned to run: <see cref="TrainingOptions.Epochs"/>, or fewer as planned for the time budget.</summary>
    public int PlannedEpochs { get; init; }

    /// <summary>The held-out losses measured in this call (empty without <see cref="TrainingOptions.HeldOutNormal"/>).</summary>
    public IReadOnlyList<HeldOutLoss> HeldOutLosses { get; init; } = Array.Empty<HeldOutLoss>();

    /// <summary>The epoch with the lowest held-out loss in this call, or null.</summary>
    public int? BestHeldOutEpoch { get; init; }

    /// <summary>Why validation stopped, when it failed (for example a bad validation image): the epoch and the message, or null. Training went on and its checkpoints were written; validation was not retried.</summary>
    public string? ValidationFailure { get; init; }
}
