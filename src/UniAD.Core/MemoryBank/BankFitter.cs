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
public sealed record BankFitReport(int Samples, long Patches, long Candidates, int BankSize, int RequestedBankSize, TimeSpan FeatureTime, TimeSpan CoresetTime)
{
    /// <summary>With per-class banks (<see cref="MemoryBankOptions.PerClassBanks"/>): each class's bank size; null for one bank. The totals above sum over the classes.</summary>
    public IReadOnlyDictionary<string, int>? ClassBankSizes { get; init; }
}

/// <summary>
/// Fitting a <see cref="MemoryBankModel"/>: the patch features of every normal sample (image or tile), an even share of
/// each sample's patches drawn at random (seeded) so that at most <see cref="MemoryBankOptions.MaxCandidates"/> are kept,
/// then the greedy coreset (<see cref="Coreset"/>) of <see cref="MemoryBankOptions.CoresetRatio"/> of them as the bank.
/// Memory is checked before any image is read; a time limit makes the bank smaller rather than the fit longer. With
/// per-class banks each class is fitted in turn as above (its own candidates, ratio and memory check, all checked before
/// the first image is read), and the time left is shared among the classes by their candidates.
/// </summary>
internal static class BankFitter
{
    /// <summary>Bytes the fit needs for <paramref name="candidates"/> patches of <paramref name="width"/> channels: the candidates, the coreset's projection and distance rows, and the bank.</summary>
    public static long RequiredBytes(long candidates, int width, int bankSize) =>
        (candidates * width * 4L) + (candidates * Coreset.ProjectionDimensions * 4L) + (candidates * 4L * 4L) + ((long)bankSize * width * 4L);

    /// <summary>Fits the bank (or the per-class banks) of <paramref name="model"/> on every sample of <paramref name="samples"/> (all normal).</summary>
    /// <exception cref="ArgumentException">The fit would need more memory than <see cref="MemoryBankOptions.MaxFitBytes"/> (the figure is in the message), or (per-class banks) a sample has no class.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public static BankFitReport Fit(MemoryBankModel model, IImageSource samples, LoaderOptions loader, Device device, TimeSpan? timeLimit, ILogger logger, IProgress<(string Stage, int Done, int Total)>? progress, CancellationToken cancellationToken)
    {
        if (!model.Options.PerClassBanks)
        {
            var plan = Plan(model, samples.Samples.Count, samples.Name);
            Func<TimeSpan, TimeSpan>? budget = timeLimit is { } whole ? featureTime => whole - featureTime : null;
            var (bank, report) = FitOne(model, plan, samples, loader, device, budget, logger, progress, string.Empty, cancellationToken);
            using (bank)
            {
                model.SetBank(bank);
            }

            return report;
        }

        var empty = samples.Samples.FirstOrDefault(x => string.IsNullOrWhiteSpace(x.ClassName));
        if (empty is not null)
        {
            throw new ArgumentException($"Per-class memory banks need every training image's class; '{empty.ImagePath}' has none.", nameof(samples));
        }

        var classes = samples.Samples.GroupBy(x => x.ClassName, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => (Name: g.Key, Source: (IImageSource)new ClassSource(samples, g.Key, g.ToList()))).ToList();
        var plans = classes.Select(c => Plan(model, c.Source.Samples.Count, $"class '{c.Name}'")).ToList(); // every class checked before any image is read
        var banks = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var reports = new List<BankFitReport>();
        var clock = Stopwatch.StartNew();
        try
        {
            for (int i = 0; i < classes.Count; i++)
            {
                // This class's coreset gets the time left, less the features of the classes still to come (at the rate
                // measured so far), in proportion to its candidates among the coresets still to come.
                Func<TimeSpan, TimeSpan>? budget = null;
                if (timeLimit is { } limit)
                {
                    int index = i;
                    budget = featureTime =>
                    {
                        int doneSamples = reports.Sum(r => r.Samples) + plans[index].Samples;
                        double perSample = (reports.Sum(r => r.FeatureTime.TotalSeconds) + featureTime.TotalSeconds) / doneSamples;
                        double left = (limit - clock.Elapsed).TotalSeconds - (perSample * plans.Skip(index + 1).Sum(p => p.Samples));
                        double fraction = plans[index].Candidates / (double)plans.Skip(index).Sum(p => p.Candidates);
                        return TimeSpan.FromSeconds(Math.Max(0, left) * fraction);
                    };
                }

                var (bank, report) = FitOne(model, plans[i], classes[i].Source, loader, device, budget, logger, progress, $" of class '{classes[i].Name}'", cancellationToken);
                banks[classes[i].Name] = bank;
                reports.Add(report);
            }

            model.SetClassBanks(banks);
        }
        finally
        {
            foreach (var b in banks.Values)
            {
                b.Dispose();
            }
        }

        return new BankFitReport(
            reports.Sum(r => r.Samples), reports.Sum(r => r.Patches), reports.Sum(r => r.Candidates), reports.Sum(r => r.BankSize), reports.Sum(r => r.RequestedBankSize),
            TimeSpan.FromTicks(reports.Sum(r => r.FeatureTime.Ticks)), TimeSpan.FromTicks(reports.Sum(r => r.CoresetTime.Ticks)))
        {
            ClassBankSizes = classes.Select((c, i) => (c.Name, reports[i].BankSize)).ToDictionary(x => x.Name, x => x.BankSize, StringComparer.Ordinal),
        };
    }

    /// <summary>One bank's sizes: samples, each sample's share of its patches, candidates and the requested bank; memory checked.</summary>
    private static FitPlan Plan(MemoryBankModel model, int n, string what)
    {
        var options = model.Options;
        int perSample = model.PatchGrid.Count;
        int share = (int)Math.Min(perSample, Math.Max(1, (options.MaxCandidates + n - 1) / (long)Math.Max(1, n)));
        long candidates = (long)n * share;
        int requested = (int)Math.Max(1, Math.Round(options.CoresetRatio * candidates));
        long bytes = RequiredBytes(candidates, model.FeatureWidth, requested);
        if (bytes > options.MaxFitBytes)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"The memory bank's fit ({what}) would need {bytes / (1024.0 * 1024):F0} MiB ({candidates:N0} candidate patches of {model.FeatureWidth} channels from {n:N0} samples), more than MemoryBank.MaxFitBytes = {options.MaxFitBytes / (1024.0 * 1024):F0} MiB. Lower MemoryBank.MaxCandidates or raise MaxFitBytes."));
        }

        return new FitPlan(n, perSample, share, candidates, requested, bytes);
    }

    /// <summary>
    /// Features, candidates and coreset of one bank; the bank (the caller's to dispose) and the report.
    /// <paramref name="coresetBudget"/> gives the coreset's time from the features' time (null: no limit).
    /// </summary>
    private static (Tensor Bank, BankFitReport Report) FitOne(MemoryBankModel model, FitPlan plan, IImageSource samples, LoaderOptions loader, Device device, Func<TimeSpan, TimeSpan>? coresetBudget, ILogger logger, IProgress<(string Stage, int Done, int Total)>? progress, string what, CancellationToken cancellationToken)
    {
        var options = model.Options;
        int n = plan.Samples, share = plan.Share, perSample = plan.PerSample;
        logger.LogInformation("Fitting a memory bank{What}: {Samples} samples x {Share} of {PerSample} patches = {Candidates} candidates ({Bytes:F0} MiB), coreset ratio {Ratio}.", what, n, share, perSample, plan.Candidates, plan.Bytes / (1024.0 * 1024), options.CoresetRatio);
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
                    progress?.Report(("features" + what, done, n));
                }
            }

            var featureTime = clock.Elapsed;
            using var all = cat(rows, 0);
            foreach (var r in rows)
            {
                r.Dispose();
            }

            rows.Clear();
            int count = Math.Min(plan.Requested, (int)all.shape[0]);
            if (coresetBudget is not null)
            {
                count = WithinTime(all, count, coresetBudget(featureTime), logger);
            }

            var coresetClock = Stopwatch.StartNew();
            var chosenRows = Coreset.Select(all, count, options.Seed, progress is null ? null : new Progress<(int Done, int Total)>(p => progress.Report(("coreset" + what, p.Done, p.Total))), cancellationToken);
            Tensor bank;
            using (var scope = NewDisposeScope())
            {
                bank = all.index_select(0, tensor(chosenRows, device: all.device)).DetachFromDisposeScope();
            }

            logger.LogInformation("Memory bank{What}: {Bank} patches from {Candidates} candidates (features {Features:F1} s, coreset {Coreset:F1} s).", what, count, all.shape[0], featureTime.TotalSeconds, coresetClock.Elapsed.TotalSeconds);
            return (bank, new BankFitReport(n, (long)n * perSample, all.shape[0], count, plan.Requested, featureTime, coresetClock.Elapsed));
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

    /// <summary>The sizes of one bank's fit.</summary>
    private sealed record FitPlan(int Samples, int PerSample, int Share, long Candidates, int Requested, long Bytes);

    /// <summary>One class's samples of a source; images and content keys come from the source (tiles stay tiles).</summary>
    private sealed class ClassSource(IImageSource inner, string className, IReadOnlyList<ImageSample> samples) : IImageSource
    {
        public string Name => $"{inner.Name} (class '{className}')";

        public IReadOnlyList<ImageSample> Samples => samples;

        public RgbImage ReadImage(ImageSample sample, long maxPixels) => inner.ReadImage(sample, maxPixels);

        public string ContentKey(ImageSample sample) => inner.ContentKey(sample);
    }
}
