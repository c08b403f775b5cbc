using System.Globalization;
using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using UniAD.Core.Metrics;
using static TorchSharp.torch;

namespace UniAD.Core.Detection;

/// <summary>
/// Calibration: decision thresholds and the score normalisation computed from a stream of maps (<see cref="MapSource"/>):
/// F1-max on normal and anomalous images or the false-alarm quantile on normal ones, or set by hand; the result is stored
/// in the detector under its lock.
/// </summary>
internal static class DetectorCalibration
{
    /// <summary>The body of <see cref="AnomalyDetector.Calibrate"/>.</summary>
    public static Calibration Calibrate(AnomalyDetector detector, IImageSource images, CalibrationOptions? options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(images);
        options ??= new CalibrationOptions();
        if (!(options.FalseAlarmRate > 0 && options.FalseAlarmRate < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.FalseAlarmRate, "The false-alarm rate must lie in (0, 1).");
        }

        if (options.MinimumNormalImages < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MinimumNormalImages, "MinimumNormalImages must be at least 1.");
        }

        // Normal pixels for the false-alarm quantile: a regular subsample of at most about 4 M values.
        int normalImages = Math.Max(1, images.Samples.Count(s => s.Label == 0));
        int pixelStride = (int)Math.Max(1, (long)normalImages * TiledScoring.MapPixels(detector, images) / 4_000_000);
        var scores = new List<double>();
        var labels = new List<bool>();
        var normalPixels = new List<float>();
        var pixels = new PixelMetricsAccumulator(computeAuPro: false);
        bool haveMasks = false;
        double pixelMin = double.PositiveInfinity, pixelMax = double.NegativeInfinity;
        foreach (var (maps, batch) in MapSource.Maps(detector, images, options.BatchSize, loadMasks: true, cancellationToken))
        {
            using (batch)
            {
                for (int i = 0; i < batch.Count; i++)
                {
                    scores.Add(DetectorScoring.ImageScore(detector, maps[i]));
                    labels.Add(batch.Samples[i].Label != 0);
                }

                var flat = maps.cpu().contiguous().data<float>().ToArray();
                pixelMin = Math.Min(pixelMin, flat.Min());
                pixelMax = Math.Max(pixelMax, flat.Max());
                if (batch.Masks is { } m)
                {
                    // Only images with pixel labels: an anomalous image without a mask never sets a pixel threshold.
                    var withMask = Enumerable.Range(0, batch.Count).Where(i => batch.HasMask[i]).Select(i => (long)i).ToArray();
                    haveMasks |= withMask.Any(i => batch.Samples[(int)i].Label != 0);
                    if (withMask.Length == batch.Count)
                    {
                        pixels.Add(maps, m);
                    }
                    else if (withMask.Length > 0)
                    {
                        using var index = tensor(withMask, device: CPU);
                        using var someMaps = maps.index_select(0, index);
                        using var someMasks = m.index_select(0, index);
                        pixels.Add(someMaps, someMasks);
                    }
                }

                for (int i = 0; i < batch.Count; i++)
                {
                    if (batch.Samples[i].Label == 0)
                    {
                        int per = flat.Length / batch.Count;
                        for (int j = i * per; j < (i + 1) * per; j += pixelStride)
                        {
                            normalPixels.Add(flat[j]);
                        }
                    }
                }
            }
        }

        if (scores.Count == 0)
        {
            throw new InvalidDataException($"No image in '{images.Name}' to calibrate with.");
        }

        double imageThreshold;
        double? pixelThreshold;
        if (options.Method == CalibrationMethod.F1Max)
        {
            if (labels.All(l => l) || labels.All(l => !l))
            {
                throw new InvalidDataException($"F1-max calibration needs normal and anomalous images; '{images.Name}' has {labels.Count(l => l)} anomalous of {labels.Count}. Use CalibrationMethod.FalseAlarmRate with normal images only.");
            }

            imageThreshold = BinaryClassification.F1Max(scores.ToArray().AsSpan(), labels.ToArray().AsSpan()).Threshold;
            var pixelMetrics = haveMasks ? pixels.Compute() : null;
            pixelThreshold = pixelMetrics is { F1Max.Threshold: var t } && !double.IsNaN(t) ? t : null;
        }
        else
        {
            var normal = scores.Where((_, i) => !labels[i]).ToArray();
            if (normal.Length < options.MinimumNormalImages)
            {
                throw new InvalidDataException($"False-alarm calibration needs at least {options.MinimumNormalImages} normal images (CalibrationOptions.MinimumNormalImages); '{images.Name}' has {normal.Length}.");
            }

            if (normal.Length < Math.Ceiling(1 / options.FalseAlarmRate))
            {
                detector.Logger.LogWarning("False-alarm calibration at a rate of {Rate} on {Images} normal images of {Source}: fewer than 1/rate = {Needed}, so the threshold is interpolated between the highest scores and the achieved rate is uncertain. Calibrate on more normal images.", options.FalseAlarmRate, normal.Length, images.Name, Math.Ceiling(1 / options.FalseAlarmRate));
            }

            imageThreshold = MathNet.Numerics.Statistics.Statistics.QuantileCustom(normal, 1 - options.FalseAlarmRate, MathNet.Numerics.Statistics.QuantileDefinition.R7);
            pixelThreshold = normalPixels.Count > 0
                ? MathNet.Numerics.Statistics.Statistics.QuantileCustom(normalPixels.Select(v => (double)v), 1 - options.FalseAlarmRate, MathNet.Numerics.Statistics.QuantileDefinition.R7)
                : null;
        }

        var calibration = new Calibration(options.Method, imageThreshold, scores.Min(), scores.Max(), pixelThreshold, pixelMin, pixelMax, scores.Count);
        lock (detector.Gate)
        {
            detector.Calibration = calibration;
        }

        detector.Logger.LogInformation("Calibrated on {Images} images of {Source} ({Method}): image threshold {Threshold:G6}, pixel threshold {Pixel}.", scores.Count, images.Name, options.Method, imageThreshold, pixelThreshold?.ToString("G6", CultureInfo.InvariantCulture) ?? "none");
        return calibration;
    }

    /// <summary>The body of <see cref="AnomalyDetector.CalibrateOnValidation(IImageSource, CalibrationOptions, CancellationToken)"/>: F1-max with anomalous images, else the false-alarm quantile.</summary>
    public static Calibration OnValidation(AnomalyDetector detector, IImageSource validation, CalibrationOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(validation);
        ArgumentNullException.ThrowIfNull(options);
        bool anomalous = validation.Samples.Any(s => s.IsAnomalous), normal = validation.Samples.Any(s => !s.IsAnomalous);
        if (!normal)
        {
            throw new InvalidDataException($"The validation split '{validation.Name}' has no normal image to calibrate with.");
        }

        var method = anomalous ? CalibrationMethod.F1Max : CalibrationMethod.FalseAlarmRate;
        return detector.Calibrate(validation, options with { Method = method }, cancellationToken);
    }

    /// <summary>The body of <see cref="AnomalyDetector.SetThresholds"/>: manual thresholds keeping the old normalisation, set under the detector's lock.</summary>
    public static Calibration SetThresholds(AnomalyDetector detector, double imageThreshold, double? pixelThreshold)
    {
        if (!double.IsFinite(imageThreshold) || (pixelThreshold is { } p && !double.IsFinite(p)))
        {
            throw new ArgumentException($"Thresholds must be finite; got image {imageThreshold}, pixel {pixelThreshold}.");
        }

        lock (detector.Gate)
        {
            var old = detector.Calibration;
            double pixel = pixelThreshold ?? imageThreshold;
            detector.Calibration = new Calibration(
                CalibrationMethod.Manual,
                imageThreshold,
                Math.Min(old?.ImageMin ?? imageThreshold, imageThreshold),
                Math.Max(old?.ImageMax ?? imageThreshold, imageThreshold),
                pixelThreshold,
                Math.Min(old?.PixelMin ?? pixel, pixel),
                Math.Max(old?.PixelMax ?? pixel, pixel),
                Math.Max(1, old?.Images ?? 1))
            {
                ImageSensitivity = old?.ImageSensitivity ?? 0.5,
                PixelSensitivity = old?.PixelSensitivity ?? 0.5,
            };
            return detector.Calibration;
        }
    }

    /// <summary>The body of <see cref="AnomalyDetector.SetSensitivity"/>: the current calibration with new sensitivities, set under the detector's lock.</summary>
    public static Calibration SetSensitivity(AnomalyDetector detector, double image, double? pixel)
    {
        if (!(image >= 0 && image <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(image), image, "A sensitivity lies in [0, 1].");
        }

        if (pixel is { } p && !(p >= 0 && p <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(pixel), pixel, "A sensitivity lies in [0, 1].");
        }

        lock (detector.Gate)
        {
            var old = detector.Calibration ?? throw new InvalidOperationException("Calibrate the detector (or SetThresholds) before setting a sensitivity.");
            detector.Calibration = old with { ImageSensitivity = image, PixelSensitivity = pixel ?? image };
            return detector.Calibration;
        }
    }
}
