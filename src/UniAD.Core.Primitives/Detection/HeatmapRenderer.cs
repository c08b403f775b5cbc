using SkiaSharp;
using UniAD.Core.Data;
using UniAD.Core.Files;

namespace UniAD.Core.Detection;

/// <summary>Options of the heat-map rendering.</summary>
public sealed record HeatmapOptions
{
    /// <summary>Opacity of the heat map over the image, in [0, 1] (with <see cref="WeightByScore"/>, the opacity of the hottest pixels).</summary>
    public double Alpha { get; init; } = 0.6;

    /// <summary>
    /// Scale each pixel's opacity by its place on the colour scale (default): normal regions keep the image's own
    /// pixels and only anomalous ones are coloured, so a small defect stands out. False blends every pixel with
    /// <see cref="Alpha"/> (the reference's look).
    /// </summary>
    public bool WeightByScore { get; init; } = true;

    /// <summary>Draw labels on compound views: a header with the class, score, threshold and verdict, and a name over each panel.</summary>
    public bool Labels { get; init; } = true;

    /// <summary>
    /// Map value shown as the coldest colour, or null: when the detector is calibrated, the pixel threshold minus
    /// half the calibrated map range, so the threshold sits at the middle of the scale (its normalisation,
    /// <see cref="Calibration.NormalizePixel"/>); otherwise the map's own minimum.
    /// </summary>
    public double? Min { get; init; }

    /// <summary>Map value shown as the hottest colour, or null (see <see cref="Min"/>).</summary>
    public double? Max { get; init; }

    /// <summary>Outline the calibrated defect mask in white.</summary>
    public bool OutlineMask { get; init; } = true;
}

/// <summary>Renders anomaly maps with SkiaSharp: heat-map overlays and compound views (image | ground truth | predicted mask | overlay, labelled).</summary>
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

        var (min, max) = Scale(map, calibration, options);
        double range = max > min ? max - min : 1;
        double alpha = Math.Clamp(options.Alpha, 0, 1);
        bool weighted = options.WeightByScore;
        var bitmap = new SKBitmap(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        var pixels = bitmap.GetPixelSpan();
        var rgb = image.Pixels;
        var values = map.Values;
        for (int i = 0, p = 0; i < values.Length; i++, p += 4)
        {
            double t = Math.Clamp((values[i] - min) / range, 0, 1);
            var (r, g, b) = Jet(t);
            double a = weighted ? alpha * t : alpha;
            pixels[p] = Blend(rgb[p], r, a); // RgbImage keeps 4 bytes per pixel, like the bitmap
            pixels[p + 1] = Blend(rgb[p + 1], g, a);
            pixels[p + 2] = Blend(rgb[p + 2], b, a);
            pixels[p + 3] = 255;
        }

        if (options.OutlineMask && result.Mask is { } mask)
        {
            Outline(pixels, mask, image.Width, image.Height, (255, 255, 255));
        }

        return bitmap;
    }

    /// <summary>
    /// The compound view: image | ground truth (white on black; grey when there is none) | predicted mask (the
    /// calibrated pixel threshold after sensitivity, white on black; grey when uncalibrated) | overlay, side by side,
    /// with a header (caption, score, threshold, normalised score and verdict) and a name over each panel unless
    /// <see cref="HeatmapOptions.Labels"/> is false. A ground truth of another size is resized (nearest neighbour).
    /// </summary>
    /// <param name="image">The image (the map has its size).</param>
    /// <param name="groundTruth">Ground truth (non-zero = anomalous), row-major, or null.</param>
    /// <param name="groundTruthSize">The ground truth's width and height when it differs from the image's; null: the image's.</param>
    /// <param name="result">The image's result.</param>
    /// <param name="calibration">The detector's calibration, or null.</param>
    /// <param name="options">Rendering options.</param>
    /// <param name="caption">First header line, e.g. the class and defect type (null: the result's file name).</param>
    /// <exception cref="ArgumentException">The ground truth does not have the size it claims.</exception>
    public static SKBitmap Compound(RgbImage image, byte[]? groundTruth, AnomalyResult result, Calibration? calibration = null, HeatmapOptions? options = null, string? caption = null, (int Width, int Height)? groundTruthSize = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(result);
        options ??= new HeatmapOptions();
        int w = image.Width, h = image.Height;
        var (gw, gh) = groundTruthSize ?? (w, h);
        if (groundTruth is not null && groundTruth.Length != (long)gw * gh)
        {
            throw new ArgumentException($"The ground truth has {groundTruth.Length} values for {gw} x {gh}.", nameof(groundTruth));
        }

        using var overlay = Overlay(image, result, calibration, options);
        using var original = ToBitmap(image);
        using var truth = MaskPanel(w, h, groundTruth is null ? null : Resized(groundTruth, gw, gh, w, h));
        using var predicted = MaskPanel(w, h, result.Mask);

        int scale = Math.Clamp(w / 110, 1, 4);
        int line = (PixelFont.Height + 3) * scale;
        int header = options.Labels ? (3 * line) + scale : 0;
        int panelCount = 4;
        var compound = new SKBitmap(panelCount * w, h + header, SKColorType.Rgba8888, SKAlphaType.Opaque);
        var target = compound.GetPixelSpan();
        target.Fill(0);
        for (int p = 3; p < target.Length; p += 4)
        {
            target[p] = 255;
        }

        int row = w * 4, outRow = panelCount * row;
        var panels = new[] { (original, "IMAGE"), (truth, groundTruth is null ? "GROUND TRUTH: NONE" : "GROUND TRUTH"), (predicted, result.Mask is null ? "PREDICTED MASK: NONE" : "PREDICTED MASK"), (overlay, "HEAT MAP") };
        for (int index = 0; index < panels.Length; index++)
        {
            var source = panels[index].Item1.GetPixelSpan();
            for (int y = 0; y < h; y++)
            {
                source.Slice(y * row, row).CopyTo(target.Slice(((y + header) * outRow) + (index * row), row));
            }
        }

        if (options.Labels)
        {
            var white = ((byte)255, (byte)255, (byte)255);
            string first = caption ?? (result.Source is { } src ? Path.GetFileName(src) : "image");
            PixelFont.Draw(target, panelCount * w, h + header, scale, scale, first, scale, white);
            var verdict = result.IsAnomalous switch { true => "ANOMALOUS", false => "NORMAL", null => "UNCALIBRATED" };
            var colour = result.IsAnomalous switch { true => ((byte)255, (byte)80, (byte)80), false => ((byte)120, (byte)230, (byte)120), null => white };
            string second = calibration is null
                ? FormattableString.Invariant($"SCORE {result.Score:G4}")
                : FormattableString.Invariant($"SCORE {result.Score:G4}  THRESHOLD {calibration.EffectiveImageThreshold:G4}  NORMALISED {result.NormalizedScore:F2}");
            PixelFont.Draw(target, panelCount * w, h + header, scale, scale + line, second + "  " + verdict, scale, colour);
            for (int index = 0; index < panels.Length; index++)
            {
                PixelFont.Draw(target, panelCount * w, h + header, (index * w) + scale, scale + (2 * line), panels[index].Item2, scale, white);
            }
        }

        return compound;
    }

    /// <summary>The colour scale of a map: options first, then the calibration (threshold at the middle), then the map's own range.</summary>
    private static (double Min, double Max) Scale(AnomalyMapData map, Calibration? calibration, HeatmapOptions options)
    {
        if (calibration is not null)
        {
            // NormalizePixel: clamp((v - threshold) / (max - min) + 0.5): the scale runs from threshold - range / 2 to threshold + range / 2.
            double threshold = calibration.PixelThreshold ?? calibration.ImageThreshold, half = (calibration.PixelMax - calibration.PixelMin) / 2;
            return (options.Min ?? (threshold - half), options.Max ?? (threshold + half));
        }

        return (options.Min ?? MinOf(map.Values), options.Max ?? map.Max);
    }

    private static SKBitmap MaskPanel(int w, int h, byte[]? mask)
    {
        var panel = new SKBitmap(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque);
        var t = panel.GetPixelSpan();
        for (int i = 0, p = 0; i < w * h; i++, p += 4)
        {
            byte v = mask is null ? (byte)64 : mask[i] > 0 ? (byte)255 : (byte)0;
            t[p] = t[p + 1] = t[p + 2] = v;
            t[p + 3] = 255;
        }

        return panel;
    }

    /// <summary>A mask resized by nearest neighbour (pixel centres).</summary>
    internal static byte[] Resized(byte[] mask, int width, int height, int toWidth, int toHeight)
    {
        if (width == toWidth && height == toHeight)
        {
            return mask;
        }

        var result = new byte[toWidth * toHeight];
        for (int y = 0; y < toHeight; y++)
        {
            int sy = Math.Min(height - 1, (int)((y + 0.5) * height / toHeight));
            for (int x = 0; x < toWidth; x++)
            {
                int sx = Math.Min(width - 1, (int)((x + 0.5) * width / toWidth));
                result[(y * toWidth) + x] = mask[(sy * width) + sx];
            }
        }

        return result;
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
