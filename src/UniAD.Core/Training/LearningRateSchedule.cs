using System.Globalization;

namespace UniAD.Core.Training;

/// <summary>
/// A learning-rate schedule: a pure function of the global step, so a resumed run sets exactly the
/// learning rates of an uninterrupted one. Training evaluates it before every step with the 0-based
/// global step <c>(epoch - 1) * stepsPerEpoch + stepInEpoch</c>, the total number of steps of the run
/// (epochs x steps per epoch, or the total fixed by a time budget) and the steps per epoch.
/// </summary>
public abstract record LearningRateSchedule
{
    /// <summary>The learning rate of a 0-based global step; steps at or beyond <paramref name="totalSteps"/> get the schedule's final value.</summary>
    /// <param name="baseLearningRate">The optimizer's learning rate (the schedule's peak for warm-up schedules).</param>
    /// <param name="step">0-based global step.</param>
    /// <param name="totalSteps">Steps of the whole run (at least 1).</param>
    /// <param name="stepsPerEpoch">Steps of one epoch (at least 1).</param>
    /// <exception cref="ArgumentOutOfRangeException">A negative step, a total or steps per epoch below 1, a learning rate that is not positive and finite, or an invalid schedule.</exception>
    public double LearningRateAt(double baseLearningRate, long step, long totalSteps, int stepsPerEpoch)
    {
        if (!(baseLearningRate > 0) || double.IsInfinity(baseLearningRate))
        {
            throw new ArgumentOutOfRangeException(nameof(baseLearningRate), baseLearningRate, "The base learning rate must be positive and finite.");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentOutOfRangeException.ThrowIfLessThan(totalSteps, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(stepsPerEpoch, 1);
        try
        {
            Validate();
        }
        catch (ArgumentException ex)
        {
            throw new ArgumentOutOfRangeException(ex.Message, ex);
        }

        return Compute(baseLearningRate, step, totalSteps, stepsPerEpoch);
    }

    /// <summary>Throws an exception naming the first impossible value.</summary>
    /// <exception cref="ArgumentException">A value is out of range.</exception>
    public abstract void Validate();

    /// <summary>The schedule itself, called with checked arguments.</summary>
    /// <param name="baseLearningRate">The optimizer's learning rate, positive and finite.</param>
    /// <param name="step">0-based global step, not negative.</param>
    /// <param name="totalSteps">Steps of the whole run, at least 1.</param>
    /// <param name="stepsPerEpoch">Steps of one epoch, at least 1.</param>
    protected abstract double Compute(double baseLearningRate, long step, long totalSteps, int stepsPerEpoch);

    /// <summary>Cosine interpolation from <paramref name="from"/> (at <paramref name="progress"/> 0) to <paramref name="to"/> (at 1).</summary>
    protected static double CosineBetween(double from, double to, double progress) =>
        to + ((from - to) * 0.5 * (1 + Math.Cos(Math.PI * Math.Clamp(progress, 0, 1))));

    /// <summary>Throws unless <paramref name="value"/> lies in [<paramref name="low"/>, <paramref name="high"/>).</summary>
    protected static void CheckFraction(double value, string name, double low = 0, double high = 1)
    {
        if (!(value >= low && value < high))
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{name} = {value} must lie in [{low}, {high})."), name);
        }
    }
}

/// <summary>
/// The reference's StepLR: the learning rate is multiplied by <see cref="Gamma"/> every <see cref="StepSize"/>
/// epochs. It depends on the epoch only (every step of an epoch has the same rate), exactly as the
/// reference sets it once per epoch. The default schedule.
/// </summary>
public sealed record StepLRSchedule : LearningRateSchedule
{
    /// <summary>Epochs between decays (reference: 800).</summary>
    public int StepSize { get; init; } = 800;

    /// <summary>Decay factor (reference: 0.1).</summary>
    public double Gamma { get; init; } = 0.1;

    /// <summary>The learning rate for a 0-based epoch.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The epoch is negative, or the schedule is invalid.</exception>
    public double LearningRateAt(double baseLearningRate, int epoch)
    {
        if (epoch < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(epoch), epoch, "The epoch must not be negative.");
        }

        if (StepSize <= 0 || !(Gamma > 0))
        {
            throw new ArgumentOutOfRangeException(nameof(StepSize), $"StepLR needs a positive step size and gamma; got {StepSize} and {Gamma}.");
        }

        return baseLearningRate * Math.Pow(Gamma, epoch / StepSize);
    }

    /// <inheritdoc />
    public override void Validate()
    {
        if (StepSize <= 0 || !(Gamma > 0) || double.IsInfinity(Gamma))
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"StepLR needs a positive step size and gamma; got {nameof(StepSize)} = {StepSize} and {nameof(Gamma)} = {Gamma}."));
        }
    }

    /// <inheritdoc />
    protected override double Compute(double baseLearningRate, long step, long totalSteps, int stepsPerEpoch) =>
        LearningRateAt(baseLearningRate, (int)Math.Min(step / stepsPerEpoch, int.MaxValue));
}

/// <summary>
/// Linear warm-up, then cosine decay, evaluated per step. With W = <see cref="WarmupSteps"/>(total), step s
/// (0-based) gets <c>base * (s + 1) / W</c> while s &lt; W (the last warm-up step reaches the base rate), then
/// <c>min + (base - min) * (1 + cos(pi * p)) / 2</c> with p = (s - W) / (total - 1 - W) and
/// min = base * <see cref="FinalFraction"/>: the last step of the run (s = total - 1) has exactly the final rate,
/// and later steps keep it.
/// </summary>
public sealed record WarmupCosineSchedule : LearningRateSchedule
{
    /// <summary>Fraction of the total steps spent warming up, in [0, 1) (default 0.05); any positive fraction warms up for at least one step.</summary>
    public double WarmupFraction { get; init; } = 0.05;

    /// <summary>The final learning rate as a fraction of the base (peak) rate, in [0, 1) (default 0.01).</summary>
    public double FinalFraction { get; init; } = 0.01;

    /// <summary>The number of warm-up steps of a run of <paramref name="totalSteps"/> steps: round(fraction x total), at least 1 when the fraction is positive, at most the total.</summary>
    public long WarmupSteps(long totalSteps) =>
        WarmupFraction <= 0 ? 0 : Math.Clamp((long)Math.Round(WarmupFraction * totalSteps, MidpointRounding.AwayFromZero), 1, Math.Max(1, totalSteps));

    /// <inheritdoc />
    public override void Validate()
    {
        CheckFraction(WarmupFraction, nameof(WarmupFraction));
        CheckFraction(FinalFraction, nameof(FinalFraction));
    }

    /// <inheritdoc />
    protected override double Compute(double baseLearningRate, long step, long totalSteps, int stepsPerEpoch)
    {
        long warmup = WarmupSteps(totalSteps);
        if (step < warmup)
        {
            return baseLearningRate * (step + 1) / warmup;
        }

        long span = totalSteps - 1 - warmup;
        double progress = span <= 0 ? 1 : (double)(step - warmup) / span;
        return CosineBetween(baseLearningRate, baseLearningRate * FinalFraction, progress);
    }
}

/// <summary>
/// One cycle (after Smith's one-cycle policy, cosine phases, learning rate only: AdamW's betas stay fixed):
/// from <c>base / InitialDivisor</c> at step 0 up to the base (peak) rate at step P = round(<see cref="PeakFraction"/>
/// x total) - 1 along a cosine, then down along a cosine to <c>base / (InitialDivisor x FinalDivisor)</c> at the
/// last step (total - 1); later steps keep the final rate.
/// </summary>
public sealed record OneCycleSchedule : LearningRateSchedule
{
    /// <summary>Fraction of the total steps until the peak, in (0, 1) (default 0.3).</summary>
    public double PeakFraction { get; init; } = 0.3;

    /// <summary>The starting rate is the peak divided by this (at least 1; default 25).</summary>
    public double InitialDivisor { get; init; } = 25;

    /// <summary>The final rate is the starting rate divided by this (at least 1; default 1e4).</summary>
    public double FinalDivisor { get; init; } = 1e4;

    /// <summary>The 0-based step with the peak rate in a run of <paramref name="totalSteps"/> steps.</summary>
    public long PeakStep(long totalSteps) =>
        Math.Clamp((long)Math.Round(PeakFraction * totalSteps, MidpointRounding.AwayFromZero) - 1, 0, Math.Max(0, totalSteps - 1));

    /// <inheritdoc />
    public override void Validate()
    {
        if (!(PeakFraction > 0 && PeakFraction < 1))
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{nameof(PeakFraction)} = {PeakFraction} must lie in (0, 1)."), nameof(PeakFraction));
        }

        if (!(InitialDivisor >= 1) || double.IsInfinity(InitialDivisor) || !(FinalDivisor >= 1) || double.IsInfinity(FinalDivisor))
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"{nameof(InitialDivisor)} = {InitialDivisor} and {nameof(FinalDivisor)} = {FinalDivisor} must be finite and at least 1."));
        }
    }

    /// <inheritdoc />
    protected override double Compute(double baseLearningRate, long step, long totalSteps, int stepsPerEpoch)
    {
        long peak = PeakStep(totalSteps);
        double initial = baseLearningRate / InitialDivisor;
        if (step <= peak)
        {
            return peak == 0 ? baseLearningRate : CosineBetween(initial, baseLearningRate, (double)step / peak);
        }

        long span = totalSteps - 1 - peak;
        return CosineBetween(baseLearningRate, initial / FinalDivisor, span <= 0 ? 1 : (double)(step - peak) / span);
    }
}
