using System.Globalization;
using System.Text.Json;
using UniAD.Core.Metrics;
using UniAD.Core.Weights;
using Xunit.Abstractions;

namespace UniAD.Core.Tests.Parity;

/// <summary>
/// The metrics against fixtures/metrics/* (discovered): <c>official_performances</c> from the UniAD evaluator and
/// <c>reference</c> from scikit-learn and SciPy, per class and over all images. These are exact computations, so
/// every number must agree within 1e-9.
/// </summary>
public sealed class MetricsParityTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-9;

    public static TheoryData<string, string> Cases => Fixtures.Cases("metrics");

    [Theory]
    [MemberData(nameof(Cases))]
    public void Official_performances_match_the_reference_evaluator(string caseName, string source)
    {
        var fixture = MetricsFixture.Load(Fixtures.CaseDirectory("metrics", caseName, source));
        var official = fixture.Expected.GetProperty("official_performances");

        // The reference folds AUROC values below 0.5; the compatibility option reproduces its keys.
        var folded = fixture.BuildReportFromTensors(new MetricsReportOptions { FoldAurocBelowHalf = true }).ReferenceKeys();
        var truth = fixture.BuildReportFromTensors(new MetricsReportOptions()).ReferenceKeys();
        double worst = 0;
        int foldedCount = 0;
        foreach (var entry in official.EnumerateObject())
        {
            Assert.True(folded.TryGetValue(entry.Name, out double actual), $"{caseName}: no value for the reference key '{entry.Name}'");
            double expected = entry.Value.GetDouble(), diff = Math.Abs(actual - expected);
            worst = Math.Max(worst, diff);
            Assert.True(diff <= Tolerance, $"{caseName}: {entry.Name} = {actual:R}, reference {expected:R} (|diff| {diff:E2})");

            // By default the report holds the true AUROC: the same value, or 1 − it for a class below 0.5.
            if (!entry.Name.StartsWith(MetricKeys.MeanRow + "_", StringComparison.Ordinal) && truth[entry.Name] != actual)
            {
                Assert.True(truth[entry.Name] < 0.5 && Math.Abs(truth[entry.Name] - (1 - expected)) <= Tolerance, $"{caseName}: {entry.Name}: true {truth[entry.Name]:R} vs folded {expected:R}");
                foldedCount++;
            }
        }

        Assert.Equal(official.EnumerateObject().Count(), folded.Count);
        output.WriteLine($"[{source}] {caseName}: {folded.Count} official keys, max |diff| {worst:E2}; {foldedCount} class AUROC(s) below 0.5 folded by the reference");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Reference_metrics_match_scikit_learn_and_scipy(string caseName, string source)
    {
        var fixture = MetricsFixture.Load(Fixtures.CaseDirectory("metrics", caseName, source));
        var report = fixture.BuildReportFromSpans(new MetricsReportOptions());
        output.WriteLine(report.ToMarkdown());
        double worst = 0;
        foreach (var group in fixture.Expected.GetProperty("reference").EnumerateObject())
        {
            var keys = group.Value.EnumerateObject().Select(p => p.Name).ToList();
            var images = group.Name == "all"
                ? Enumerable.Range(0, fixture.Count)
                : Enumerable.Range(0, fixture.Count).Where(i => fixture.Classes[i] == group.Name);
            var actual = fixture.Compute(images.ToList(), keys);
            if (group.Name != "all")
            {
                // The report's row for the class holds the same numbers, bit for bit.
                var row = report.Classes.Single(c => c.Name == group.Name).Values;
                foreach (var key in keys)
                {
                    Assert.Equal(actual[key], row[key]);
                }
            }

            foreach (var expected in group.Value.EnumerateObject())
            {
                double diff = Math.Abs(actual[expected.Name] - expected.Value.GetDouble());
                worst = Math.Max(worst, diff);
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{group.Name,-8} {expected.Name,-18} {actual[expected.Name],20:R} reference {expected.Value.GetDouble(),20:R} |diff| {diff:E2}"));
                Assert.True(diff <= Tolerance, $"{caseName}/{group.Name}: {expected.Name} = {actual[expected.Name]:R}, reference {expected.Value.GetDouble():R}");
            }
        }

        output.WriteLine($"[{source}] {caseName}: max |diff| {worst:E2}");
    }

    /// <summary>One metrics case: N x H x W maps and masks, the class of each map, and expected.json.</summary>
    private sealed class MetricsFixture
    {
        private MetricsFixture(float[] maps, float[] masks, int count, int height, int width, string[] classes, JsonElement expected)
        {
            (Maps, Masks, Count, Height, Width, Classes, Expected) = (maps, masks, count, height, width, classes, expected);
        }

        public float[] Maps { get; }

        public float[] Masks { get; }

        public int Count { get; }

        public int Height { get; }

        public int Width { get; }

        public string[] Classes { get; }

        public JsonElement Expected { get; }

        private int Pixels => Height * Width;

        public static MetricsFixture Load(string dir)
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
            var expected = doc.RootElement.Clone();
            using var tensors = StateDict.ReadSafetensors(Path.Combine(dir, "maps.safetensors"));
            var preds = tensors["preds"];
            var masks = tensors["masks"];
            Assert.Equal(3, preds.dim());
            Assert.Equal(preds.shape, masks.shape);
            var classes = expected.GetProperty("classes_in_order").EnumerateArray().Select(e => e.GetString()!).ToArray();
            Assert.Equal(preds.shape[0], classes.Length);
            return new MetricsFixture(preds.data<float>().ToArray(), masks.data<float>().ToArray(), classes.Length, (int)preds.shape[1], (int)preds.shape[2], classes, expected);
        }

        public ReadOnlySpan<float> Map(int i) => Maps.AsSpan(i * Pixels, Pixels);

        public ReadOnlySpan<float> Mask(int i) => Masks.AsSpan(i * Pixels, Pixels);

        /// <summary>Through the tensor overload, all maps in one batch.</summary>
        public MetricsReport BuildReportFromTensors(MetricsReportOptions options)
        {
            var builder = new MetricsReportBuilder(options);
            using var maps = TorchSharp.torch.tensor(Maps, [Count, Height, Width]);
            using var masks = TorchSharp.torch.tensor(Masks, [Count, Height, Width]);
            builder.Add(Classes, maps, masks);
            return builder.Build();
        }

        /// <summary>Through the span overload, one map at a time.</summary>
        public MetricsReport BuildReportFromSpans(MetricsReportOptions options)
        {
            var builder = new MetricsReportBuilder(options);
            for (int i = 0; i < Count; i++)
            {
                builder.Add(Classes[i], Map(i), Mask(i), Height, Width);
            }

            return builder.Build();
        }

        /// <summary>
        /// The metrics named by <paramref name="keys"/> (image_*_&lt;kind&gt;, pixel_*, pixel_aupro_&lt;limit&gt;) over the given
        /// images, from the library's functions directly (image scores, binary metrics, the pixel accumulator).
        /// </summary>
        public Dictionary<string, double> Compute(IReadOnlyList<int> images, IEnumerable<string> keys)
        {
            var pixels = new PixelMetricsAccumulator();
            var scores = new List<ImageScores>();
            var labels = new List<bool>();
            foreach (int i in images)
            {
                pixels.Add(Map(i), Mask(i), Height, Width);
                scores.Add(ImageScoring.Compute(Map(i), Height, Width));
                labels.Add(Mask(i).ToArray().Any(v => v > 0));
            }

            var values = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var kind in ImageScoring.Kinds)
            {
                var m = BinaryClassification.Evaluate(scores.Select(s => s[kind]).ToArray(), labels.ToArray());
                values[MetricKeys.ImageAuroc(kind)] = m.Auroc;
                values[MetricKeys.ImageAveragePrecision(kind)] = m.AveragePrecision;
                values[MetricKeys.ImageF1Max(kind)] = m.F1Max.F1;
            }

            const string auPro = "pixel_aupro_";
            foreach (var key in keys.Where(k => k.StartsWith(auPro, StringComparison.Ordinal)).Append(MetricKeys.PixelAuPro(PixelMetricsAccumulator.DefaultFprLimit)))
            {
                var p = pixels.Compute(double.Parse(key[auPro.Length..], CultureInfo.InvariantCulture));
                values[MetricKeys.PixelAuroc] = p.Auroc;
                values[MetricKeys.PixelAveragePrecision] = p.AveragePrecision;
                values[MetricKeys.PixelF1Max] = p.F1Max.F1;
                values[key] = p.AuPro;
            }

            return values;
        }
    }
}
