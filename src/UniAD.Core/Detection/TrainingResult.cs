namespace UniAD.Core.Detection;

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
