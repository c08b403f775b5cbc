using System.Text.Json;
using UniAD.Core.Metrics;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Metrics;

public sealed class MetricsReportTests
{
    private const int Side = 4;
    private static readonly MetricsReportOptions Pool2 = new() { PoolSize = 2 };

    [Fact]
    public void Rows_hold_the_metrics_of_each_class_and_the_mean_covers_the_defined_ones()
    {
        var report = BuildTwoClasses(Pool2);
        var a = report.Classes[0];

        Assert.Equal(["a", "b"], report.Classes.Select(c => c.Name));
        Assert.Equal((4, 2), (a.Images, a.AnomalousImages));
        // Anomalous maps are zeros with a 2 x 2 block of ones; normal maps are constant 0.5 and 0.4.
        Assert.Equal(1.0, a.Values[MetricKeys.ImageAuroc(ImageScoreKind.PooledMax)]);
        Assert.Equal(0.0, a.Values[MetricKeys.ImageAuroc(ImageScoreKind.Mean)]);  // means 0.25 < 0.4, 0.5: reversed
        Assert.Equal(0.5, a.Values[MetricKeys.ImageAveragePrecision(ImageScoreKind.Mean)], 1e-15);
        Assert.Equal(2.0 / 3, a.Values[MetricKeys.ImageF1Max(ImageScoreKind.Mean)], 1e-15);
        Assert.Equal(1.0, a.Values[MetricKeys.ImageAuroc(ImageScoreKind.Std)]);
        Assert.Equal(1.0, a.Values[MetricKeys.ImageAuroc(ImageScoreKind.PlainMax)]);
        Assert.Equal(1.0, a.Values[MetricKeys.PixelAuroc]);
        Assert.Equal(1.0, a.Values["pixel_aupro_0.3"]);
        Assert.Equal(1.0, a.Pixel!.F1Max.Threshold);
        Assert.Equal((8L, 56L, 2L), (a.Pixel.AnomalousPixels, a.Pixel.NormalPixels, a.Pixel.Regions));

        // Class b has normal images only: its values are NaN and left out of the mean, with notes saying so.
        var b = report.Classes[1];
        Assert.All(b.Values.Values, v => Assert.True(double.IsNaN(v)));
        Assert.Equal(a.Values.Keys, report.Mean.Keys);
        Assert.All(a.Values, kv => Assert.Equal(kv.Value, report.Mean[kv.Key]));
        Assert.Contains("b: image level: all 2 samples are normal: AUROC, AP and F1-max are undefined (NaN)", report.Notes);
        Assert.Contains("b: pixel level: all 32 pixels are normal: AUROC, AP, F1-max and AU-PRO are undefined (NaN)", report.Notes);
        Assert.Contains("mean image_auroc_max: over 1 of 2 classes; left out (no value): b", report.Notes);
    }

    [Fact]
    public void Anomalous_images_without_masks_count_for_image_metrics_only_and_the_notes_say_so()
    {
        // 4 x 4 maps, pool 2. Normal maps: constant 0.1 and 0.2. Anomalous ones: zeros with a 2 x 2 block of v
        // at the top left (their masks mark that block).
        float[] Map(float v, bool block) => Enumerable.Range(0, Side * Side).Select(i => block && i % Side < 2 && i / Side < 2 ? v : (block ? 0f : v)).ToArray();
        var mask = Map(1f, block: true);
        var zeros = new float[Side * Side];
        var builder = new MetricsReportBuilder(Pool2);
        // Class "part": two normal images, one masked anomalous (block 0.9), two without masks (block 0.8 and a
        // low 0.05, which the image metrics must see).
        builder.Add("part", Map(0.1f, false), zeros, Side, Side);
        builder.Add("part", Map(0.2f, false), zeros, Side, Side);
        builder.Add("part", Map(0.9f, true), mask, Side, Side);
        builder.AddWithoutMask("part", Map(0.8f, true), Side, Side, anomalous: true);
        builder.AddWithoutMask("part", Map(0.05f, true), Side, Side, anomalous: true);
        // Class "bare": every anomalous image lacks a mask.
        builder.Add("bare", Map(0.1f, false), zeros, Side, Side);
        builder.AddWithoutMask("bare", Map(0.9f, true), Side, Side, anomalous: true);
        builder.AddWithoutMask("bare", Map(0.7f, true), Side, Side, anomalous: true);
        var report = builder.Build();

        var part = report.Classes[0];
        Assert.Equal((5, 3, 2), (part.Images, part.AnomalousImages, part.AnomalousImagesWithoutMask));
        // Pooled max: normal 0.1, 0.2; anomalous 0.9, 0.8, 0.05 -> AUROC (2 + 2 + 0) / 6 = 2/3.
        Assert.Equal(2.0 / 3, part.Values[MetricKeys.ImageAuroc(ImageScoreKind.PooledMax)], 1e-15);
        // Pixels: only the two normal maps and the masked anomalous one: 4 anomalous pixels, 2 x 16 + 12 normal.
        Assert.Equal((4L, 44L), (part.Pixel!.AnomalousPixels, part.Pixel.NormalPixels));
        Assert.Equal(1.0, part.Values[MetricKeys.PixelAuroc]);
        Assert.Contains("part: pixel metrics over 1 of 3 anomalous images: 2 have no mask and are left out of pixel metrics (they count for image metrics)", report.Notes);

        var bare = report.Classes[1];
        Assert.Equal((3, 2, 2), (bare.Images, bare.AnomalousImages, bare.AnomalousImagesWithoutMask));
        Assert.Equal(1.0, bare.Values[MetricKeys.ImageAuroc(ImageScoreKind.PooledMax)]);
        Assert.Null(bare.Pixel);
        Assert.False(bare.Values.ContainsKey(MetricKeys.PixelAuroc));
        Assert.Contains("bare: pixel metrics undefined: 2 of 2 anomalous images have no mask", report.Notes);
        Assert.Contains("mean pixel_auroc: over 1 of 2 classes; left out (no value): bare", report.Notes);
        Assert.Equal(1.0, report.Mean[MetricKeys.PixelAuroc]);
        Assert.Contains("n/a", report.ToMarkdown(), StringComparison.Ordinal);
        using var json = JsonDocument.Parse(report.ToJson());
        Assert.Equal(2, json.RootElement.GetProperty("classes")[1].GetProperty("anomalous_images_without_mask").GetInt32());

        Assert.Throws<ArgumentException>(() => builder.AddWithoutMask("part", new float[3], Side, Side, anomalous: true));
        Assert.Throws<ArgumentException>(() => builder.AddWithoutMask("part", Map(float.NaN, false), Side, Side, anomalous: true));
        builder.Add("scores", ImageScoring.Compute(Map(0.1f, false), Side, Side, 2), anomalous: false);
        Assert.Throws<InvalidOperationException>(() => builder.AddWithoutMask("scores", Map(0.1f, false), Side, Side, anomalous: true));
    }

    [Fact]
    public void Mean_is_the_average_over_classes()
    {
        var builder = new MetricsReportBuilder(Pool2);
        AddClassA(builder, "a");
        builder.Add("c", new ImageScores(3, 1, 1, 3), anomalous: true);
        builder.Add("c", new ImageScores(1, 2, 1, 1), anomalous: false);
        builder.Add("c", new ImageScores(2, 3, 1, 2), anomalous: false);
        var report = builder.Build();

        // c: max scores 3 (anomalous) > 2, 1 → AUROC 1; mean scores 1 < 2, 3 → 0; std all tied → 0.5.
        Assert.Equal((1.0 + 1.0) / 2, report.Mean[MetricKeys.ImageAuroc(ImageScoreKind.PooledMax)]);
        Assert.Equal((0.0 + 0.0) / 2, report.Mean[MetricKeys.ImageAuroc(ImageScoreKind.Mean)]);
        Assert.Equal((1.0 + 0.5) / 2, report.Mean[MetricKeys.ImageAuroc(ImageScoreKind.Std)]);
        // Pixel metrics come from class a only: c was given scores, not maps.
        Assert.Null(report.Classes[1].Pixel);
        Assert.False(report.Classes[1].Values.ContainsKey(MetricKeys.PixelAuroc));
        Assert.Equal(1.0, report.Mean[MetricKeys.PixelAuroc]);
        Assert.Contains("mean pixel_auroc: over 1 of 2 classes; left out (no value): c", report.Notes);
    }

    [Fact]
    public void Reference_keys_use_the_evaluator_names_and_folding_is_explicit()
    {
        var truth = BuildTwoClasses(Pool2).ReferenceKeys();
        Assert.Equal(
            ["a_max_auc", "a_mean_auc", "a_std_auc", "a_pixel_auc", "b_max_auc", "b_mean_auc", "b_std_auc", "b_pixel_auc", "mean_max_auc", "mean_mean_auc", "mean_std_auc", "mean_pixel_auc"],
            truth.Keys);
        Assert.Equal(0.0, truth["a_mean_auc"]);
        Assert.Equal(0.0, truth["mean_mean_auc"]);

        var folded = BuildTwoClasses(Pool2 with { FoldAurocBelowHalf = true });
        Assert.Equal(1.0, folded.ReferenceKeys()["a_mean_auc"]);
        Assert.Equal(1.0, folded.ReferenceKeys()["mean_mean_auc"]);
        Assert.Equal(1.0, folded.Classes[0].Image[ImageScoreKind.Mean].Auroc);
        Assert.Contains("a: image_auroc_mean: the true AUROC 0.000000 is below 0.5 and is reported as 1 − AUROC = 1.000000 (reference evaluator's convention)", folded.Notes);
    }

    [Fact]
    public void Markdown_has_a_row_per_class_a_mean_row_and_the_notes()
    {
        var md = BuildTwoClasses(Pool2).ToMarkdown();

        Assert.Contains("AUROC: true values; pooled max: 2 x 2 average pooling, stride 1.", md);
        Assert.Contains("| class | images | anomalous | AUROC (max) | AP (max) | F1-max (max) | AUROC (mean) |", md);
        Assert.Contains("| a | 4 | 2 | 1.000 | 1.000 | 1.000 | 0.000 | 0.500 | 0.667 |", md);
        Assert.Contains("| b | 2 | 0 | n/a | n/a |", md);
        Assert.Contains("| mean | 6 | 2 | 1.000 |", md);
        Assert.Contains("| class | AUROC | AP | F1-max | AU-PRO (FPR ≤ 0.3) |", md);
        Assert.Contains("| a | 1.000 | 1.000 | 1.000 | 1.000 |", md);
        Assert.Contains("- b: image level: all 2 samples are normal", md);
        Assert.Contains("| a | 1.00000 |", BuildTwoClasses(Pool2).ToMarkdown(decimals: 5).Replace("| 4 | 2 | ", string.Empty));
    }

    [Fact]
    public void Json_holds_options_rows_thresholds_mean_reference_keys_and_notes()
    {
        using var doc = JsonDocument.Parse(BuildTwoClasses(Pool2).ToJson());
        var root = doc.RootElement;

        Assert.Equal(2, root.GetProperty("options").GetProperty("pool_size").GetInt32());
        Assert.False(root.GetProperty("options").GetProperty("fold_auroc_below_half").GetBoolean());
        var a = root.GetProperty("classes")[0];
        Assert.Equal("a", a.GetProperty("name").GetString());
        Assert.Equal(56, a.GetProperty("normal_pixels").GetInt64());
        Assert.Equal(0.0, a.GetProperty("metrics").GetProperty("image_auroc_mean").GetDouble());
        Assert.Equal(0.25, a.GetProperty("thresholds").GetProperty("image_f1max_mean").GetDouble(), 1e-15); // the running mean is not exact
        Assert.Equal(JsonValueKind.Null, root.GetProperty("classes")[1].GetProperty("metrics").GetProperty("pixel_auroc").ValueKind);
        Assert.Equal(1.0, root.GetProperty("mean").GetProperty("pixel_auroc").GetDouble());
        Assert.Equal(0.0, root.GetProperty("reference_keys").GetProperty("mean_mean_auc").GetDouble());
        Assert.True(root.GetProperty("notes").GetArrayLength() > 0);
    }

    [Fact]
    public void Tensor_batches_with_class_names_equal_span_batches()
    {
        var (maps, masks) = PixelMetricsAccumulatorTests.RandomMaps(seed: 21, count: 6, height: 8, width: 8, levels: 30);
        string[] classes = ["x", "x", "y", "x", "y", "y"];
        var fromTensors = new MetricsReportBuilder(Pool2);
        using var mapTensor = tensor(maps, [6, 8, 8]);
        using var maskTensor = tensor(masks, [6, 1, 8, 8]);
        fromTensors.Add(classes, mapTensor, maskTensor);

        var fromSpans = new MetricsReportBuilder(Pool2);
        for (int i = 0; i < 6; i++)
        {
            fromSpans.Add(classes[i], maps.AsSpan(i * 64, 64), masks.AsSpan(i * 64, 64), 8, 8);
        }

        Assert.Equal(fromSpans.Build().ToJson(), fromTensors.Build().ToJson());
    }

    [Fact]
    public void Bad_input_is_rejected_and_adds_nothing()
    {
        var builder = new MetricsReportBuilder(Pool2);
        var ex = Assert.Throws<ArgumentException>(() => builder.Add("mean", new float[16], new float[16], Side, Side));
        Assert.Contains("reserved", ex.Message);
        Assert.Throws<ArgumentException>(() => builder.Add(" ", new float[16], new float[16], Side, Side));
        ex = Assert.Throws<ArgumentException>(() => builder.Add("a", new float[1], new float[1], 1, 1));
        Assert.Contains("smaller than the 2 x 2 pooling window", ex.Message);
        Assert.Throws<ArgumentException>(() => builder.Add("a", new ImageScores(double.NaN, 0, 0, 0), anomalous: false));

        var maps = new float[3 * 16];
        maps[(2 * 16) + 5] = float.PositiveInfinity;
        using var mapTensor = tensor(maps, [3, Side, Side]);
        using var maskTensor = zeros(3, Side, Side);
        ex = Assert.Throws<ArgumentException>(() => builder.Add(["a", "a", "b"], mapTensor, maskTensor));
        Assert.Contains("image 2 of the batch, row 1, column 1 is Infinity", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => builder.Add(["a", "b"], mapTensor, maskTensor));
        Assert.Contains("2 class names for 3 maps", ex.Message);
        Assert.Contains("Nothing was added", Assert.Throws<InvalidOperationException>(builder.Build).Message);

        builder.Add("a", new float[16], new float[16], Side, Side);
        Assert.Throws<InvalidOperationException>(() => builder.Add("a", new ImageScores(0, 0, 0, 0), anomalous: true));
        builder.Add("s", new ImageScores(0, 0, 0, 0), anomalous: true);
        Assert.Throws<InvalidOperationException>(() => builder.Add("s", new float[16], new float[16], Side, Side));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MetricsReportBuilder(new MetricsReportOptions { FprLimit = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MetricsReportBuilder(new MetricsReportOptions { PoolSize = 0 }));
    }

    /// <summary>Class a (see <see cref="AddClassA"/>) and class b: two normal images, constant 0.3.</summary>
    private static MetricsReport BuildTwoClasses(MetricsReportOptions options)
    {
        var builder = new MetricsReportBuilder(options);
        AddClassA(builder, "a");
        var flat = Enumerable.Repeat(0.3f, 2 * Side * Side).ToArray();
        builder.Add("b", flat, new float[flat.Length], Side, Side);
        return builder.Build();
    }

    /// <summary>Two normal 4 x 4 maps (constant 0.5 and 0.4), then two anomalous ones: zeros with a 2 x 2 block of ones, masked.</summary>
    private static void AddClassA(MetricsReportBuilder builder, string name)
    {
        builder.Add(name, Enumerable.Repeat(0.5f, 16).ToArray(), new float[16], Side, Side);
        builder.Add(name, Enumerable.Repeat(0.4f, 16).ToArray(), new float[16], Side, Side);
        var defect = new float[16];
        foreach (int p in new[] { 5, 6, 9, 10 })
        {
            defect[p] = 1f;
        }

        builder.Add(name, [.. defect, .. defect], [.. defect, .. defect], Side, Side);
    }
}
