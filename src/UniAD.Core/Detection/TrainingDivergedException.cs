namespace UniAD.Core.Detection;

/// <summary>
/// Training diverged: a step's loss or gradient norm, or the weights at an epoch's end, became NaN or infinite (usually a
/// learning rate far too high). Thrown by <see cref="AnomalyDetector.Train"/> before the bad step is applied and before
/// any checkpoint of non-finite weights is written: the last checkpoint on disk, if any, holds the last finite weights.
/// </summary>
public sealed class TrainingDivergedException : InvalidOperationException
{
    /// <summary>Creates the exception for the step that diverged.</summary>
    /// <param name="epoch">The epoch (1-based).</param>
    /// <param name="step">The step within the epoch (1-based), or 0 for the check at the epoch's end.</param>
    /// <param name="what">What was not finite, e.g. "the loss is NaN".</param>
    /// <param name="learningRate">The learning rate of that step.</param>
    /// <param name="lastCheckpoint">The last checkpoint written (finite weights), or null when none was.</param>
    public TrainingDivergedException(int epoch, int step, string what, double learningRate, string? lastCheckpoint)
        : base(Describe(epoch, step, what, learningRate, lastCheckpoint))
    {
        Epoch = epoch;
        Step = step;
        LearningRate = learningRate;
        LastCheckpoint = lastCheckpoint;
    }

    /// <summary>The epoch (1-based).</summary>
    public int Epoch { get; }

    private static string Describe(int epoch, int step, string what, double learningRate, string? lastCheckpoint)
    {
        var where = step > 0 ? FormattableString.Invariant($"epoch {epoch}, step {step}") : FormattableString.Invariant($"epoch {epoch} (end)");
        var kept = lastCheckpoint is null
            ? "No checkpoint had been written; nothing with non-finite weights was."
            : $"The last checkpoint, '{lastCheckpoint}', holds the last finite weights; nothing with non-finite weights was written.";
        return FormattableString.Invariant($"Training diverged at {where}: {what} (learning rate {learningRate:G4}). Lower the learning rate (TrainingOptions.Optimizer.LearningRate, uniad train --lr) or keep gradient clipping on (ClipGradNorm). ") + kept;
    }

    /// <summary>The step within the epoch (1-based), or 0 for the check of the weights at the epoch's end.</summary>
    public int Step { get; }

    /// <summary>The learning rate of the step.</summary>
    public double LearningRate { get; }

    /// <summary>The last checkpoint written, which holds finite weights, or null.</summary>
    public string? LastCheckpoint { get; }
}
