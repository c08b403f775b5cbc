namespace UniAD.Core.Detection;

/// <summary>How <c>AnomalyDetector.Calibrate</c> chooses the decision thresholds.</summary>
public enum CalibrationMethod
{
    /// <summary>The threshold that maximises F1 on the calibration images (needs anomalous images; pixel threshold needs masks).</summary>
    F1Max,

    /// <summary>The threshold that normal images exceed at the given false-alarm rate (normal images suffice).</summary>
    FalseAlarmRate,

    /// <summary>Thresholds set by hand (<c>AnomalyDetector.SetThresholds</c>).</summary>
    Manual,
}

/// <summary>
/// Decision thresholds and score normalisation, stored with the model. Raw scores are mapped to [0, 1]
/// with the threshold at 0.5: <c>clamp((s − threshold) / (max − min) + 0.5, 0, 1)</c>, where min and max are
/// the raw scores seen during calibration.
/// </summary>
/// <param name="Method">How the thresholds were chosen.</param>
/// <param name="ImageThreshold">Raw image-score threshold: scores at or above it are anomalous.</param>
/// <param name="ImageMin">Smallest raw image score seen during calibration.</param>
/// <param name="ImageMax">Largest raw image score seen during calibration.</param>
/// <param name="PixelThreshold">Raw anomaly-map threshold for binary masks, or null when it could not be chosen (no masks).</param>
/// <param name="PixelMin">Smallest raw map value seen during calibration.</param>
/// <param name="PixelMax">Largest raw map value seen during calibration.</param>
/// <param name="Images">Number of calibration images.</param>
public sealed record Calibration(CalibrationMethod Method, double ImageThreshold, double ImageMin, double ImageMax, double? PixelThreshold, double PixelMin, double PixelMax, int Images)
{
    /// <summary>What makes this calibration impossible (non-finite values, min above max, no image), or null when it is sound.</summary>
    internal string? Problem()
    {
        if (!Enum.IsDefined(Method))
        {
            return $"unknown method {Method}";
        }

        if (Images < 1)
        {
            return $"{Images} calibration images";
        }

        if (!double.IsFinite(ImageThreshold) || !double.IsFinite(ImageMin) || !double.IsFinite(ImageMax) || ImageMin > ImageMax)
        {
            return $"image threshold {ImageThreshold}, min {ImageMin}, max {ImageMax}";
        }

        if (PixelThreshold is { } pt && !double.IsFinite(pt))
        {
            return $"pixel threshold {pt}";
        }

        if (!(ImageSensitivity >= 0 && ImageSensitivity <= 1) || !(PixelSensitivity >= 0 && PixelSensitivity <= 1))
        {
            return $"sensitivities {ImageSensitivity} and {PixelSensitivity} (each in [0, 1])";
        }

        if (!double.IsFinite(PixelMin) || !double.IsFinite(PixelMax) || PixelMin > PixelMax)
        {
            return $"pixel min {PixelMin}, max {PixelMax}";
        }

        // Every way of calibrating puts a threshold among the scores it saw (F1-max on a score, a false-alarm quantile
        // between two, SetThresholds widens the range to the value set): one outside them makes every image normal, or
        // every image anomalous, and can only come from an edited file.
        if (ImageThreshold < ImageMin || ImageThreshold > ImageMax)
        {
            return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"image threshold {ImageThreshold:G9} outside the calibration's observed image scores [{ImageMin:G9}, {ImageMax:G9}]");
        }

        if (PixelThreshold is { } p && (p < PixelMin || p > PixelMax))
        {
            return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"pixel threshold {p:G9} outside the calibration's observed map values [{PixelMin:G9}, {PixelMax:G9}]");
        }

        return null;
    }

    /// <summary>
    /// Image sensitivity in [0, 1] (as anomalib's post-processor): an image is anomalous when its normalised score
    /// reaches 1 − sensitivity. The default 0.5 keeps <see cref="ImageThreshold"/>; higher flags more images.
    /// </summary>
    public double ImageSensitivity { get; init; } = 0.5;

    /// <summary>Pixel sensitivity in [0, 1], the same rule for the pixel masks (default 0.5: <see cref="PixelThreshold"/>).</summary>
    public double PixelSensitivity { get; init; } = 0.5;

    /// <summary>The raw image-score threshold after sensitivity: scores at or above it are anomalous (derived, not stored: infinite when the range is empty and the sensitivity is not 0.5).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public double EffectiveImageThreshold => Shift(ImageThreshold, ImageSensitivity, ImageMin, ImageMax);

    /// <summary>The raw map threshold of the masks after sensitivity, or null without a pixel threshold.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public double? EffectivePixelThreshold => PixelThreshold is { } t ? Shift(t, PixelSensitivity, PixelMin, PixelMax) : null;

    /// <summary>Whether a raw image score is anomalous (at or above <see cref="EffectiveImageThreshold"/>).</summary>
    public bool IsAnomalous(double score) => score >= EffectiveImageThreshold;

    /// <summary>The image score mapped to [0, 1] (threshold at 0.5).</summary>
    public double NormalizeImageScore(double score) => Normalize(score, ImageThreshold, ImageMin, ImageMax);

    /// <summary>A map value mapped to [0, 1] (pixel threshold, or the image threshold when none, at 0.5).</summary>
    public double NormalizePixel(double value) => Normalize(value, PixelThreshold ?? ImageThreshold, PixelMin, PixelMax);

    /// <summary>A threshold moved by a sensitivity: the raw value whose normalised score is 1 − sensitivity (unchanged at 0.5).</summary>
    private static double Shift(double threshold, double sensitivity, double min, double max) =>
        sensitivity == 0.5 ? threshold
        : max - min > 0 ? threshold + ((0.5 - sensitivity) * (max - min))
        : sensitivity > 0.5 ? double.NegativeInfinity : double.PositiveInfinity;

    private static double Normalize(double value, double threshold, double min, double max)
    {
        double range = max - min;
        double normalized = range > 0 ? ((value - threshold) / range) + 0.5 : (value >= threshold ? 1 : 0);
        return Math.Clamp(normalized, 0, 1);
    }
}
