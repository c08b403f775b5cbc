using System.Diagnostics;
using System.Globalization;
using UniAD.Core;
using UniAD.Core.Backbones;
using UniAD.Core.Data;
using UniAD.Core.MemoryBank;
using UniAD.Core.Metrics;
using static TorchSharp.torch;


/// <summary>
/// Group <c>memory-bank</c>: the training-free memory-bank model (UniAD.Core.MemoryBank, PatchCore) on every class of the
/// real-defect root, on the NuGet ResNet-18's layers 2 and 3: ONE bank for all classes (the unified setting) and, with
/// <c>--per-class on</c>, one bank per class. Every image is resized to <c>--width W</c> (default 256) with its aspect ratio
/// kept (height rounded to a multiple of 32, per class from its first training image). Options: <c>--ratio R</c> (coreset
/// fraction, default 0.01), <c>--candidates N</c> (random patches the coreset chooses from, default 200000), <c>--sigma S</c>
/// (default 4), <c>--data ROOT</c>. Prints per class image AUROC (max of the smoothed map, and the 16 x 16 pooled max), pixel
/// AUROC, AU-PRO, then fit seconds, scoring ms per image, bank size and peak working set, and the line
/// <c>real-memory-bank CLASS image-auroc X pixel-auroc Y</c>. Test images never choose anything.
/// </summary>
internal static class MemoryBankBenchmarks
{
    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    public static void Run(Func<string, string?> text)
    {
        var root = text("--data") ?? RealBenchmarks.DefaultDataRoot();
        int width = int.Parse(text("--width") ?? "256", Invariant);
        double ratio = double.Parse(text("--ratio") ?? "0.01", Invariant);
        int candidates = int.Parse(text("--candidates") ?? "200000", Invariant);
        double sigma = double.Parse(text("--sigma") ?? "4", Invariant);
        bool perClass = text("--per-class") == "on";
        var train = MvtecAd.Open(root, DatasetSplit.Train);
        var test = MvtecAd.Open(root, DatasetSplit.Test);
        var classes = train.Samples.Select(s => s.ClassName).Distinct().Order(StringComparer.Ordinal).ToList();
        string flags = string.Join(' ', File.ReadAllText("/proc/cpuinfo").Split(new[] { ' ', '\n', '\t' }).Where(f => f == "avx2" || f.StartsWith("avx512", StringComparison.Ordinal)).Distinct().Order());
        Console.WriteLine(string.Create(Invariant, $"memory-bank: {root}, classes {string.Join(", ", classes)}; width {width}, coreset ratio {ratio}, candidates {candidates}, sigma {sigma}; mlnet-resnet18 layers 2, 3; CPU flags {flags}; load average {File.ReadAllText("/proc/loadavg").Trim()}"));

        using var backbone = Backbone.Create(MlNetBackbone.ModelName, new[] { 2, 3 }, MlNetBackbone.FindModelFile());
        var sizes = classes.ToDictionary(c => c, c => WorkingSize(train.Samples.First(s => s.ClassName == c).ImagePath, width));
        var fitClock = Stopwatch.StartNew();
        var patches = classes.ToDictionary(c => c, c => Patches(backbone, train.Samples.Where(s => s.ClassName == c).ToList(), sizes[c]));
        double featureSeconds = fitClock.Elapsed.TotalSeconds;
        Console.WriteLine(string.Create(Invariant, $"features: {string.Join(", ", classes.Select(c => $"{c} {sizes[c].Width} x {sizes[c].Height}, {patches[c].shape[0]} patches of {patches[c].shape[1]}"))} ({featureSeconds:F0} s)"));

        var banks = new List<(string Name, Func<string, PatchMemoryBank> For)>();
        var unifiedClock = Stopwatch.StartNew();
        using var all = cat(patches.Values.ToArray(), 0);
        using var unified = PatchMemoryBank.Fit(all, ratio, seed: 133, maxCandidates: candidates, progress: new Progress<(int Done, int Total)>(p => { if (p.Done % 512 == 0) { Console.Error.WriteLine($"coreset {p.Done}/{p.Total} ({unifiedClock.Elapsed.TotalSeconds:F0} s)"); } }));
        Console.WriteLine(string.Create(Invariant, $"unified bank: {unified.Bank.shape[0]} patches from {Math.Min(all.shape[0], candidates)} candidates of {all.shape[0]} ({unifiedClock.Elapsed.TotalSeconds:F1} s)"));
        double unifiedSeconds = unifiedClock.Elapsed.TotalSeconds + featureSeconds;
        banks.Add(("unified", _ => unified));
        var perClassBanks = new Dictionary<string, PatchMemoryBank>();
        double perClassSeconds = featureSeconds;
        if (perClass)
        {
            var clock = Stopwatch.StartNew();
            foreach (var c in classes)
            {
                perClassBanks[c] = PatchMemoryBank.Fit(patches[c], ratio, seed: 133, maxCandidates: candidates);
            }

            perClassSeconds += clock.Elapsed.TotalSeconds;
            banks.Add(("per-class", c => perClassBanks[c]));
        }

        foreach (var p in patches.Values)
        {
            p.Dispose();
        }

        foreach (var (name, bankFor) in banks)
        {
            var builder = new MetricsReportBuilder(new MetricsReportOptions());
            var scoring = new Stopwatch();
            int images = 0;
            foreach (var c in classes)
            {
                var size = sizes[c];
                var options = new PreprocessOptions { InputSize = size };
                foreach (var chunk in test.Samples.Where(s => s.ClassName == c).Chunk(8))
                {
                    using var scope = NewDisposeScope();
                    scoring.Start();
                    var batch = stack(chunk.Select(s => ImagePreprocessor.LoadImage(s.ImagePath, options)).ToArray());
                    using var noGrad = no_grad();
                    var features = PatchFeatures.Embed(backbone.forward(batch));
                    var maps = PatchMemoryBank.Maps(bankFor(c).PatchScores(features), size.Height, size.Width, sigma);
                    scoring.Stop();
                    images += chunk.Length;
                    var masks = stack(chunk.Select(s => s.MaskPath is null ? zeros(1, size.Height, size.Width, device: CPU) : ImagePreprocessor.LoadMask(s.MaskPath, options)).ToArray());
                    builder.Add(chunk.Select(s => s.ClassName).ToArray(), maps.unsqueeze(1), masks);
                }
            }

            var report = builder.Build();
            long bankBytes = name == "unified" ? unified.Bank.NumberOfElements * 4 : perClassBanks.Values.Sum(b => b.Bank.NumberOfElements * 4);
            Console.WriteLine($"## {name} bank");
            Console.WriteLine("| class | image AUROC (max) | image AUROC (pooled 16) | pixel AUROC | AU-PRO |");
            Console.WriteLine("|---|---|---|---|---|");
            foreach (var row in report.Classes)
            {
                Console.WriteLine(string.Create(Invariant, $"| {row.Name} | {Get(row.Values, MetricKeys.ImageAuroc(ImageScoreKind.PlainMax)):F3} | {Get(row.Values, MetricKeys.ImageAuroc(ImageScoreKind.PooledMax)):F3} | {Get(row.Values, MetricKeys.PixelAuroc):F3} | {Get(row.Values, MetricKeys.PixelAuPro(0.3)):F3} |"));
            }

            foreach (var row in report.Classes)
            {
                Console.WriteLine(string.Create(Invariant, $"real-memory-bank{(name == "unified" ? string.Empty : "-" + name)} {row.Name} image-auroc {Get(row.Values, MetricKeys.ImageAuroc(ImageScoreKind.PlainMax)):F4} pixel-auroc {Get(row.Values, MetricKeys.PixelAuroc):F4}"));
            }

            using var process = Process.GetCurrentProcess();
            Console.WriteLine(string.Create(Invariant, $"{name}: fit {(name == "unified" ? unifiedSeconds : perClassSeconds):F1} s (features {featureSeconds:F1} s), scoring {scoring.Elapsed.TotalMilliseconds / images:F1} ms per image ({images} images, batches of 8, with preprocessing), bank {bankBytes / 1048576.0:F1} MB, peak working set {process.PeakWorkingSet64 / 1048576.0:F0} MB"));
        }

        foreach (var b in perClassBanks.Values)
        {
            b.Dispose();
        }
    }

    private static double Get(IReadOnlyDictionary<string, double> values, string key) => values.TryGetValue(key, out var v) ? v : double.NaN;

    /// <summary>Width <paramref name="width"/>, the height that keeps the first image's aspect ratio, rounded to a multiple of 32 (the backbone's).</summary>
    private static GridSize WorkingSize(string path, int width)
    {
        var size = ImageDecoder.ReadSize(File.ReadAllBytes(path)) ?? throw new InvalidDataException($"'{path}' has no readable header.");
        int height = Math.Max(32, (int)Math.Round(size.Height * (double)width / size.Width / 32) * 32);
        return new GridSize(height, width);
    }

    private static Tensor Patches(FeatureExtractor backbone, IReadOnlyList<ImageSample> samples, GridSize size)
    {
        var options = new PreprocessOptions { InputSize = size };
        var rows = new List<Tensor>();
        foreach (var chunk in samples.Chunk(8))
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var batch = stack(chunk.Select(s => ImagePreprocessor.LoadImage(s.ImagePath, options)).ToArray());
            rows.Add(PatchFeatures.Rows(PatchFeatures.Embed(backbone.forward(batch))).contiguous().MoveToOuterDisposeScope());
        }

        var all = cat(rows.ToArray(), 0);
        rows.ForEach(r => r.Dispose());
        return all;
    }
}
