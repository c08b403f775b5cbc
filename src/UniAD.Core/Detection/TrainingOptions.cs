using UniAD.Core.Data;
using UniAD.Core.Training;

namespace UniAD.Core.Detection;

/// <summary>
/// Options of <see cref="AnomalyDetector.Train"/>. Defaults follow the reference recipe: AdamW (lr 1e-4,
/// weight decay 1e-4), StepLR (800 epochs, 0.1), 1000 epochs, batch 64, gradient-norm clipping at 0.1;
/// the backbone's features are cached since it never changes. <see cref="TrainingPreset"/> names whole
/// recipes (the reference's, and one for a CPU time budget).
/// </summary>
public sealed record TrainingOptions
{
    /// <summary>Epochs to train (counting epochs already done when resuming).</summary>
    public int Epochs { get; init; } = 1000;

    /// <summary>Images per step.</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>Optimizer settings.</summary>
    public AdamWOptions Optimizer { get; init; } = new();

    /// <summary>
    /// Learning-rate schedule, evaluated before every step at the global step (the reference's
    /// <see cref="StepLRSchedule"/> by default, which changes only between epochs); its total is
    /// <see cref="Epochs"/> x steps per epoch, or the total fixed for <see cref="TimeBudget"/>.
    /// </summary>
    public LearningRateSchedule Schedule { get; init; } = new StepLRSchedule();

    /// <summary>Maximum global gradient norm (reference: 0.1); 0 disables clipping.</summary>
    public double ClipGradNorm { get; init; } = 0.1;

    /// <summary>Seed of shuffling and of the training noise (jitter, dropout); each epoch derives its own from it.</summary>
    public long Seed { get; init; } = 133;

    /// <summary>Cache the frozen backbone's features instead of recomputing them every epoch (ignored with augmentation).</summary>
    public bool CacheFeatures { get; init; } = true;

    /// <summary>Folder for the feature cache on disk, or null to keep it in memory only.</summary>
    public string? FeatureCacheDirectory { get; init; }

    /// <summary>Training augmentation (off by default; turns the feature cache off).</summary>
    public AugmentationOptions Augmentation { get; init; } = AugmentationOptions.None;

    /// <summary>
    /// Validation images, or null; never the test split. With anomalous images (and masks) the best checkpoint
    /// (<see cref="AnomalyDetector.BestPath"/>) is the one with the highest mean pixel AUROC; with normal images
    /// only, e.g. held out from the training images with <see cref="DataSplits.HoldOutNormal"/>, there is no
    /// AUROC and it is the one with the lowest validation reconstruction loss
    /// (<see cref="AnomalyDetector.ValidationLoss"/>, the feature MSE in eval mode).
    /// </summary>
    public IImageSource? Validation { get; init; }

    /// <summary>Evaluate on <see cref="Validation"/> every this many epochs (and after the last); 0 only after the last.</summary>
    public int EvaluateEvery { get; init; } = 10;

    /// <summary>Checkpoint file written every <see cref="CheckpointEvery"/> epochs and at the end, or null for none.</summary>
    public string? CheckpointPath { get; init; }

    /// <summary>Epochs between checkpoints; 0 writes only the final one.</summary>
    public int CheckpointEvery { get; init; } = 10;

    /// <summary>A checkpoint written with its optimizer state to resume from, or null.</summary>
    public string? ResumeFrom { get; init; }

    /// <summary>
    /// A wall-clock budget for the whole <see cref="AnomalyDetector.Train"/> call (feature cache included), or
    /// null for none. Before the first epoch a few probe steps (<see cref="BudgetProbeSteps"/>, forward and
    /// backward only, no update) measure the step time; from it and the time left the number of epochs is
    /// planned ONCE (at most <see cref="Epochs"/>, at least 1), logged, stored in checkpoints (a resumed run
    /// reuses it) and reported in <see cref="TrainingResult.TotalSteps"/>; the schedule runs over exactly those
    /// steps, so it reaches its end when the budget is spent. Training also stops at the end of the first
    /// epoch that passes the budget (a slower machine than measured). On resume the budget counts anew.
    /// </summary>
    public TimeSpan? TimeBudget { get; init; }

    /// <summary>Steps timed before planning a <see cref="TimeBudget"/> (default 6, fewer once they take 2 % of the budget; the first is not counted when there are more).</summary>
    public int BudgetProbeSteps { get; init; } = 6;

    /// <summary>
    /// Normal images held out of training, or null: their mean reconstruction loss is measured every
    /// <see cref="HeldOutEvery"/> epochs (and after the last), reported as progress stage <c>held-out</c> and in
    /// <see cref="TrainingResult.HeldOutLosses"/>, and drives <see cref="EarlyStopping"/>. Anomalous images in it are ignored.
    /// Independent of <see cref="Validation"/>.
    /// </summary>
    public IImageSource? HeldOutNormal { get; init; }

    /// <summary>Epochs between held-out loss evaluations (at least 1; default 1).</summary>
    public int HeldOutEvery { get; init; } = 1;

    /// <summary>Early stopping on the held-out loss (needs <see cref="HeldOutNormal"/>), or null (default) for none.</summary>
    public EarlyStoppingOptions? EarlyStopping { get; init; }

    /// <summary>Bad training images: stop (default) or skip them with a report.</summary>
    public BadInputPolicy OnBadInput { get; init; } = BadInputPolicy.Throw;

    /// <summary>Throws an exception naming the first impossible value.</summary>
    /// <exception cref="ArgumentException">A value is out of range.</exception>
    public void Validate()
    {
        if (Epochs <= 0)
        {
            throw new ArgumentException($"{nameof(Epochs)} = {Epochs} must be positive.");
        }

        if (BatchSize <= 0)
        {
            throw new ArgumentException($"{nameof(BatchSize)} = {BatchSize} must be positive.");
        }

        if (!(ClipGradNorm >= 0))
        {
            throw new ArgumentException($"{nameof(ClipGradNorm)} = {ClipGradNorm} must be 0 (off) or positive.");
        }

        if (EvaluateEvery < 0 || CheckpointEvery < 0)
        {
            throw new ArgumentException($"{nameof(EvaluateEvery)} = {EvaluateEvery} and {nameof(CheckpointEvery)} = {CheckpointEvery} must not be negative.");
        }

        Optimizer.Validate();
        ArgumentNullException.ThrowIfNull(Schedule, nameof(Schedule));
        Schedule.Validate();
        ValidateStopping();
    }

    private void ValidateStopping()
    {
        if (TimeBudget is { } budget && budget <= TimeSpan.Zero)
        {
            throw new ArgumentException($"{nameof(TimeBudget)} = {budget} must be positive (or null for none).", nameof(TimeBudget));
        }

        if (BudgetProbeSteps < 1 || HeldOutEvery < 1)
        {
            throw new ArgumentException($"{nameof(BudgetProbeSteps)} = {BudgetProbeSteps} and {nameof(HeldOutEvery)} = {HeldOutEvery} must be at least 1.");
        }

        if (EarlyStopping is { } early)
        {
            if (HeldOutNormal is null)
            {
                throw new ArgumentException($"{nameof(EarlyStopping)} needs {nameof(HeldOutNormal)} images to measure the held-out loss on.", nameof(HeldOutNormal));
            }

            early.Validate();
        }
    }
}
