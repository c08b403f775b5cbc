namespace UniAD.Core.Metrics;

/// <summary>
/// Pixel-level metrics over a set of anomaly maps and ground-truth masks (pixel &gt; 0 in the mask = anomalous).
/// AUROC, AP and F1-max are those of <see cref="BinaryMetrics"/> over all pixels; AU-PRO is described at
/// <see cref="AuPro"/>.
/// </summary>
/// <param name="Images">Maps that were added.</param>
/// <param name="AnomalousPixels">Pixels with mask &gt; 0.</param>
/// <param name="NormalPixels">Pixels with mask = 0.</param>
/// <param name="Regions">8-connected components of the masks, counted per image; 0 when AU-PRO was not computed.</param>
/// <param name="Auroc">Pixel AUROC (true value). NaN unless both kinds of pixel occur.</param>
/// <param name="AveragePrecision">Pixel AP. NaN without anomalous pixels.</param>
/// <param name="F1Max">Pixel F1-max and its threshold. NaN without anomalous pixels.</param>
/// <param name="AuPro">
/// Area under the per-region-overlap curve up to <paramref name="FprLimit"/>, divided by it. At every distinct score
/// threshold t (from the highest down), FPR = normal pixels ≥ t / all normal pixels, and PRO = the mean over all
/// regions (of all images) of the fraction of the region's pixels ≥ t. The curve starts at (0, 0), tied scores form
/// one point, it is integrated with the trapezoid rule and linearly interpolated at the limit. This is the
/// construction that reproduces the reference fixtures (scikit-learn and SciPy) to 1e-15; the details matter:
/// treating tied pixels as separate points moves one fixture value by 2e-8, and dropping the last partial segment
/// instead of interpolating moves them by up to 3e-5. NaN when AU-PRO was not computed, or without normal or
/// without anomalous pixels.
/// </param>
/// <param name="FprLimit">The FPR limit of <see cref="AuPro"/>.</param>
public sealed record PixelMetrics(
    int Images,
    long AnomalousPixels,
    long NormalPixels,
    long Regions,
    double Auroc,
    double AveragePrecision,
    F1Max F1Max,
    double AuPro,
    double FprLimit)
{
    /// <summary>Why some values are NaN, or null when every value is defined.</summary>
    public string? UndefinedReason =>
        UndefinedReasons.Reason(AnomalousPixels, NormalPixels, "pixels", withAuPro: true)
        ?? (Regions == 0 ? "AU-PRO was not computed (the accumulator was created without it): it is NaN" : null);
}
