using System.Diagnostics;
using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using UniAD.Core.MemoryBank;
using UniAD.Core.Metrics;

namespace UniAD.Core.Detection;

/// <summary>
/// Memory-bank fitting through the detector: <see cref="BankFitter"/> over the normal samples, then the checkpoint and the
/// validation evaluation once, reported as a <see cref="TrainingResult"/>.
/// </summary>
internal static class BankFitting
{
    /// <summary>
    /// The memory-bank family's <see cref="AnomalyDetector.Train"/>: one pass over the normal samples fits the bank (<see cref="BankFitter"/>);
    /// nothing is trained, so epochs, learning rates and resuming do not apply. The checkpoint is written once and the
    /// validation set evaluated once.
    /// </summary>
    public static TrainingResult Fit(AnomalyDetector detector, MemoryBankModel model, IImageSource samples, TrainingOptions options, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        if (options.ResumeFrom is { } resume)
        {
            throw new ArgumentException($"ResumeFrom = '{resume}': a memory bank is fitted in one pass and has nothing to resume; fit again.", nameof(options));
        }

        var clock = Stopwatch.StartNew();
        var loader = new LoaderOptions { BatchSize = options.BatchSize, Preprocess = detector.Preprocess, OnBadInput = options.OnBadInput };
        var limit = model.Options.CoresetTimeLimit ?? options.TimeBudget;
        var report = BankFitter.Fit(
            model, samples, loader, detector.Device, limit, detector.Logger,
            progress is null ? null : new Progress<(string Stage, int Done, int Total)>(p => progress.Report(new TrainingProgress(p.Stage, 0, 0, p.Done, p.Total, double.NaN, 0, clock.Elapsed))),
            cancellationToken);
        detector.LastFit = report;
        string? checkpoint = null;
        if (options.CheckpointPath is { } path)
        {
            DetectorCheckpoint.Save(detector, path, optimizer: null);
            checkpoint = path;
        }

        MetricsReport? validation = null;
        string? failure = null;
        if (options.Validation is { } validationSource && validationSource.Samples.Any(s => s.IsAnomalous))
        {
            try
            {
                progress?.Report(new TrainingProgress("evaluation", 0, 0, 0, 0, double.NaN, 0, clock.Elapsed));
                validation = detector.Evaluate(validationSource, cancellationToken: cancellationToken);
            }
            catch (Exception ex) when (ex is IOException or InvalidDataException or ArgumentException)
            {
                failure = ex.Message;
                detector.Logger.LogError(ex, "Validation failed ({Message}); the fitted bank is kept.", ex.Message);
            }
        }

        double? pixel = validation is not null && validation.Mean.TryGetValue(MetricKeys.PixelAuroc, out var v) ? v : null;
        return new TrainingResult(detector.EpochsTrained, Array.Empty<double>(), validation, pixel, checkpoint, clock.Elapsed)
        {
            StopReason = report.BankSize < report.RequestedBankSize ? TrainingStopReason.TimeBudget : TrainingStopReason.Fitted,
            ValidationFailure = failure,
        };
    }
}
