namespace UniAD.Core.Data;

/// <summary>
/// A decoded 8-bit RGB image. Pixels are row-major with 4 bytes each (R, G, B and a padding byte that is
/// ignored), the layout the decoder and the resampler work in.
/// </summary>
public sealed class RgbImage
{
    private readonly byte[] pixels;

    /// <summary>Wraps a pixel buffer of <paramref name="width"/> x <paramref name="height"/> x 4 bytes (not copied).</summary>
    /// <exception cref="ArgumentException">A size is not positive or the buffer has the wrong length.</exception>
    public RgbImage(int width, int height, byte[] pixels)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        if (width <= 0 || height <= 0)
        {
            throw new ArgumentException($"An image needs a positive size, got {width} x {height}.");
        }

        if (pixels.LongLength != (long)width * height * 4)
        {
            throw new ArgumentException($"A {width} x {height} image needs {(long)width * height * 4} bytes (4 per pixel), got {pixels.LongLength}.", nameof(pixels));
        }

        Width = width;
        Height = height;
        this.pixels = pixels;
    }

    /// <summary>Columns.</summary>
    public int Width { get; }

    /// <summary>Rows.</summary>
    public int Height { get; }

    /// <summary>The pixels: row-major, 4 bytes per pixel (R, G, B, padding).</summary>
    public ReadOnlySpan<byte> Pixels => pixels;

    /// <summary>The red, green and blue values of pixel (<paramref name="x"/>, <paramref name="y"/>).</summary>
    public (byte R, byte G, byte B) this[int x, int y]
    {
        get
        {
            if ((uint)x >= (uint)Width || (uint)y >= (uint)Height)
            {
                throw new ArgumentOutOfRangeException(nameof(x), $"({x}, {y}) lies outside the {Width} x {Height} image.");
            }

            int i = ((y * Width) + x) * 4;
            return (pixels[i], pixels[i + 1], pixels[i + 2]);
        }
    }

    /// <summary>An image from 3-byte RGB pixels (row-major), copied into the 4-byte layout.</summary>
    /// <exception cref="ArgumentException">A size is not positive or the buffer has the wrong length.</exception>
    public static RgbImage FromRgb(int width, int height, ReadOnlySpan<byte> rgb)
    {
        if (width <= 0 || height <= 0 || rgb.Length != (long)width * height * 3)
        {
            throw new ArgumentException($"A {width} x {height} RGB image needs {(long)Math.Max(width, 0) * Math.Max(height, 0) * 3} bytes, got {rgb.Length}.", nameof(rgb));
        }

        var data = new byte[width * height * 4];
        for (int i = 0, j = 0; i < rgb.Length; i += 3, j += 4)
        {
            data[j] = rgb[i];
            data[j + 1] = rgb[i + 1];
            data[j + 2] = rgb[i + 2];
            data[j + 3] = 255;
        }

        return new RgbImage(width, height, data);
    }

    /// <summary>The buffer itself, for the library's own pixel loops.</summary>
    internal byte[] Buffer => pixels;
}

/// <summary>A decoded mask: one byte per pixel, 1 where anomalous (any grey value above 0), else 0.</summary>
internal sealed class BinaryMask
{
    public BinaryMask(int width, int height, byte[] values)
    {
        Width = width;
        Height = height;
        Values = values;
    }

    public int Width { get; }

    public int Height { get; }

    public byte[] Values { get; }
}
