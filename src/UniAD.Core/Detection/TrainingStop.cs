using System.Globalization;

namespace UniAD.Core.Detection;

/// <summary>Why <see cref="AnomalyDetector.Train"/> stopped.</summary>
public enum TrainingStopReason
{
    /// <summary>All <see cref="TrainingOptions.Epochs"/> epochs are done.</summary>
    EpochsDone,

    /// <summary>The <see cref="TrainingOptions.TimeBudget"/> ended training: the steps planned for it are done, or the clock passed it.</summary>
    TimeBudget,

    /// <summary>The held-out loss stopped improving (<see cref="TrainingOptions.EarlyStopping"/>).</summary>
    EarlyStopping,

    /// <summary>A memory bank was fitted (its family has no epochs).</summary>
    Fitted,
}

/// <summary>
/// Early stopping on the held-out loss (<see cref="TrainingOptions.HeldOutNormal"/>): training stops after
/// <see cref="Patience"/> held-out evaluations in a row that do not improve on the best loss so far by more
/// than <see cref="MinDelta"/>. The weights are those of the last epoch (not of the best one); the best
/// epoch is reported in <see cref="TrainingResult.BestHeldOutEpoch"/>. The patience count starts again when
/// training resumes from a checkpoint.
/// </summary>
public sealed record EarlyStoppingOptions
{
    /// <summary>Held-out evaluations without improvement before stopping (at least 1; default 5).</summary>
    public int Patience { get; init; } = 5;

    /// <summary>The least decrease of the held-out loss that counts as an improvement (0 or positive; default 0).</summary>
    public double MinDelta { get; init; }

    /// <summary>Throws an exception naming the first impossible value.</summary>
    /// <exception cref="ArgumentException">A value is out of range.</exception>
    public void Validate()
    {
        if (Patience < 1)
        {
            throw new ArgumentException($"{nameof(Patience)} = {Patience} must be at least 1.", nameof(Patience));
        }

        if (!(MinDelta >= 0) || double.IsInfinity(MinDelta))
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{nameof(MinDelta)} = {MinDelta} must be 0 or positive and finite."), nameof(MinDelta));
        }
    }
}

/// <summary>One evaluation of the held-out loss.</summary>
/// <param name="Epoch">The epoch after which it was measured.</param>
/// <param name="Loss">Mean reconstruction loss (MSE) over the held-out normal images, in evaluation mode (no jitter, no dropout).</param>
/// <param name="Elapsed">Wall-clock time since the start of the <see cref="AnomalyDetector.Train"/> call.</param>
public sealed record HeldOutLoss(int Epoch, double Loss, TimeSpan Elapsed);
