using System.Diagnostics;
using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using UniAD.Core.Reconstruction;
using UniAD.Core.Training;
using static TorchSharp.torch;

namespace UniAD.Core.Detection;

/// <summary>
/// Training-schedule planning: the epochs and total steps of a run, from the options, from a resumed checkpoint, or for a
/// time budget from timed probe steps (and re-planned after the first epoch); the total is kept in
/// <see cref="AnomalyDetector.ScheduleTotalSteps"/> so checkpoints store it.
/// </summary>
internal static class TrainingSchedulePlanner
{
    /// <summary>
    /// The epochs to run and the schedule's total steps: from the options, or for a time budget the total
    /// stored in the resumed checkpoint, or planned from probe steps and the time left (whole epochs).
    /// </summary>
    public static (int Epochs, long TotalSteps) Plan(AnomalyDetector detector, TrainingOptions options, IImageSource train, FeatureCache? cache, ImageBatchLoader? loader, List<TorchSharp.Modules.Parameter> parameters, int steps, HeldOutSet? heldOut, Stopwatch clock, CancellationToken cancellationToken)
    {
        if (options.TimeBudget is not { } budget)
        {
            detector.ScheduleTotalSteps = null;
            return (options.Epochs, (long)options.Epochs * steps);
        }

        if (detector.ScheduleTotalSteps is { } stored && stored > 0)
        {
            int resumed = (int)Math.Clamp((stored + steps - 1) / steps, 1, options.Epochs);
            detector.Logger.LogInformation("Time budget {Budget}: reusing the checkpoint's plan of {Total} steps ({Epochs} epochs).", budget, stored, resumed);
            return (resumed, stored);
        }

        double stepSeconds = ProbeStepSeconds(detector, options, train, cache, loader, parameters, budget / 50, cancellationToken);
        int heldOutBatches = heldOut is null ? 0 : (heldOut.Source.Samples.Count + options.BatchSize - 1) / options.BatchSize;

        // A held-out batch is a forward pass only: about a third of a training step.
        double epochSeconds = stepSeconds * (steps + (heldOutBatches / 3.0 / options.HeldOutEvery));
        double left = (budget - clock.Elapsed).TotalSeconds;
        int epochs = (int)Math.Clamp(Math.Floor(left / epochSeconds), 1, options.Epochs);
        long total = (long)epochs * steps;
        detector.ScheduleTotalSteps = total;
        detector.Logger.LogInformation(
            "Time budget {Budget}: {StepMs:F1} ms per step measured, {Left:F0} s left, planned {Epochs} epochs = {Total} steps (fixed for the schedule and stored in checkpoints).",
            budget, stepSeconds * 1000, left, epochs, total);
        if (left <= epochSeconds)
        {
            detector.Logger.LogWarning("Time budget {Budget}: only {Left:F0} s are left after the feature cache and the probe steps, less than one epoch ({Epoch:F0} s); training runs one epoch.", budget, left, epochSeconds);
        }

        return (epochs, total);
    }

    /// <summary>
    /// A time budget's plan fixed again after the first epoch from that epoch's measured duration (training steps and
    /// the held-out loss together), which the probe steps only estimate: the epochs that fit into the time left, at
    /// least one more than done and at most <see cref="TrainingOptions.Epochs"/>. The schedule runs over the new
    /// total from the second epoch on (the first epoch's rates came from the probe's plan); checkpoints store it.
    /// </summary>
    public static (int Epochs, long TotalSteps) Replan(AnomalyDetector detector, TrainingOptions options, (int Epochs, long TotalSteps) plan, int steps, TimeSpan firstEpoch, TimeSpan elapsed)
    {
        double left = (options.TimeBudget!.Value - elapsed).TotalSeconds;
        int epochs = EpochsThatFit(options.TimeBudget.Value, firstEpoch, elapsed, options.Epochs);
        if (epochs == plan.Epochs)
        {
            return plan;
        }

        long total = (long)epochs * steps;
        detector.ScheduleTotalSteps = total;
        detector.Logger.LogInformation(
            "Time budget {Budget}: the first epoch took {Epoch:F0} s; {Left:F0} s are left: re-planned {Epochs} epochs = {Total} steps (was {Old}).",
            options.TimeBudget, firstEpoch.TotalSeconds, left, epochs, total, plan.Epochs);
        return (epochs, total);
    }

    /// <summary>The epochs of a budget after a first epoch of <paramref name="firstEpoch"/> ending at <paramref name="elapsed"/>: 1 + the whole epochs that fit into the time left, at most <paramref name="cap"/>.</summary>
    public static int EpochsThatFit(TimeSpan budget, TimeSpan firstEpoch, TimeSpan elapsed, int cap) =>
        (int)Math.Clamp(1 + Math.Floor((budget - elapsed).TotalSeconds / Math.Max(firstEpoch.TotalSeconds, 1e-3)), 1, cap);

    /// <summary>
    /// Seconds per training step, measured on the first batches of epoch 1 (at most <see cref="TrainingOptions.BudgetProbeSteps"/>,
    /// and no more once 2 steps or more have taken <paramref name="limit"/>): forward, backward and clipping on
    /// the real parameters (gradients are cleared afterwards; nothing is updated and the noise is reseeded at
    /// the start of every epoch, so training is unchanged), plus an AdamW update timed on copies.
    /// </summary>
    private static double ProbeStepSeconds(AnomalyDetector detector, TrainingOptions options, IImageSource train, FeatureCache? cache, ImageBatchLoader? loader, List<TorchSharp.Modules.Parameter> parameters, TimeSpan limit, CancellationToken cancellationToken)
    {
        var batches = cache is not null
            ? cache.Batches(train, options.BatchSize, shuffle: true, seed: options.Seed, epoch: 1, cancellationToken: cancellationToken).Select(b => (SampleBatch)b)
            : loader!.Batches(1, cancellationToken: cancellationToken);
        detector.Model.train();
        var watch = Stopwatch.StartNew();
        var times = new List<double>();
        foreach (var batch in batches.Take(options.BudgetProbeSteps))
        {
            using (batch)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var features = batch is FeatureBatch fb ? fb.Features.to(detector.Device) : detector.Model.ExtractFeatures(((ImageBatch)batch).Images.to(detector.Device));
                var reconstruction = detector.Model.Reconstruction;
                reconstruction.Loss(reconstruction.Reconstruct(features), features, step: 0).backward();
                if (options.ClipGradNorm > 0)
                {
                    TorchSharp.torch.nn.utils.clip_grad_norm_(parameters, options.ClipGradNorm);
                }
            }

            TorchSupport.TorchDevices.Synchronize(detector.Device); // CUDA queues kernels: time the work, not the launches
            times.Add(watch.Elapsed.TotalSeconds);
            watch.Restart();
            if (times.Count >= 2 && times.Sum() >= limit.TotalSeconds)
            {
                break; // the probe may take 2 % of the budget (and at least 2 steps)
            }
        }

        detector.Model.eval();
        double update = TimeOptimizerUpdate(options, parameters);
        foreach (var p in parameters)
        {
            p.grad?.zero_();
        }

        if (times.Count == 0)
        {
            return update;
        }

        return (times.Count > 1 ? times.Skip(1).Average() : times[0]) + update;
    }

    private static double TimeOptimizerUpdate(TrainingOptions options, List<TorchSharp.Modules.Parameter> parameters)
    {
        using var scope = NewDisposeScope();
        var copies = parameters.Select((p, i) => ($"p{i}", new TorchSharp.Modules.Parameter(p.detach().clone(), requires_grad: true))).ToList();
        using (var loss = copies.Select(c => c.Item2.square().sum()).Aggregate((a, b) => a + b))
        {
            loss.backward();
        }

        try
        {
            using var optimizer = new AdamW(copies, options.Optimizer);
            optimizer.Step(); // allocates the moments
            var device = parameters[0].device;
            TorchSupport.TorchDevices.Synchronize(device);
            var watch = Stopwatch.StartNew();
            optimizer.Step();
            TorchSupport.TorchDevices.Synchronize(device);
            return watch.Elapsed.TotalSeconds;
        }
        finally
        {
            foreach (var (_, copy) in copies)
            {
                copy.Dispose();
            }
        }
    }
}
