using System.Runtime.InteropServices;

namespace UniAD.Core.Data;

/// <summary>
/// The reference's training augmentations, all off by default. After the resize: horizontal flip
/// (probability 0.5), vertical flip (0.5), counter-clockwise rotation by 0, 90, 180 or 270 degrees
/// (uniform), applied to image and mask together; then colour jitter on the image only. Every draw comes
/// from the loader's seed, the epoch and the sample's position, so runs repeat exactly.
/// </summary>
public sealed record AugmentationOptions
{
    /// <summary>No augmentation (the reference's default).</summary>
    public static AugmentationOptions None { get; } = new();

    /// <summary>Mirror left-right with probability 0.5 (reference: <c>hflip</c>).</summary>
    public bool HorizontalFlip { get; init; }

    /// <summary>Mirror top-bottom with probability 0.5 (reference: <c>vflip</c>).</summary>
    public bool VerticalFlip { get; init; }

    /// <summary>Rotate by a random multiple of 90 degrees (reference: <c>rotate</c>); needs a square input size.</summary>
    public bool Rotate90 { get; init; }

    /// <summary>Colour jitter of the image, or null for none (reference: <c>colorjitter</c>).</summary>
    public ColorJitterOptions? ColorJitter { get; init; }

    /// <summary>True when any augmentation is switched on.</summary>
    public bool IsEnabled => HorizontalFlip || VerticalFlip || Rotate90 || ColorJitter is not null;

    /// <summary>Checks the values against the input size.</summary>
    /// <exception cref="ArgumentException">Rotation with a non-square input, or impossible jitter values.</exception>
    public void Validate(GridSize inputSize)
    {
        if (Rotate90 && inputSize.Height != inputSize.Width)
        {
            throw new ArgumentException($"{nameof(Rotate90)} needs a square input size, got {inputSize}.", nameof(Rotate90));
        }

        ColorJitter?.Validate();
    }
}

/// <summary>
/// torchvision's <c>ColorJitter</c>: brightness, contrast, saturation and hue factors drawn uniformly
/// ([1 − b, 1 + b] etc., hue in [−h, h] turns), applied in a random order to the [0, 1] image, with
/// probability <see cref="Probability"/> per image.
/// </summary>
public sealed record ColorJitterOptions
{
    /// <summary>Brightness spread b: factor in [max(0, 1 − b), 1 + b].</summary>
    public double Brightness { get; init; } = 0.1;

    /// <summary>Contrast spread: factor in [max(0, 1 − c), 1 + c].</summary>
    public double Contrast { get; init; } = 0.1;

    /// <summary>Saturation spread: factor in [max(0, 1 − s), 1 + s].</summary>
    public double Saturation { get; init; } = 0.1;

    /// <summary>Hue spread h in [0, 0.5]: shift in [−h, h] of a full turn.</summary>
    public double Hue { get; init; } = 0.1;

    /// <summary>Probability that an image is jittered (reference: <c>prob</c>).</summary>
    public double Probability { get; init; } = 1.0;

    /// <summary>Checks the values.</summary>
    /// <exception cref="ArgumentException">A spread is negative or not finite, hue above 0.5, or the probability outside [0, 1].</exception>
    public void Validate()
    {
        foreach (var (value, name) in new[] { (Brightness, nameof(Brightness)), (Contrast, nameof(Contrast)), (Saturation, nameof(Saturation)) })
        {
            if (!(value >= 0) || !double.IsFinite(value))
            {
                throw new ArgumentException($"{nameof(AugmentationOptions.ColorJitter)}.{name} = {value} must be finite and non-negative.", name);
            }
        }

        if (!(Hue >= 0 && Hue <= 0.5))
        {
            throw new ArgumentException($"{nameof(AugmentationOptions.ColorJitter)}.{nameof(Hue)} = {Hue} must lie in [0, 0.5].", nameof(Hue));
        }

        if (!(Probability >= 0 && Probability <= 1))
        {
            throw new ArgumentException($"{nameof(AugmentationOptions.ColorJitter)}.{nameof(Probability)} = {Probability} must lie in [0, 1].", nameof(Probability));
        }
    }
}

/// <summary>The augmentations' pixel work.</summary>
internal static class Augmenter
{
    /// <summary>Draws the geometric transform (in the reference's order: hflip, vflip, rotation).</summary>
    public static (bool FlipX, bool FlipY, int QuarterTurns) DrawGeometry(AugmentationOptions options, SeededRandom random)
    {
        bool flipX = options.HorizontalFlip && random.Chance(0.5);
        bool flipY = options.VerticalFlip && random.Chance(0.5);
        int turns = options.Rotate90 ? random.NextInt(4) : 0;
        return (flipX, flipY, turns);
    }

    /// <summary>Flips then rotates counter-clockwise a row-major width x height grid of T (a pixel or a mask value).</summary>
    public static T[] Transform<T>(T[] source, int width, int height, bool flipX, bool flipY, int quarterTurns)
        where T : unmanaged
    {
        if (!flipX && !flipY && quarterTurns == 0)
        {
            return source;
        }

        var flipped = new T[source.Length];
        for (int y = 0; y < height; y++)
        {
            int sy = flipY ? height - 1 - y : y;
            for (int x = 0; x < width; x++)
            {
                flipped[(y * width) + x] = source[(sy * width) + (flipX ? width - 1 - x : x)];
            }
        }

        for (int t = 0; t < quarterTurns; t++)
        {
            // Square grids only (validated): output (x, y) takes input (n − 1 − y, x).
            var turned = new T[flipped.Length];
            int n = width;
            for (int y = 0; y < n; y++)
            {
                for (int x = 0; x < n; x++)
                {
                    turned[(y * n) + x] = flipped[(x * n) + (n - 1 - y)];
                }
            }

            flipped = turned;
        }

        return flipped;
    }

    /// <summary>Applies the geometric transform to an image.</summary>
    public static RgbImage Transform(RgbImage image, bool flipX, bool flipY, int quarterTurns)
    {
        var pixels = MemoryMarshal.Cast<byte, uint>(image.Buffer).ToArray();
        var moved = Transform(pixels, image.Width, image.Height, flipX, flipY, quarterTurns);
        return ReferenceEquals(moved, pixels) ? image : new RgbImage(image.Width, image.Height, MemoryMarshal.AsBytes(moved.AsSpan()).ToArray());
    }

    /// <summary>Colour jitter in place on planar R, G, B values in [0, 1] (torchvision's tensor semantics).</summary>
    public static void ColorJitter(Span<float> planes, int pixels, ColorJitterOptions options, SeededRandom random)
    {
        if (!random.Chance(options.Probability))
        {
            return;
        }

        var order = new List<int> { 0, 1, 2, 3 };
        random.Shuffle(order);
        double brightness = random.Uniform(Math.Max(0, 1 - options.Brightness), 1 + options.Brightness);
        double contrast = random.Uniform(Math.Max(0, 1 - options.Contrast), 1 + options.Contrast);
        double saturation = random.Uniform(Math.Max(0, 1 - options.Saturation), 1 + options.Saturation);
        double hue = random.Uniform(-options.Hue, options.Hue);
        var r = planes[..pixels];
        var g = planes.Slice(pixels, pixels);
        var b = planes.Slice(2 * pixels, pixels);
        foreach (var op in order)
        {
            switch (op)
            {
                case 0:
                    Blend(r, g, b, (float)brightness, 0f, null);
                    break;
                case 1:
                    double mean = 0;
                    for (int i = 0; i < pixels; i++)
                    {
                        mean += Gray(r[i], g[i], b[i]);
                    }

                    Blend(r, g, b, (float)contrast, (float)(mean / pixels), null);
                    break;
                case 2:
                    Blend(r, g, b, (float)saturation, 0f, Gray);
                    break;
                default:
                    ShiftHue(r, g, b, (float)hue);
                    break;
            }
        }
    }

    private static float Gray(float r, float g, float b) => (0.2989f * r) + (0.587f * g) + (0.114f * b);

    // img·f + other·(1 − f), clamped to [0, 1]; other is a constant or the pixel's grey value.
    private static void Blend(Span<float> r, Span<float> g, Span<float> b, float factor, float constant, Func<float, float, float, float>? perPixel)
    {
        for (int i = 0; i < r.Length; i++)
        {
            float other = perPixel?.Invoke(r[i], g[i], b[i]) ?? constant;
            float rest = (1 - factor) * other;
            r[i] = Math.Clamp((factor * r[i]) + rest, 0f, 1f);
            g[i] = Math.Clamp((factor * g[i]) + rest, 0f, 1f);
            b[i] = Math.Clamp((factor * b[i]) + rest, 0f, 1f);
        }
    }

    private static void ShiftHue(Span<float> r, Span<float> g, Span<float> b, float shift)
    {
        for (int i = 0; i < r.Length; i++)
        {
            float max = Math.Max(r[i], Math.Max(g[i], b[i]));
            float min = Math.Min(r[i], Math.Min(g[i], b[i]));
            float chroma = max - min;
            if (chroma <= 0)
            {
                continue; // grey: hue undefined, nothing to shift
            }

            float h;
            if (max == r[i])
            {
                h = (g[i] - b[i]) / chroma;
            }
            else if (max == g[i])
            {
                h = ((b[i] - r[i]) / chroma) + 2;
            }
            else
            {
                h = ((r[i] - g[i]) / chroma) + 4;
            }

            h = (h / 6) + shift;
            h -= MathF.Floor(h);
            float s = chroma / max;
            (r[i], g[i], b[i]) = FromHsv(h, s, max);
        }
    }

    private static (float R, float G, float B) FromHsv(float h, float s, float v)
    {
        float sector = h * 6;
        int i = Math.Min((int)sector, 5);
        float f = sector - i;
        float p = v * (1 - s);
        float q = v * (1 - (s * f));
        float t = v * (1 - (s * (1 - f)));
        return i switch
        {
            0 => (v, t, p),
            1 => (q, v, p),
            2 => (p, v, t),
            3 => (p, q, v),
            4 => (t, p, v),
            _ => (v, p, q),
        };
    }
}
