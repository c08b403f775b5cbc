using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Reconstruction;
using UniAD.Core.Training;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Detection;

/// <summary>Per-step schedules, the time budget and early stopping in <see cref="AnomalyDetector.Train"/> (16 normal images, batch 4: 4 steps per epoch).</summary>
public sealed class TrainingScheduleTests(SyntheticData data) : IClassFixture<SyntheticData>
{
    private static readonly WarmupCosineSchedule Cosine = new() { WarmupFraction = 0.25, FinalFraction = 0.01 };

    private static List<double> TrainingRates(AnomalyDetector detector, IImageSource train, TrainingOptions options, out TrainingResult result)
    {
        var rates = new List<double>();
        result = detector.Train(train, options, new SynchronousProgress<TrainingProgress>(p =>
        {
            if (p.Stage == "training")
            {
                rates.Add(p.LearningRate);
            }
        }));
        return rates;
    }

    [Fact]
    public void Warmup_cosine_is_set_before_every_step_within_the_first_epoch()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var rates = TrainingRates(detector, data.Train, SyntheticData.Quick(2) with { Schedule = Cosine }, out var result);

        // 8 steps, W = 2: 1e-3 / 2, 1e-3, then the cosine over steps 2..7 (span 5) down to 1e-5.
        Assert.Equal(8, result.TotalSteps);
        Assert.Equal(2, result.PlannedEpochs);
        Assert.Equal(TrainingStopReason.EpochsDone, result.StopReason);
        Assert.Equal(8, rates.Count);
        Assert.Equal(5e-4, rates[0], 1e-15);
        Assert.Equal(1e-3, rates[1], 1e-15);
        Assert.Equal(1e-3, rates[2], 1e-15);
        Assert.Equal(1e-5 + (0.99e-3 * 0.5 * (1 + Math.Cos(Math.PI * 0.4))), rates[4], 1e-15);
        Assert.Equal(1e-5, rates[7], 1e-15);
    }

    [Fact]
    public void StepLR_still_changes_only_between_epochs()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var rates = TrainingRates(detector, data.Train, SyntheticData.Quick(3) with { Schedule = new StepLRSchedule { StepSize = 2, Gamma = 0.5 } }, out var result);
        Assert.Equal(new[] { 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 5e-4 }, rates);
        Assert.Equal(12, result.TotalSteps);
    }

    [Fact]
    public void Resumed_one_cycle_training_equals_an_uninterrupted_run()
    {
        var checkpoint = Path.Combine(data.Root, "onecycle.safetensors");
        var options = SyntheticData.Quick(4) with { Schedule = new OneCycleSchedule() };
        using var straight = SyntheticData.TinyBuilder().Build();
        straight.Train(data.Train, options);

        // The same 4-epoch run, interrupted in epoch 3: its checkpoint after epoch 2 is resumed.
        using (var cts = new CancellationTokenSource())
        using (var first = SyntheticData.TinyBuilder().Build())
        {
            var stopInEpoch3 = new SynchronousProgress<TrainingProgress>(p =>
            {
                if (p.Stage == "training" && p.Epoch == 3 && p.Step == 1)
                {
                    cts.Cancel();
                }
            });
            Assert.ThrowsAny<OperationCanceledException>(() => first.Train(data.Train, options with { CheckpointPath = checkpoint, CheckpointEvery = 1 }, stopInEpoch3, cts.Token));
        }

        Assert.Equal(2, DetectorCheckpoint.ReadInfo(checkpoint).Epoch);
        using var resumed = SyntheticData.TinyBuilder().Build();
        var result = resumed.Train(data.Train, options with { ResumeFrom = checkpoint });
        Assert.Equal(4, result.EpochsCompleted);
        var a = straight.Model.state_dict();
        var b = resumed.Model.state_dict();
        Assert.All(a.Keys, k => Assert.Equal(0f, (a[k].to(float32) - b[k].to(float32)).abs().max().item<float>()));
    }

    [Fact]
    public void A_spent_budget_trains_one_epoch_and_ends_the_schedule_there()
    {
        var checkpoint = Path.Combine(data.Root, "budget.safetensors");
        using var detector = SyntheticData.TinyBuilder().Build();
        var rates = TrainingRates(detector, data.Train, SyntheticData.Quick(50) with { Schedule = Cosine, TimeBudget = TimeSpan.FromTicks(1), CheckpointPath = checkpoint }, out var result);

        Assert.Equal(TrainingStopReason.TimeBudget, result.StopReason);
        Assert.Equal(1, result.EpochsCompleted);
        Assert.Equal(1, result.PlannedEpochs);
        Assert.Equal(4, result.TotalSteps);
        // W = round(0.25 x 4) = 1 step, then the cosine over steps 1..3 ends at the budget's last step.
        Assert.Equal(4, rates.Count);
        Assert.Equal(1e-3, rates[0], 1e-15);
        Assert.Equal(1e-3, rates[1], 1e-15);
        Assert.Equal(1e-3 * (1 + 0.01) / 2, rates[2], 1e-15);
        Assert.Equal(1e-5, rates[3], 1e-15);
        Assert.Equal(4, DetectorCheckpoint.ReadInfo(checkpoint).ScheduleTotalSteps);

        // Resumed with a budget of an hour, the stored plan (4 steps) is kept: nothing is left to train.
        using var resumed = SyntheticData.TinyBuilder().Build();
        var again = resumed.Train(data.Train, SyntheticData.Quick(50) with { Schedule = Cosine, TimeBudget = TimeSpan.FromHours(1), ResumeFrom = checkpoint });
        Assert.Equal(4, again.TotalSteps);
        Assert.Equal(1, again.EpochsCompleted);
        Assert.Empty(again.EpochLosses);
    }

    [Fact]
    public void Training_stops_at_the_end_of_the_first_epoch_past_the_budget()
    {
        // The probe plans two or more epochs into 12 s (a tiny step takes milliseconds); a slow epoch 1 (the
        // progress handler sleeps past the budget) ends training there although more epochs were planned.
        var budget = TimeSpan.FromSeconds(12);
        using var detector = SyntheticData.TinyBuilder().Build();
        var result = detector.Train(data.Train, SyntheticData.Quick(20) with { Schedule = Cosine, TimeBudget = budget }, new SynchronousProgress<TrainingProgress>(p =>
        {
            if (p.Stage == "training" && p.Epoch == 1 && p.Step == p.Steps && p.Elapsed < budget)
            {
                Thread.Sleep(budget - p.Elapsed + TimeSpan.FromMilliseconds(100));
            }
        }));
        Assert.True(result.PlannedEpochs >= 2, $"planned {result.PlannedEpochs}");
        Assert.Equal(TrainingStopReason.TimeBudget, result.StopReason);
        Assert.Equal(1, result.EpochsCompleted);
        Assert.Single(result.EpochLosses);
        Assert.Equal(result.PlannedEpochs * 4L, result.TotalSteps);
        Assert.True(result.Duration >= budget);
    }

    [Fact]
    public void A_generous_budget_plans_up_to_the_epoch_cap()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var result = detector.Train(data.Train, SyntheticData.Quick(3) with { Schedule = Cosine, TimeBudget = TimeSpan.FromHours(1), BudgetProbeSteps = 2 });
        Assert.Equal(TrainingStopReason.EpochsDone, result.StopReason);
        Assert.Equal(3, result.PlannedEpochs);
        Assert.Equal(12, result.TotalSteps);
        Assert.Equal(3, result.EpochsCompleted);
    }

    [Fact]
    public void Held_out_loss_is_the_mean_reconstruction_error_and_drives_early_stopping()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var heldOut = data.Test; // its anomalous images are ignored
        var result = detector.Train(data.Train, SyntheticData.Quick(10) with
        {
            HeldOutNormal = heldOut,
            EarlyStopping = new EarlyStoppingOptions { Patience = 2, MinDelta = 1e9 },
        });

        // MinDelta 1e9: no evaluation after the first can improve, so training stops after epoch 1 + 2.
        Assert.Equal(TrainingStopReason.EarlyStopping, result.StopReason);
        Assert.Equal(3, result.EpochsCompleted);
        Assert.Equal(new[] { 1, 2, 3 }, result.HeldOutLosses.Select(l => l.Epoch));
        Assert.Equal(1, result.BestHeldOutEpoch);
        Assert.True(result.HeldOutLosses[2].Elapsed >= result.HeldOutLosses[0].Elapsed);

        // The last value, recomputed by hand from the final weights over the normal test images.
        var normal = heldOut.Where(s => s.Label == 0);
        var loader = new ImageBatchLoader(normal, new LoaderOptions { BatchSize = 3, LoadMasks = false, Preprocess = detector.Preprocess });
        double sum = 0;
        int count = 0;
        using (no_grad())
        {
            detector.Model.eval();
            foreach (var batch in loader.Batches())
            {
                using (batch)
                {
                    var features = detector.Model.ExtractFeatures(batch.Images);
                    sum += AnomalyMap.Loss(detector.Model.Reconstruction.Reconstruct(features), features).item<float>() * batch.Paths.Count;
                    count += batch.Paths.Count;
                }
            }
        }

        Assert.Equal(6, count);
        Assert.Equal(sum / count, result.HeldOutLosses[2].Loss, 1e-6 * Math.Max(1, Math.Abs(sum / count)));
        Assert.True(result.HeldOutLosses[2].Loss > 0);
    }

    [Fact]
    public void Held_out_loss_is_measured_every_n_epochs_and_after_the_last()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var stages = new List<(int Epoch, double Loss)>();
        var result = detector.Train(data.Train, SyntheticData.Quick(3) with { HeldOutNormal = data.Train, HeldOutEvery = 2 }, new SynchronousProgress<TrainingProgress>(p =>
        {
            if (p.Stage == "held-out")
            {
                stages.Add((p.Epoch, p.Loss));
            }
        }));
        Assert.Equal(TrainingStopReason.EpochsDone, result.StopReason);
        Assert.Equal(new[] { 2, 3 }, result.HeldOutLosses.Select(l => l.Epoch));
        Assert.Equal(result.HeldOutLosses.Select(l => (l.Epoch, l.Loss)), stages);
    }

    [Fact]
    public void After_the_first_epoch_a_budget_is_planned_again_from_that_epochs_duration()
    {
        // 30 minutes; the first epoch took 120 s and ended at 270 s (features, probe, epoch): 1530 s are left,
        // 12 more epochs fit (12.75), 13 in all; never more than the cap, never fewer than the one done.
        Assert.Equal(13, TrainingSchedulePlanner.EpochsThatFit(TimeSpan.FromMinutes(30), TimeSpan.FromSeconds(120), TimeSpan.FromSeconds(270), 1000));
        Assert.Equal(5, TrainingSchedulePlanner.EpochsThatFit(TimeSpan.FromMinutes(30), TimeSpan.FromSeconds(120), TimeSpan.FromSeconds(270), 5));
        Assert.Equal(1, TrainingSchedulePlanner.EpochsThatFit(TimeSpan.FromMinutes(1), TimeSpan.FromSeconds(120), TimeSpan.FromSeconds(130), 1000));
        Assert.Equal(2, TrainingSchedulePlanner.EpochsThatFit(TimeSpan.FromSeconds(100), TimeSpan.FromSeconds(40), TimeSpan.FromSeconds(50), 1000));
    }
}
