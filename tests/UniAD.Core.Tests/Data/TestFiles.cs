using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using UniAD.Core.Data;

namespace UniAD.Core.Tests.Data;

/// <summary>A fresh folder under the system temp folder, deleted on dispose.</summary>
public sealed class TempFolder : IDisposable
{
    public TempFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "uniad-data-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    /// <summary>A path below the folder; its parent folders are created.</summary>
    public string File(params string[] parts)
    {
        var path = System.IO.Path.Combine(new[] { Path }.Concat(parts).ToArray());
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        return path;
    }

    /// <summary>A folder below the folder, created.</summary>
    public string Folder(params string[] parts)
    {
        var path = System.IO.Path.Combine(new[] { Path }.Concat(parts).ToArray());
        Directory.CreateDirectory(path);
        return path;
    }

    public void Dispose()
    {
        if (Directory.Exists(Path))
        {
            Directory.Delete(Path, recursive: true);
        }
    }
}

/// <summary>Real image files made in the tests, byte by byte where the format details matter.</summary>
public static class TestImages
{
    /// <summary>A w x h RGB image whose pixel (x, y) is (f(x, y, 0), f(x, y, 1), f(x, y, 2)).</summary>
    public static RgbImage Rgb(int width, int height, Func<int, int, int, int> f)
    {
        var rgb = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                for (int c = 0; c < 3; c++)
                {
                    rgb[(((y * width) + x) * 3) + c] = (byte)f(x, y, c);
                }
            }
        }

        return RgbImage.FromRgb(width, height, rgb);
    }

    /// <summary>A smooth colourful test pattern.</summary>
    public static RgbImage Pattern(int width, int height, int seed = 0) =>
        Rgb(width, height, (x, y, c) => (((x * (3 + c)) + (y * (5 - c)) + (seed * 37) + ((x * y) % (7 + c))) * 7) & 255);

    public static string WritePng(string path, RgbImage image)
    {
        ImageWriter.WritePng(path, image);
        return path;
    }

    /// <summary>A greyscale PNG mask: 255 where <paramref name="anomalous"/> holds.</summary>
    public static string WriteMask(string path, int width, int height, Func<int, int, bool> anomalous)
    {
        var values = new byte[width * height];
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                values[(y * width) + x] = anomalous(x, y) ? (byte)255 : (byte)0;
            }
        }

        ImageWriter.WriteGrayPng(path, width, height, values);
        return path;
    }

    public static string WriteJpeg(string path, RgbImage image, int quality = 95)
    {
        System.IO.File.WriteAllBytes(path, ImageWriter.EncodeJpeg(image, quality));
        return path;
    }

    /// <summary>
    /// A PNG written chunk by chunk. <paramref name="rows"/> holds the raw scanlines without filter bytes
    /// (filter 0 is added). Colour types: 0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA.
    /// </summary>
    public static byte[] Png(int width, int height, int colorType, int bitDepth, byte[] rows, byte[]? palette = null, byte[]? transparency = null)
    {
        using var output = new MemoryStream();
        output.Write(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A });
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = (byte)bitDepth;
        header[9] = (byte)colorType;
        Chunk(output, "IHDR", header);
        if (palette is not null)
        {
            Chunk(output, "PLTE", palette);
        }

        if (transparency is not null)
        {
            Chunk(output, "tRNS", transparency);
        }

        int rowBytes = height == 0 ? 0 : rows.Length / height;
        using var raw = new MemoryStream();
        for (int y = 0; y < height; y++)
        {
            raw.WriteByte(0);
            raw.Write(rows, y * rowBytes, rowBytes);
        }

        using var compressed = new MemoryStream();
        using (var z = new ZLibStream(compressed, CompressionLevel.Fastest, leaveOpen: true))
        {
            raw.Position = 0;
            raw.CopyTo(z);
        }

        Chunk(output, "IDAT", compressed.ToArray());
        Chunk(output, "IEND", Array.Empty<byte>());
        return output.ToArray();
    }

    /// <summary>A PNG whose header claims <paramref name="width"/> x <paramref name="height"/> pixels but whose data is a few bytes: a decompression bomb's header.</summary>
    public static byte[] PngHeaderClaiming(int width, int height)
    {
        var png = Png(1, 1, 0, 8, new byte[] { 0 });
        BinaryPrimitives.WriteInt32BigEndian(png.AsSpan(16), width);
        BinaryPrimitives.WriteInt32BigEndian(png.AsSpan(20), height);
        BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(29), Crc(png.AsSpan(12, 17)));
        return png;
    }

    /// <summary>A 24-bit uncompressed BMP (bottom-up rows, padded to 4 bytes).</summary>
    public static byte[] Bmp(RgbImage image)
    {
        int rowBytes = ((image.Width * 3) + 3) & ~3;
        int dataBytes = rowBytes * image.Height;
        var bmp = new byte[54 + dataBytes];
        bmp[0] = (byte)'B';
        bmp[1] = (byte)'M';
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(2), bmp.Length);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(10), 54);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(14), 40);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(18), image.Width);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(22), image.Height);
        BinaryPrimitives.WriteInt16LittleEndian(bmp.AsSpan(26), 1);
        BinaryPrimitives.WriteInt16LittleEndian(bmp.AsSpan(28), 24);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(34), dataBytes);
        for (int y = 0; y < image.Height; y++)
        {
            int row = 54 + ((image.Height - 1 - y) * rowBytes);
            for (int x = 0; x < image.Width; x++)
            {
                var (r, g, b) = image[x, y];
                bmp[row + (3 * x)] = b;
                bmp[row + (3 * x) + 1] = g;
                bmp[row + (3 * x) + 2] = r;
            }
        }

        return bmp;
    }

    private static void Chunk(Stream output, string type, byte[] data)
    {
        Span<byte> length = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(length, data.Length);
        output.Write(length);
        var typed = Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        output.Write(typed);
        Span<byte> crc = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, Crc(typed));
        output.Write(crc);
    }

    private static uint Crc(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (var b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? 0xEDB88320 ^ (crc >> 1) : crc >> 1;
            }
        }

        return crc ^ 0xFFFFFFFF;
    }
}
