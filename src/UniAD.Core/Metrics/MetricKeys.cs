using System.Globalization;

namespace UniAD.Core.Metrics;

/// <summary>
/// Names of the metrics in reports and JSON. Per-class keys follow the vocabulary of the reference fixtures
/// (<c>image_auroc_max</c>, <c>pixel_aupro_0.3</c>, ...); the reference evaluator's own keys
/// (<c>&lt;class&gt;_&lt;max|mean|std|pixel&gt;_auc</c>, <c>mean_*</c>) are built by <see cref="ReferenceAuroc"/>.
/// </summary>
public static class MetricKeys
{
    /// <summary>Pixel AUROC.</summary>
    public const string PixelAuroc = "pixel_auroc";

    /// <summary>Pixel average precision.</summary>
    public const string PixelAveragePrecision = "pixel_ap";

    /// <summary>Pixel F1-max.</summary>
    public const string PixelF1Max = "pixel_f1max";

    /// <summary>The name of the mean row, and the class part of the reference's <c>mean_*</c> keys.</summary>
    public const string MeanRow = "mean";

    /// <summary><c>image_auroc_&lt;kind&gt;</c>, e.g. <c>image_auroc_max</c>.</summary>
    public static string ImageAuroc(ImageScoreKind kind) => "image_auroc_" + ImageScoring.Name(kind);

    /// <summary><c>image_ap_&lt;kind&gt;</c>.</summary>
    public static string ImageAveragePrecision(ImageScoreKind kind) => "image_ap_" + ImageScoring.Name(kind);

    /// <summary><c>image_f1max_&lt;kind&gt;</c>.</summary>
    public static string ImageF1Max(ImageScoreKind kind) => "image_f1max_" + ImageScoring.Name(kind);

    /// <summary><c>pixel_aupro_&lt;limit&gt;</c> with the limit in invariant shortest form, e.g. <c>pixel_aupro_0.3</c>.</summary>
    public static string PixelAuPro(double fprLimit) => "pixel_aupro_" + fprLimit.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>
    /// The reference evaluator's key for an image AUROC: <c>&lt;class&gt;_&lt;max|mean|std&gt;_auc</c>
    /// (<c>max</c> = pooled max); use <see cref="MeanRow"/> as the class for the mean over classes.
    /// </summary>
    /// <exception cref="ArgumentException">The kind is <see cref="ImageScoreKind.PlainMax"/> or <see cref="ImageScoreKind.TopMean"/>, which the reference does not report.</exception>
    public static string ReferenceAuroc(string className, ImageScoreKind kind) =>
        kind is ImageScoreKind.PlainMax or ImageScoreKind.TopMean
            ? throw new ArgumentException($"The reference evaluator has no key for the {ImageScoring.Name(kind)} score.", nameof(kind))
            : $"{className}_{ImageScoring.Name(kind)}_auc";

    /// <summary>The reference evaluator's key for the pixel AUROC: <c>&lt;class&gt;_pixel_auc</c>.</summary>
    public static string ReferencePixelAuroc(string className) => $"{className}_pixel_auc";
}
