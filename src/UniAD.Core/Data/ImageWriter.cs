using SkiaSharp;
using UniAD.Core.Files;

namespace UniAD.Core.Data;

/// <summary>Encodes images with SkiaSharp and writes them atomically (temporary name, then move).</summary>
internal static class ImageWriter
{
    /// <summary>Writes an RGB image as an 8-bit RGB PNG.</summary>
    public static void WritePng(string path, RgbImage image, int zlibLevel = 6) =>
        Write(path, Encode(new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque), image.Buffer, SKEncodedImageFormat.Png, zlibLevel));

    /// <summary>Writes one byte per pixel as an 8-bit greyscale PNG.</summary>
    public static void WriteGrayPng(string path, int width, int height, byte[] values, int zlibLevel = 6) =>
        Write(path, Encode(new SKImageInfo(width, height, SKColorType.Gray8, SKAlphaType.Opaque), values, SKEncodedImageFormat.Png, zlibLevel));

    /// <summary>Encodes an RGB image as a JPEG of the given quality (1..100).</summary>
    public static byte[] EncodeJpeg(RgbImage image, int quality) =>
        Encode(new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque), image.Buffer, SKEncodedImageFormat.Jpeg, quality);

    /// <summary>Encodes an RGB image in any format Skia writes (PNG, JPEG, WEBP); <paramref name="level"/> is the zlib level for PNG, the quality otherwise.</summary>
    public static byte[] Encode(SKImageInfo info, byte[] pixels, SKEncodedImageFormat format, int level)
    {
        using var image = SKImage.FromPixelCopy(info, pixels) ?? throw new InvalidOperationException($"Skia refused a {info.Width} x {info.Height} {info.ColorType} image.");
        using var pixmap = image.PeekPixels();
        using var data = format switch
        {
            SKEncodedImageFormat.Png => pixmap.Encode(new SKPngEncoderOptions(SKPngEncoderFilterFlags.AllFilters, level)),
            SKEncodedImageFormat.Jpeg => pixmap.Encode(new SKJpegEncoderOptions(level, SKJpegEncoderDownsample.Downsample420, SKJpegEncoderAlphaOption.Ignore)),
            _ => pixmap.Encode(format, level),
        };
        return data?.ToArray() ?? throw new InvalidOperationException($"Skia could not encode a {info.Width} x {info.Height} {info.ColorType} image as {format}.");
    }

    private static void Write(string path, byte[] bytes) => AtomicFile.Write(path, stream => stream.Write(bytes));
}
