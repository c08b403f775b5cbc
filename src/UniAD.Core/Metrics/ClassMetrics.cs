namespace UniAD.Core.Metrics;

/// <summary>
/// One row of a <see cref="MetricsReport"/>: the image-level metrics of every image score and, when maps and masks
/// were given, the pixel-level metrics. AUROC values are true values unless the report was built with
/// <see cref="MetricsReportOptions.FoldAurocBelowHalf"/>.
/// </summary>
/// <param name="Name">The class.</param>
/// <param name="Images">Test images of the class.</param>
/// <param name="AnomalousImages">Images whose mask has an anomalous pixel (or that were labelled anomalous).</param>
/// <param name="Image">Image-level AUROC, AP and F1-max for each image score.</param>
/// <param name="Pixel">Pixel-level metrics, or null when only image scores were given or no anomalous image has a mask.</param>
/// <param name="AnomalousImagesWithoutMask">Anomalous images added without a mask
/// (<see cref="MetricsReportBuilder.AddWithoutMask"/>): counted by the image metrics, left out of the pixel metrics.</param>
public sealed record ClassMetrics(
    string Name,
    int Images,
    int AnomalousImages,
    IReadOnlyDictionary<ImageScoreKind, BinaryMetrics> Image,
    PixelMetrics? Pixel,
    int AnomalousImagesWithoutMask = 0)
{
    /// <summary>Every metric of the row by its <see cref="MetricKeys"/> name, in report order (image scores, then pixels).</summary>
    public IReadOnlyDictionary<string, double> Values
    {
        get
        {
            var values = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var kind in ImageScoring.Kinds)
            {
                if (Image.TryGetValue(kind, out var m))
                {
                    values[MetricKeys.ImageAuroc(kind)] = m.Auroc;
                    values[MetricKeys.ImageAveragePrecision(kind)] = m.AveragePrecision;
                    values[MetricKeys.ImageF1Max(kind)] = m.F1Max.F1;
                }
            }

            if (Pixel is { } p)
            {
                values[MetricKeys.PixelAuroc] = p.Auroc;
                values[MetricKeys.PixelAveragePrecision] = p.AveragePrecision;
                values[MetricKeys.PixelF1Max] = p.F1Max.F1;
                values[MetricKeys.PixelAuPro(p.FprLimit)] = p.AuPro;
            }

            return values;
        }
    }
}
