using UniAD.Core.Data;

namespace UniAD.Core.Detection;

/// <summary>Visualisation helpers on the detector.</summary>
public static class AnomalyDetectorVisualizationExtensions
{
    /// <summary>Scores an image file and writes its heat-map overlay PNG to <paramref name="outputPath"/>; returns the result.</summary>
    public static AnomalyResult SaveOverlay(this AnomalyDetector detector, string imagePath, string outputPath, HeatmapOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(detector);
        var image = ImageDecoder.Decode(imagePath, detector.Preprocess.MaxImagePixels);
        var result = detector.Score(image, imagePath);
        using var overlay = HeatmapRenderer.Overlay(image, result, detector.Calibration, options);
        HeatmapRenderer.SavePng(overlay, outputPath);
        return result;
    }

    /// <summary>
    /// Writes the compound view (image | ground truth | predicted mask | overlay, with labels) of every sample of
    /// <paramref name="source"/> into <paramref name="folder"/> as <c>class_defect_name.png</c>; returns the files written.
    /// </summary>
    public static IReadOnlyList<string> SaveCompoundViews(this AnomalyDetector detector, IImageSource source, string folder, HeatmapOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(detector);
        ArgumentNullException.ThrowIfNull(source);
        Directory.CreateDirectory(folder);
        var written = new List<string>();
        foreach (var sample in source.Samples)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var image = ImageDecoder.Decode(sample.ImagePath, detector.Preprocess.MaxImagePixels);
            var result = detector.Score(image, sample.ImagePath);
            byte[]? truth = null;
            (int, int)? truthSize = null;
            if (sample.MaskPath is not null)
            {
                // Kept when its size differs (resized in the view), never dropped.
                var mask = ImageDecoder.Decode(sample.MaskPath, detector.Preprocess.MaxImagePixels);
                truth = new byte[mask.Width * mask.Height];
                for (int i = 0; i < truth.Length; i++)
                {
                    truth[i] = mask.Pixels[i * 4] > 0 ? (byte)1 : (byte)0;
                }

                truthSize = (mask.Width, mask.Height);
            }

            using var compound = HeatmapRenderer.Compound(image, truth, result, detector.Calibration, options, $"{sample.ClassName} / {sample.DefectType} / {Path.GetFileName(sample.ImagePath)}", truthSize);
            var path = Path.Combine(folder, $"{sample.ClassName}_{sample.DefectType}_{Path.GetFileNameWithoutExtension(sample.ImagePath)}.png");
            HeatmapRenderer.SavePng(compound, path);
            written.Add(path);
        }

        return written;
    }
}
