using SkiaSharp;
using UniAD.Core.Data;
using UniAD.Core.Files;

namespace UniAD.Core.Detection;

/// <summary>Options of the heat-map rendering.</summary>
public sealed record HeatmapOptions
{
    /// <summary>Opacity of the heat map over the image, in [0, 1].</summary>
    public double Alpha { get; init; } = 0.5;

    /// <summary>
    /// Map value shown as the coldest colour, or null: the calibration's normalisation when the detector is
    /// calibrated, otherwise the map's own minimum.
    /// </summary>
    public double? Min { get; init; }

    /// <summary>Map value shown as the hottest colour, or null (see <see cref="Min"/>).</summary>
    public double? Max { get; init; }

    /// <summary>Outline the calibrated defect mask in white.</summary>
    public bool OutlineMask { get; init; } = true;
}

/// <summary>Renders anomaly maps with SkiaSharp: heat-map overlays and the reference's compound view (image | ground truth | overlay).</summary>
public static class HeatmapRenderer
{
    /// <summary>The image with its anomaly map blended over it in a jet colour map (the map must have the image's size).</summary>
    /// <exception cref="ArgumentException">The map and the image differ in size.</exception>
    public static SKBitmap Overlay(RgbImage image, AnomalyResult result, Calibration? calibration = null, HeatmapOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(result);
        options ??= new HeatmapOptions();
        var map = result.Map;
        if (map.Width != image.Width || map.Height != image.Height)
        {
            throw new ArgumentException($"The map is {map.Width} x {map.Height} but the image {image.Width} x {image.Height}.", nameof(result));
        }

        double min = options.Min ?? (calibration is null ? MinOf(map.Values) : calibration.PixelMin);
        double max = options.Max ?? (calibration is null ? map.Max : calibration.PixelMax);
        double range = max > min ? max - min : 1;
        double alpha = Math.Clamp(options.Alpha, 0, 1);
        var bitmap = new SKBitmap(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        var pixels = bitmap.GetPixelSpan();
        var rgb = image.Pixels;
        var values = map.Values;
        for (int i = 0, p = 0; i < values.Length; i++, p += 4)
        {
            var (r, g, b) = Jet((values[i] - min) / range);
            pixels[p] = Blend(rgb[p], r, alpha); // RgbImage keeps 4 bytes per pixel, like the bitmap
            pixels[p + 1] = Blend(rgb[p + 1], g, alpha);
            pixels[p + 2] = Blend(rgb[p + 2], b, alpha);
            pixels[p + 3] = 255;
        }

        if (options.OutlineMask && result.Mask is { } mask)
        {
            Outline(pixels, mask, image.Width, image.Height, (255, 255, 255));
        }

        return bitmap;
    }

    /// <summary>The reference's visualisation: image, ground truth (white on black, or grey when none) and overlay side by side.</summary>
    public static SKBitmap Compound(RgbImage image, byte[]? groundTruth, AnomalyResult result, Calibration? calibration = null, HeatmapOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        using var overlay = Overlay(image, result, calibration, options);
        using var original = ToBitmap(image);
        int w = image.Width, h = image.Height;
        using var truth = new SKBitmap(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque);
        var t = truth.GetPixelSpan();
        for (int i = 0, p = 0; i < w * h; i++, p += 4)
        {
            byte v = groundTruth is null ? (byte)64 : groundTruth[i] > 0 ? (byte)255 : (byte)0;
            t[p] = t[p + 1] = t[p + 2] = v;
            t[p + 3] = 255;
        }

        var compound = new SKBitmap(3 * w, h, SKColorType.Rgba8888, SKAlphaType.Opaque);
        var target = compound.GetPixelSpan();
        int row = w * 4;
        foreach (var (panel, index) in new[] { (original, 0), (truth, 1), (overlay, 2) })
        {
            var source = panel.GetPixelSpan();
            for (int y = 0; y < h; y++)
            {
                source.Slice(y * row, row).CopyTo(target.Slice((y * 3 * row) + (index * row), row));
            }
        }

        return compound;
    }

    /// <summary>Writes a bitmap as PNG, atomically (temporary file, then move).</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    public static void SavePng(SKBitmap bitmap, string path)
    {
        ArgumentNullException.ThrowIfNull(bitmap);
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100) ?? throw new InvalidOperationException($"SkiaSharp could not encode a {bitmap.Width} x {bitmap.Height} PNG.");
        AtomicFile.Write(path, stream => data.SaveTo(stream));
    }

    /// <summary>An RGB image as an opaque SkiaSharp bitmap.</summary>
    public static SKBitmap ToBitmap(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        var bitmap = new SKBitmap(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        var pixels = bitmap.GetPixelSpan();
        var rgb = image.Pixels;
        rgb.CopyTo(pixels); // same 4-byte layout; the padding byte becomes an opaque alpha below
        for (int p = 3; p < pixels.Length; p += 4)
        {
            pixels[p] = 255;
        }

        return bitmap;
    }

    /// <summary>The jet colour map at <paramref name="t"/> in [0, 1] (clamped): blue → cyan → yellow → red.</summary>
    public static (byte R, byte G, byte B) Jet(double t)
    {
        t = double.IsNaN(t) ? 0 : Math.Clamp(t, 0, 1);
        static byte Channel(double v) => (byte)Math.Round(255 * Math.Clamp(v, 0, 1));
        return (Channel(1.5 - Math.Abs((4 * t) - 3)), Channel(1.5 - Math.Abs((4 * t) - 2)), Channel(1.5 - Math.Abs((4 * t) - 1)));
    }

    private static byte Blend(byte under, byte over, double alpha) => (byte)Math.Round((under * (1 - alpha)) + (over * alpha));

    private static float MinOf(ReadOnlySpan<float> values)
    {
        float min = float.PositiveInfinity;
        foreach (var v in values)
        {
            min = Math.Min(min, v);
        }

        return min;
    }

    private static void Outline(Span<byte> pixels, byte[] mask, int width, int height, (byte R, byte G, byte B) colour)
    {
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                int i = (y * width) + x;
                if (mask[i] == 0)
                {
                    continue;
                }

                bool edge = x == 0 || y == 0 || x == width - 1 || y == height - 1 || mask[i - 1] == 0 || mask[i + 1] == 0 || mask[i - width] == 0 || mask[i + width] == 0;
                if (edge)
                {
                    pixels[i * 4] = colour.R;
                    pixels[(i * 4) + 1] = colour.G;
                    pixels[(i * 4) + 2] = colour.B;
                }
            }
        }
    }
}

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
    /// Writes the reference's compound view (image | ground truth | overlay) of every sample of
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
            if (sample.MaskPath is not null)
            {
                var mask = ImageDecoder.Decode(sample.MaskPath, detector.Preprocess.MaxImagePixels);
                if (mask.Width == image.Width && mask.Height == image.Height)
                {
                    truth = new byte[image.Width * image.Height];
                    for (int i = 0; i < truth.Length; i++)
                    {
                        truth[i] = mask.Pixels[i * 4] > 0 ? (byte)1 : (byte)0;
                    }
                }
            }

            using var compound = HeatmapRenderer.Compound(image, truth, result, detector.Calibration, options);
            var path = Path.Combine(folder, $"{sample.ClassName}_{sample.DefectType}_{Path.GetFileNameWithoutExtension(sample.ImagePath)}.png");
            HeatmapRenderer.SavePng(compound, path);
            written.Add(path);
        }

        return written;
    }
}
