using System.Diagnostics;
using System.Globalization;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;
using UniAD.Core.Tiling;

/// <summary>
/// The memory-bank family (<see cref="DetectorPreset.MemoryBank"/>) through the detector, as users run it: fit on the
/// normal training images (tiled at the working width), calibrated on held-out normal training images (1 % false alarms),
/// evaluated on the test split. Group <c>memory-bank</c> runs it alone on the real root (<c>--data ROOT</c>); group
/// <c>real</c> runs it beside UniAD on the same data. Options: <c>--bank-width W</c> (the working width, default the
/// preset's), <c>--ratio R</c> (coreset fraction, default the preset's 0.01), <c>--candidates N</c> (default 200,000),
/// <c>--sigma S</c> (default 4), <c>--per-class on</c> (then a second detector with one bank per class,
/// <see cref="UniAD.Core.MemoryBank.MemoryBankOptions.PerClassBanks"/>, on the same data; its lines read <c>real-memory-bank-per-class</c>). Prints per class image / pixel AUROC and
/// AU-PRO, fit seconds, scoring ms per image at batch 1, model size and peak working set, and
/// <c>real-memory-bank CLASS image-auroc X pixel-auroc Y</c>. Test images never choose anything.
/// </summary>
internal static class MemoryBankBenchmarks
{
    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    /// <summary>The fit settings of a run.</summary>
    internal sealed record Settings(int Width, double Ratio, int Candidates, double Sigma)
    {
        public static Settings From(Func<string, string?> text) => new(
            int.Parse(text("--bank-width") ?? DetectorPreset.MemoryBankWidth.ToString(Invariant), Invariant),
            double.Parse(text("--ratio") ?? "0.01", Invariant),
            int.Parse(text("--candidates") ?? "200000", Invariant),
            double.Parse(text("--sigma") ?? "4", Invariant));
    }

    public static void Run(Func<string, string?> text)
    {
        var root = text("--data") ?? RealBenchmarks.DefaultDataRoot();
        var all = MvtecAd.Open(root, DatasetSplit.Train);
        var test = MvtecAd.Open(root, DatasetSplit.Test);
        var (train, heldOut) = DataSplits.HoldOutNormal(all, 0.2, 133);
        var classes = all.Samples.Select(s => s.ClassName).Distinct().Order(StringComparer.Ordinal).ToList();
        Evaluate(train, heldOut, test, classes, Settings.From(text), text("--per-class") == "on", seed: 133, label: "real-memory-bank");
    }

    /// <summary>One bank for all classes of <paramref name="train"/> (and, with <paramref name="perClass"/>, a detector with one bank per class): fit, calibrate, evaluate, print.</summary>
    internal static void Evaluate(ImageSource train, ImageSource heldOut, ImageSource test, IReadOnlyList<string> realClasses, Settings settings, bool perClass, long seed, string label)
    {
        string flags = CpuFlags();
        Console.WriteLine(string.Create(Invariant, $"memory bank ({label}): classes {string.Join(", ", train.Samples.Select(s => s.ClassName).Distinct())}; {train.Samples.Count} training, {heldOut.Samples.Count} held-out normal, {test.Samples.Count} test images; images {settings.Width} wide, 256 tiles every 192 (margin 32), coreset ratio {settings.Ratio}, candidates {settings.Candidates}, sigma {settings.Sigma}; {DetectorPreset.CpuBackbone} layers 2, 3; CPU flags {flags}; load average {File.ReadAllText("/proc/loadavg").Trim()}"));
        Fit(train, heldOut, test, realClasses, settings, perClass: false, seed, label, "unified");
        if (perClass)
        {
            Fit(train, heldOut, test, realClasses, settings, perClass: true, seed, label + "-per-class", "per-class");
        }
    }

    private static void Fit(ImageSource train, ImageSource heldOut, ImageSource test, IReadOnlyList<string> realClasses, Settings settings, bool perClass, long seed, string label, string name)
    {
        using var peak = new PeakMemory();
        using var detector = DetectorPreset.MemoryBank()
            .WithTiling(new TilingOptions { ResizeWidth = settings.Width, Stride = new UniAD.Core.GridSize(192, 192), Margin = DetectorPreset.CpuTileMargin })
            .WithMemoryBank(o => o with { CoresetRatio = settings.Ratio, MaxCandidates = settings.Candidates, Sigma = settings.Sigma, PerClassBanks = perClass })
            .WithSeed(seed)
            .Build();
        var clock = Stopwatch.StartNew();
        detector.Train(train, new TrainingOptions { BatchSize = 8 });
        var fitTime = clock.Elapsed;
        var fit = detector.LastFit!;
        long fitPeak = peak.Peak;
        detector.Calibrate(heldOut, new CalibrationOptions { Method = CalibrationMethod.FalseAlarmRate, FalseAlarmRate = 0.01, MinimumNormalImages = 1 });
        string file = Path.Combine(Path.GetTempPath(), $"uniad-bank-{Guid.NewGuid():N}.safetensors");
        detector.Save(file);
        long size = new FileInfo(file).Length;
        File.Delete(file);

        var evaluation = Stopwatch.StartNew();
        var report = detector.Evaluate(test);
        var imageKey = MetricKeys.ImageAuroc(detector.Options.ScoreKind);
        string sizes = fit.ClassBankSizes is { } bySize ? $" ({string.Join(", ", bySize.Select(kv => $"{kv.Key} {kv.Value}"))})" : string.Empty;
        Console.WriteLine(string.Create(Invariant, $"## {name} bank: {fit.BankSize} patches{sizes} of {fit.Candidates} candidates from {fit.Samples} tiles ({fit.Patches} patches); fit {fitTime.TotalMinutes:F2} min (features {fit.FeatureTime.TotalSeconds:F0} s, coreset {fit.CoresetTime.TotalSeconds:F0} s), peak working set during the fit {fitPeak / 1048576.0:F0} MB; model file {size / 1048576.0:F1} MB; evaluation {evaluation.Elapsed.TotalSeconds:F0} s"));
        Console.WriteLine($"| class | image AUROC ({ImageScoring.Name(detector.Options.ScoreKind)}, the preset's) | image AUROC (pooled 16 x 16) | image AUROC (top 1 % mean) | pixel AUROC | AU-PRO | scoring ms per image (batch 1, median of 10, with decoding) |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
        foreach (var row in report.Classes)
        {
            var images = test.Samples.Where(s => s.ClassName == row.Name).Take(11).Select(s => s.ImagePath).ToList();
            detector.Score(images[0], row.Name); // warm-up
            var times = images.Skip(1).Select(p => { var w = Stopwatch.StartNew(); detector.Score(p, row.Name); return w.Elapsed.TotalMilliseconds; }).Order().ToList();
            double median = times.Count == 0 ? double.NaN : times[times.Count / 2];
            Console.WriteLine(string.Create(Invariant, $"| {row.Name} | {Get(row.Values, imageKey):F3} | {Get(row.Values, MetricKeys.ImageAuroc(ImageScoreKind.PooledMax)):F3} | {Get(row.Values, MetricKeys.ImageAuroc(ImageScoreKind.TopMean)):F3} | {Get(row.Values, MetricKeys.PixelAuroc):F3} | {Get(row.Values, MetricKeys.PixelAuPro(0.3)):F3} | {median:F0} |"));
        }

        foreach (var row in report.Classes.Where(c => realClasses.Contains(c.Name)))
        {
            Console.WriteLine(string.Create(Invariant, $"{label} {row.Name} image-auroc {Get(row.Values, imageKey):F3} pixel-auroc {Get(row.Values, MetricKeys.PixelAuroc):F3}"));
        }
    }

    /// <summary>The CPU's vector flags every figure names (<c>avx2</c>, <c>avx512*</c>), from /proc/cpuinfo.</summary>
    internal static string CpuFlags() =>
        string.Join(' ', File.ReadAllText("/proc/cpuinfo").Split(new[] { ' ', '\n', '\t' }).Where(f => f == "avx2" || f.StartsWith("avx512", StringComparison.Ordinal)).Distinct().Order());

    private static double Get(IReadOnlyDictionary<string, double> values, string key) => values.TryGetValue(key, out var v) ? v : double.NaN;

    /// <summary>The largest working set seen while it lives (sampled every 100 ms).</summary>
    private sealed class PeakMemory : IDisposable
    {
        private readonly Timer timer;
        private long peak;

        public PeakMemory()
        {
            timer = new Timer(_ => Sample(), null, 0, 100);
        }

        public long Peak
        {
            get
            {
                Sample();
                return Interlocked.Read(ref peak);
            }
        }

        public void Dispose() => timer.Dispose();

        private void Sample()
        {
            using var process = Process.GetCurrentProcess();
            long now = process.WorkingSet64;
            long seen;
            while (now > (seen = Interlocked.Read(ref peak)) && Interlocked.CompareExchange(ref peak, now, seen) != seen)
            {
            }
        }
    }
}
