using UniAD.Core.Training;

namespace UniAD.Core.Tests.Training;

public sealed class LearningRateScheduleTests
{
    private const double Peak = 1e-3;

    [Fact]
    public void Warmup_ramps_linearly_to_the_peak()
    {
        // 41 steps, 10 % warm-up: W = round(4.1) = 4 steps at 1/4, 2/4, 3/4, 4/4 of the peak.
        var schedule = new WarmupCosineSchedule { WarmupFraction = 0.1, FinalFraction = 0.01 };
        Assert.Equal(4, schedule.WarmupSteps(41));
        Assert.Equal(2.5e-4, schedule.LearningRateAt(Peak, 0, 41, 10), 1e-15);
        Assert.Equal(5.0e-4, schedule.LearningRateAt(Peak, 1, 41, 10), 1e-15);
        Assert.Equal(7.5e-4, schedule.LearningRateAt(Peak, 2, 41, 10), 1e-15);
        Assert.Equal(1.0e-3, schedule.LearningRateAt(Peak, 3, 41, 10), 1e-15);
    }

    [Fact]
    public void Cosine_passes_the_midpoint_and_ends_at_the_final_fraction()
    {
        // After W = 4 warm-up steps the cosine runs over steps 4..40 (span 36): p = 0.5 at step 22, p = 0.25 at 13.
        var schedule = new WarmupCosineSchedule { WarmupFraction = 0.1, FinalFraction = 0.01 };
        Assert.Equal(1.0e-3, schedule.LearningRateAt(Peak, 4, 41, 10), 1e-15);
        Assert.Equal(1e-5 + (0.99e-3 * 0.5), schedule.LearningRateAt(Peak, 22, 41, 10), 1e-15);
        Assert.Equal(1e-5 + (0.99e-3 * 0.5 * (1 + (Math.Sqrt(2) / 2))), schedule.LearningRateAt(Peak, 13, 41, 10), 1e-15);
        Assert.Equal(1e-5, schedule.LearningRateAt(Peak, 40, 41, 10), 1e-15);
        Assert.Equal(1e-5, schedule.LearningRateAt(Peak, 1000, 41, 10), 1e-15);
    }

    [Theory]
    [InlineData(0.05, 100, 5)]
    [InlineData(0.05, 10, 1)]
    [InlineData(0.05, 1, 1)]
    [InlineData(0.0, 100, 0)]
    [InlineData(0.5, 7, 4)]
    public void Warmup_steps_round_and_never_vanish(double fraction, long total, long expected)
    {
        Assert.Equal(expected, new WarmupCosineSchedule { WarmupFraction = fraction }.WarmupSteps(total));
    }

    [Fact]
    public void Without_warmup_the_first_step_has_the_peak()
    {
        var schedule = new WarmupCosineSchedule { WarmupFraction = 0, FinalFraction = 0 };
        Assert.Equal(Peak, schedule.LearningRateAt(Peak, 0, 3, 1), 1e-15);
        Assert.Equal(Peak / 2, schedule.LearningRateAt(Peak, 1, 3, 1), 1e-15);
        Assert.Equal(0, schedule.LearningRateAt(Peak, 2, 3, 1), 1e-15);
    }

    [Fact]
    public void One_cycle_rises_to_the_peak_and_falls_to_the_final_rate()
    {
        // 91 steps, peak fraction 0.3: peak step round(27.3) - 1 = 26; start 1e-3 / 25 = 4e-5, end 4e-5 / 1e4 = 4e-9.
        var schedule = new OneCycleSchedule();
        Assert.Equal(26, schedule.PeakStep(91));
        Assert.Equal(4e-5, schedule.LearningRateAt(Peak, 0, 91, 7), 1e-15);
        Assert.Equal((4e-5 + 1e-3) / 2, schedule.LearningRateAt(Peak, 13, 91, 7), 1e-15);
        Assert.Equal(Peak, schedule.LearningRateAt(Peak, 26, 91, 7), 1e-15);
        Assert.True(schedule.LearningRateAt(Peak, 25, 91, 7) < Peak && schedule.LearningRateAt(Peak, 27, 91, 7) < Peak);
        Assert.Equal((1e-3 + 4e-9) / 2, schedule.LearningRateAt(Peak, 58, 91, 7), 1e-15);
        Assert.Equal(4e-9, schedule.LearningRateAt(Peak, 90, 91, 7), 1e-20);
        Assert.Equal(4e-9, schedule.LearningRateAt(Peak, 500, 91, 7), 1e-20);
    }

    [Theory]
    [InlineData(0, 1e-4)]
    [InlineData((799 * 5) + 4, 1e-4)]
    [InlineData(800 * 5, 1e-5)]
    [InlineData((1600 * 5) + 2, 1e-6)]
    public void StepLR_per_step_keeps_its_per_epoch_values(long step, double expected)
    {
        var schedule = new StepLRSchedule();
        Assert.Equal(expected, schedule.LearningRateAt(1e-4, step, 5000, 5), 1e-12);
        Assert.Equal(schedule.LearningRateAt(1e-4, (int)(step / 5)), schedule.LearningRateAt(1e-4, step, 5000, 5));
    }

    [Fact]
    public void Invalid_schedules_and_positions_are_rejected_with_the_value()
    {
        Assert.Contains("WarmupFraction = 1", Assert.Throws<ArgumentException>(() => new WarmupCosineSchedule { WarmupFraction = 1 }.Validate()).Message);
        Assert.Contains("FinalFraction = -0.1", Assert.Throws<ArgumentException>(() => new WarmupCosineSchedule { FinalFraction = -0.1 }.Validate()).Message);
        Assert.Contains("PeakFraction = 0", Assert.Throws<ArgumentException>(() => new OneCycleSchedule { PeakFraction = 0 }.Validate()).Message);
        Assert.Contains("InitialDivisor = 0.5", Assert.Throws<ArgumentException>(() => new OneCycleSchedule { InitialDivisor = 0.5 }.Validate()).Message);
        Assert.Contains("StepSize = 0", Assert.Throws<ArgumentException>(() => new StepLRSchedule { StepSize = 0 }.Validate()).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new OneCycleSchedule().LearningRateAt(Peak, -1, 10, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new OneCycleSchedule().LearningRateAt(Peak, 0, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new OneCycleSchedule().LearningRateAt(double.NaN, 0, 10, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new WarmupCosineSchedule { WarmupFraction = 2 }.LearningRateAt(Peak, 0, 10, 1));
    }
}
