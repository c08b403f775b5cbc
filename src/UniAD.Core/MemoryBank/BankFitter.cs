using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using static TorchSharp.torch;

namespace UniAD.Core.MemoryBank;

/// <summary>What a fit did: candidates drawn, bank size, and the time of each stage.</summary>
/// <param name="Samples">Images (or tiles) the patches came from.</param>
/// <param name="Patches">Normal patches those samples hold.</param>
/// <param name="Candidates">Patches the coreset chose from.</param>
/// <param name="BankSize">Patches in the bank.</param>
/// <param name="RequestedBankSize">The bank size the ratio asked for (larger than <paramref name="BankSize"/> when a time limit cut it).</param>
/// <param name="FeatureTime">Time to extract the features.</param>
/// <param name="CoresetTime">Time of the coreset.</param>
public sealed record BankFitReport(int Samples, long Patches, long Candidates, int BankSize, int RequestedBankSize, TimeSpan FeatureTime, TimeSpan CoresetTime);

/// <summary>
/// Fitting a <see cref="MemoryBankModel"/>: the patch features of every normal sample (image or tile), an even share of
/// each sample's patches drawn at random (seeded) so that at most <see cref="MemoryBankOptions.MaxCandidates"/> are kept,
/// then the greedy coreset (<see cref="Coreset"/>) of <see cref="MemoryBankOptions.CoresetRatio"/> of them as the bank.
/// Memory is checked before any image is read; a time limit makes the bank smaller rather than the fit longer.
/// </summary>
internal static class BankFitter
{
    /// <summary>Bytes the fit needs for <paramref name="candidates"/> patches of <paramref name="width"/> channels: the candidates, the coreset's projection and distance rows, and the bank.</summary>
    public static long RequiredBytes(long candidates, int width, int bankSize) =>
        (candidates * width * 4L) + (candidates * Coreset.ProjectionDimensions * 4L) + (candidates * 4L * 4L) + ((long)bankSize * width * 4L);

    /// <summary>Fits the bank of <paramref name="model"/> on every sample of <paramref name="samples"/> (all normal).</summary>
    /// <exception cref="ArgumentException">The fit would need more memory than <see cref="MemoryBankOptions.MaxFitBytes"/> (the figure is in the message).</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public static BankFitReport Fit(MemoryBankModel model, IImageSource samples, LoaderOptions loader, Device device, TimeSpan? timeLimit, ILogger logger, IProgress<(string Stage, int Done, int Total)>? progress, CancellationToken cancellationToken)
    {
        var options = model.Options;
        int n = samples.Samples.Count;
        var grid = model.PatchGrid;
        int perSample = grid.Count;
        long patches = (long)n * perSample;
        int share = (int)Math.Min(perSample, Math.Max(1, (options.MaxCandidates + n - 1) / (long)Math.Max(1, n)));
        long candidates = (long)n * share;
        int requested = (int)Math.Max(1, Math.Round(options.CoresetRatio * candidates));
        long bytes = RequiredBytes(candidates, model.FeatureWidth, requested);
        if (bytes > options.MaxFitBytes)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"The memory bank's fit would need {bytes / (1024.0 * 1024):F0} MiB ({candidates:N0} candidate patches of {model.FeatureWidth} channels from {n:N0} samples), more than MemoryBank.MaxFitBytes = {options.MaxFitBytes / (1024.0 * 1024):F0} MiB. Lower MemoryBank.MaxCandidates or raise MaxFitBytes."));
        }

        logger.LogInformation("Fitting a memory bank: {Samples} samples x {Share} of {PerSample} patches = {Candidates} candidates ({Bytes:F0} MiB), coreset ratio {Ratio}.", n, share, perSample, candidates, bytes / (1024.0 * 1024), options.CoresetRatio);
        var clock = Stopwatch.StartNew();
        var rows = new List<Tensor>();
        try
        {
            using var generator = new Generator(unchecked((ulong)options.Seed ^ 0xBA4CUL));
            int done = 0;
            foreach (var batch in new ImageBatchLoader(samples, loader with { Shuffle = false, LoadMasks = false }).Batches(cancellationToken: cancellationToken))
            {
                using (batch)
                using (var scope = NewDisposeScope())
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var features = PatchFeatures.Rows(model.Embed(batch.Images.to(device)));
                    int b = batch.Paths.Count;
                    if (share < perSample)
                    {
                        // An even share of each sample's patches, drawn without replacement.
                        var picks = new long[b * share];
                        for (int j = 0; j < b; j++)
                        {
                            var local = randperm(perSample, generator: generator, device: CPU).narrow(0, 0, share).data<long>().ToArray();
                            for (int k = 0; k < share; k++)
                            {
                                picks[(j * share) + k] = ((long)j * perSample) + local[k];
                            }
                        }

                        features = features.index_select(0, tensor(picks, device: features.device));
                    }

                    rows.Add(features.MoveToOuterDisposeScope());
                    done += b;
                    progress?.Report(("features", done, n));
                }
            }

            var featureTime = clock.Elapsed;
            using var all = cat(rows, 0);
            foreach (var r in rows)
            {
                r.Dispose();
            }

            rows.Clear();
            int count = Math.Min(requested, (int)all.shape[0]);
            if (timeLimit is { } limit)
            {
                count = WithinTime(all, count, limit - featureTime, logger);
            }

            var coresetClock = Stopwatch.StartNew();
            var chosenRows = Coreset.Select(all, count, options.Seed, progress is null ? null : new Progress<(int Done, int Total)>(p => progress.Report(("coreset", p.Done, p.Total))), cancellationToken);
            using (var scope = NewDisposeScope())
            {
                model.SetBank(all.index_select(0, tensor(chosenRows, device: all.device)));
            }

            logger.LogInformation("Memory bank: {Bank} patches from {Candidates} candidates (features {Features:F1} s, coreset {Coreset:F1} s).", count, all.shape[0], featureTime.TotalSeconds, coresetClock.Elapsed.TotalSeconds);
            return new BankFitReport(n, patches, all.shape[0], count, requested, featureTime, coresetClock.Elapsed);
        }
        finally
        {
            foreach (var r in rows)
            {
                r.Dispose();
            }
        }
    }

    /// <summary>
    /// The bank size the coreset reaches in <paramref name="remaining"/>: its cost per pick (one distance row over all
    /// candidates) measured on a few rows; <paramref name="count"/> when it fits, else fewer (at least one) with a warning.
    /// </summary>
    private static int WithinTime(Tensor candidates, int count, TimeSpan remaining, ILogger logger)
    {
        const int Probe = 8;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var clock = Stopwatch.StartNew();
        var projected = candidates.narrow(1, 0, Math.Min(Coreset.ProjectionDimensions, candidates.shape[1])); // the coreset measures distances in its projection
        var probe = projected.narrow(0, 0, Math.Min(Probe, candidates.shape[0]));
        _ = NearestNeighbour.SquaredDistances(probe, projected).amin(0).sum().cpu().item<float>();
        double perPick = clock.Elapsed.TotalSeconds / probe.shape[0];
        int affordable = (int)Math.Clamp(remaining.TotalSeconds / Math.Max(perPick, 1e-9), 1, count);
        if (affordable < count)
        {
            logger.LogWarning("The coreset of {Count} patches would take about {Seconds:F0} s, beyond the time left ({Remaining:F0} s): the bank gets {Affordable} patches.", count, count * perPick, remaining.TotalSeconds, affordable);
        }

        return affordable;
    }
}
