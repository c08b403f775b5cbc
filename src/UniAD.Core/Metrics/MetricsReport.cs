using System.Globalization;
using System.Text;
using System.Text.Json;
using MathNet.Numerics.Statistics;

namespace UniAD.Core.Metrics;

/// <summary>
/// Metrics per class and their mean over classes, as built by <see cref="MetricsReportBuilder"/>; rendered as a
/// Markdown table (<see cref="ToMarkdown"/>) or JSON (<see cref="ToJson"/>), and available under the reference
/// evaluator's key names (<see cref="ReferenceKeys"/>).
/// </summary>
public sealed class MetricsReport
{
    internal MetricsReport(MetricsReportOptions options, IReadOnlyList<ClassMetrics> classes, IEnumerable<string> notes)
    {
        Options = options;
        Classes = classes;
        var allNotes = notes.ToList();
        var rows = classes.Select(c => (c.Name, c.Values)).ToList();
        var mean = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var key in rows.SelectMany(r => r.Values.Keys).Distinct(StringComparer.Ordinal))
        {
            var defined = rows.Where(r => r.Values.TryGetValue(key, out double v) && !double.IsNaN(v)).ToList();
            var left = rows.Where(r => !defined.Contains(r)).Select(r => r.Name).ToList();
            mean[key] = defined.Count == 0 ? double.NaN : defined.Select(r => r.Values[key]).Mean();
            if (left.Count > 0)
            {
                allNotes.Add($"mean {key}: over {defined.Count} of {rows.Count} classes; left out (no value): {string.Join(", ", left)}");
            }
        }

        Mean = mean;
        Notes = allNotes;
    }

    /// <summary>The settings the report was built with.</summary>
    public MetricsReportOptions Options { get; }

    /// <summary>One row per class, in the order the classes were first added.</summary>
    public IReadOnlyList<ClassMetrics> Classes { get; }

    /// <summary>
    /// The mean over classes of each metric (<see cref="MetricKeys"/> names; F1-max without a threshold). A class
    /// without a value for a metric (NaN, or no pixel data) is left out of that mean and named in <see cref="Notes"/>;
    /// the mean is NaN only when no class has a value.
    /// </summary>
    public IReadOnlyDictionary<string, double> Mean { get; }

    /// <summary>Explanations of every undefined value, every folded AUROC and every mean over fewer than all classes.</summary>
    public IReadOnlyList<string> Notes { get; }

    /// <summary>
    /// The reference evaluator's keys: <c>&lt;class&gt;_&lt;max|mean|std&gt;_auc</c> (image AUROC of the pooled max,
    /// mean and standard deviation), <c>&lt;class&gt;_pixel_auc</c> when pixel metrics exist, and the same with
    /// <c>mean</c> as the class for the mean over classes. Values follow
    /// <see cref="MetricsReportOptions.FoldAurocBelowHalf"/>: compare with published logs only with it on.
    /// </summary>
    public IReadOnlyDictionary<string, double> ReferenceKeys()
    {
        var keys = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var (name, values) in Classes.Select(c => (c.Name, c.Values)).Append((MetricKeys.MeanRow, Mean)))
        {
            foreach (var kind in new[] { ImageScoreKind.PooledMax, ImageScoreKind.Mean, ImageScoreKind.Std })
            {
                if (values.TryGetValue(MetricKeys.ImageAuroc(kind), out double v))
                {
                    keys[MetricKeys.ReferenceAuroc(name, kind)] = v;
                }
            }

            if (values.TryGetValue(MetricKeys.PixelAuroc, out double pixel))
            {
                keys[MetricKeys.ReferencePixelAuroc(name)] = pixel;
            }
        }

        return keys;
    }

    /// <summary>
    /// Two Markdown tables (image level: AUROC, AP and F1-max of each image score; pixel level: AUROC, AP, F1-max and
    /// AU-PRO) with one row per class and a final mean row, then the notes. Undefined values print as <c>n/a</c>.
    /// </summary>
    /// <param name="decimals">Digits after the decimal point, 0 to 15 (papers compare to three).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="decimals"/> is outside 0..15.</exception>
    public string ToMarkdown(int decimals = 3)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(decimals);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(decimals, 15);
        string Cell(IReadOnlyDictionary<string, double> values, string key) =>
            values.TryGetValue(key, out double v) && !double.IsNaN(v) ? v.ToString("F" + decimals, CultureInfo.InvariantCulture) : "n/a";

        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"AUROC: {(Options.FoldAurocBelowHalf ? "values below 0.5 folded to 1 − AUROC (reference evaluator's convention)" : "true values")}; pooled max: {Options.WindowHeight} x {Options.PoolSize} average pooling, stride 1.\n\n");

        var imageKeys = ImageScoring.Kinds.SelectMany(k => new[] { MetricKeys.ImageAuroc(k), MetricKeys.ImageAveragePrecision(k), MetricKeys.ImageF1Max(k) }).ToList();
        var imageHeaders = ImageScoring.Kinds.SelectMany(k => new[] { "AUROC", "AP", "F1-max" }.Select(m => $"{m} ({ImageScoring.Name(k)})"));
        sb.Append("### Image level\n\n");
        AppendTable(sb, ["class", "images", "anomalous", .. imageHeaders], Classes.Select(c => (IEnumerable<string>)[c.Name, Count(c.Images), Count(c.AnomalousImages), .. imageKeys.Select(k => Cell(c.Values, k))])
            .Append([MetricKeys.MeanRow, Count(Classes.Sum(c => c.Images)), Count(Classes.Sum(c => c.AnomalousImages)), .. imageKeys.Select(k => Cell(Mean, k))]));

        if (Classes.Any(c => c.Pixel is not null))
        {
            var pixelKeys = new[] { MetricKeys.PixelAuroc, MetricKeys.PixelAveragePrecision, MetricKeys.PixelF1Max, MetricKeys.PixelAuPro(Options.FprLimit) };
            string limit = Options.FprLimit.ToString("R", CultureInfo.InvariantCulture);
            sb.Append("\n### Pixel level\n\n");
            AppendTable(sb, ["class", "AUROC", "AP", "F1-max", $"AU-PRO (FPR ≤ {limit})"], Classes.Select(c => (IEnumerable<string>)[c.Name, .. pixelKeys.Select(k => Cell(c.Values, k))])
                .Append([MetricKeys.MeanRow, .. pixelKeys.Select(k => Cell(Mean, k))]));
        }

        if (Notes.Count > 0)
        {
            sb.Append("\nNotes:\n\n");
            foreach (var note in Notes)
            {
                sb.Append("- ").Append(note).Append('\n');
            }
        }

        return sb.ToString();
    }

    /// <summary>
    /// The report as JSON: <c>options</c>, <c>classes</c> (name, image counts including
    /// <c>anomalous_images_without_mask</c>, pixel counts, <c>metrics</c> by
    /// <see cref="MetricKeys"/> name, F1-max <c>thresholds</c>), <c>mean</c>, <c>reference_keys</c> and
    /// <c>notes</c>. Numbers are written in shortest round-trip form; undefined values are <c>null</c>.
    /// </summary>
    /// <param name="indented">Pretty-print (default) or write one line.</param>
    public string ToJson(bool indented = true)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = indented }))
        {
            w.WriteStartObject();
            w.WriteStartObject("options");
            w.WriteNumber("pool_size", Options.PoolSize);
            if (Options.PoolHeight is { } poolHeight)
            {
                w.WriteNumber("pool_height", poolHeight);
            }
            w.WriteNumber("fpr_limit", Options.FprLimit);
            w.WriteBoolean("au_pro", Options.ComputeAuPro);
            w.WriteBoolean("fold_auroc_below_half", Options.FoldAurocBelowHalf);
            w.WriteEndObject();
            w.WriteStartArray("classes");
            foreach (var c in Classes)
            {
                w.WriteStartObject();
                w.WriteString("name", c.Name);
                w.WriteNumber("images", c.Images);
                w.WriteNumber("anomalous_images", c.AnomalousImages);
                w.WriteNumber("anomalous_images_without_mask", c.AnomalousImagesWithoutMask);
                if (c.Pixel is { } p)
                {
                    w.WriteNumber("normal_pixels", p.NormalPixels);
                    w.WriteNumber("anomalous_pixels", p.AnomalousPixels);
                    w.WriteNumber("regions", p.Regions);
                }

                WriteValues(w, "metrics", c.Values);
                var thresholds = ImageScoring.Kinds.Where(c.Image.ContainsKey).Select(k => (MetricKeys.ImageF1Max(k), c.Image[k].F1Max.Threshold));
                if (c.Pixel is { } px)
                {
                    thresholds = thresholds.Append((MetricKeys.PixelF1Max, px.F1Max.Threshold));
                }

                WriteValues(w, "thresholds", thresholds.ToDictionary(t => t.Item1, t => t.Item2));
                w.WriteEndObject();
            }

            w.WriteEndArray();
            WriteValues(w, "mean", Mean);
            WriteValues(w, "reference_keys", ReferenceKeys());
            w.WriteStartArray("notes");
            foreach (var note in Notes)
            {
                w.WriteStringValue(note);
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static string Count(int n) => n.ToString(CultureInfo.InvariantCulture);

    private static void AppendTable(StringBuilder sb, IReadOnlyList<string> headers, IEnumerable<IEnumerable<string>> rows)
    {
        sb.Append("| ").AppendJoin(" | ", headers).Append(" |\n");
        sb.Append('|').AppendJoin('|', headers.Select((_, i) => i == 0 ? "---" : "---:")).Append("|\n");
        foreach (var row in rows)
        {
            sb.Append("| ").AppendJoin(" | ", row).Append(" |\n");
        }
    }

    private static void WriteValues(Utf8JsonWriter w, string name, IReadOnlyDictionary<string, double> values)
    {
        w.WriteStartObject(name);
        foreach (var (key, value) in values)
        {
            if (double.IsFinite(value))
            {
                w.WriteNumber(key, value);
            }
            else
            {
                w.WriteNull(key);
            }
        }

        w.WriteEndObject();
    }
}
