using System.Globalization;
using UniAD.Core.Training;

namespace UniAD.Core.Detection;

/// <summary>
/// Named training recipes. <see cref="Paper"/> is the reference's (the default of <see cref="TrainingOptions"/>,
/// meant for GPUs); <see cref="CpuBudget"/> fits a run into a wall-clock budget on a CPU. The CPU recipe's
/// numbers are constants of this class, to be tuned in one place.
/// </summary>
public static class TrainingPreset
{
    /// <summary>Batch size of <see cref="CpuBudget"/>: small batches give many updates per minute on a CPU.</summary>
    public const int CpuBatchSize = 8;

    /// <summary>
    /// Peak learning rate of <see cref="CpuBudget"/>. Not the reference's 1e-4 (batch 64) scaled down linearly to
    /// batch 8 (1.25e-5, far too slow for a run of minutes instead of 1000 epochs): 1e-3 trains the quick start's
    /// network at batch 8 stably even without warm-up; with warm-up it is a conservative peak.
    /// </summary>
    public const double CpuPeakLearningRate = 1e-3;

    /// <summary>Warm-up of <see cref="CpuBudget"/>: the first 5 % of the planned steps.</summary>
    public const double CpuWarmupFraction = 0.05;

    /// <summary>The cosine decay of <see cref="CpuBudget"/> ends at 1 % of the peak rate.</summary>
    public const double CpuFinalFraction = 0.01;

    /// <summary>AdamW weight decay of <see cref="CpuBudget"/> (the reference's).</summary>
    public const double CpuWeightDecay = 1e-4;

    /// <summary>Gradient-norm clipping of <see cref="CpuBudget"/> (the reference's).</summary>
    public const double CpuClipGradNorm = 0.1;

    /// <summary>The epoch cap of <see cref="CpuBudget"/> (the budget, not the epochs, ends the run).</summary>
    public const int CpuMaxEpochs = 10_000;

    /// <summary>The longest budget <see cref="ParseBudget"/> accepts (30 days).</summary>
    public static readonly TimeSpan MaxBudget = TimeSpan.FromDays(30);

    /// <summary>The reference recipe: AdamW lr 1e-4, weight decay 1e-4, StepLR (800, 0.1), 1000 epochs, batch 64, clipping 0.1.</summary>
    public static TrainingOptions Paper() => new();

    /// <summary>
    /// A recipe for a CPU and a wall-clock <paramref name="budget"/>: batch <see cref="CpuBatchSize"/>, AdamW with
    /// peak lr <see cref="CpuPeakLearningRate"/> and weight decay <see cref="CpuWeightDecay"/>, linear warm-up over
    /// <see cref="CpuWarmupFraction"/> of the steps then cosine decay to <see cref="CpuFinalFraction"/> of the peak
    /// (<see cref="WarmupCosineSchedule"/>) over the steps planned for the budget (<see cref="TrainingOptions.TimeBudget"/>),
    /// clipping <see cref="CpuClipGradNorm"/>, at most <see cref="CpuMaxEpochs"/> epochs. Jitter and the network are the
    /// detector's (see <see cref="DetectorPreset.CpuBudget"/>). Adjust the result with <c>with { ... }</c>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The budget is not positive.</exception>
    public static TrainingOptions CpuBudget(TimeSpan budget)
    {
        if (budget <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(budget), budget, $"The time budget ({budget}) must be positive.");
        }

        return new TrainingOptions
        {
            Epochs = CpuMaxEpochs,
            BatchSize = CpuBatchSize,
            Optimizer = new AdamWOptions { LearningRate = CpuPeakLearningRate, WeightDecay = CpuWeightDecay },
            Schedule = new WarmupCosineSchedule { WarmupFraction = CpuWarmupFraction, FinalFraction = CpuFinalFraction },
            ClipGradNorm = CpuClipGradNorm,
            TimeBudget = budget,
        };
    }

    /// <summary>
    /// Parses a budget: a number with units in the order h, m, s (<c>90s</c>, <c>30m</c>, <c>1h30m</c>,
    /// <c>2h</c>, <c>1h0m30s</c>), or a plain whole number of minutes (<c>45</c>). Case-insensitive; the result must
    /// be positive and at most <see cref="MaxBudget"/>.
    /// </summary>
    /// <exception cref="FormatException">The text is not such a budget (the message quotes it).</exception>
    public static TimeSpan ParseBudget(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var t = text.Trim().ToLowerInvariant();
        if (t.Length > 0 && t.All(char.IsAsciiDigit))
        {
            t += "m";
        }

        double seconds = 0;
        int position = 0, lastUnit = -1;
        while (position < t.Length)
        {
            int start = position;
            while (position < t.Length && char.IsAsciiDigit(t[position]))
            {
                position++;
            }

            int unit = position < t.Length ? "hms".IndexOf(t[position], StringComparison.Ordinal) : -1;
            if (position == start || position - start > 9 || unit <= lastUnit)
            {
                throw new FormatException($"'{text}' is not a time budget: use e.g. 90s, 30m, 1h30m or plain minutes (45).");
            }

            seconds += int.Parse(t.AsSpan(start, position - start), NumberStyles.None, CultureInfo.InvariantCulture) * (unit == 0 ? 3600.0 : unit == 1 ? 60.0 : 1.0);
            lastUnit = unit;
            position++;
        }

        if (lastUnit < 0 || seconds <= 0 || seconds > MaxBudget.TotalSeconds)
        {
            throw new FormatException($"'{text}' is not a time budget between 1 s and {MaxBudget.TotalDays} days.");
        }

        return TimeSpan.FromSeconds(seconds);
    }
}
