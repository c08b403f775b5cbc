using SkiaSharp;

namespace UniAD.Core.Data;

/// <summary>
/// Decodes PNG, JPEG and BMP files with SkiaSharp into 8-bit RGB (other formats Skia could read, GIF or WEBP among them,
/// are refused by content, as folder scans skip them by extension: one rule everywhere):
/// grey and palette images are expanded, alpha is dropped without blending (as PIL's
/// <c>convert("RGB")</c> does), 16-bit samples are scaled to 8 bits by Skia, colours are not
/// colour-managed and EXIF orientation is not applied (neither does PIL's <c>Image.open</c>).
/// </summary>
public static class ImageDecoder
{
    /// <summary>PIL's decompression-bomb threshold (<c>Image.MAX_IMAGE_PIXELS</c>): 89,478,485 pixels.</summary>
    public const long DefaultMaxPixels = 89_478_485;

    /// <summary>Decodes an image file.</summary>
    /// <param name="path">The file.</param>
    /// <param name="maxPixels">Images with more pixels than this are refused before any pixel is decoded.</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ImageFileException">The file is empty, not an image, corrupt, truncated or too large.</exception>
    public static RgbImage Decode(string path, long maxPixels = DefaultMaxPixels)
    {
        var (width, height, rgba) = DecodeRgba(ReadFile(path), path, maxPixels);
        return new RgbImage(width, height, rgba);
    }

    /// <summary>Decodes an encoded image held in memory.</summary>
    /// <param name="encoded">The file's bytes.</param>
    /// <param name="name">A name for messages (a path or an identifier).</param>
    /// <param name="maxPixels">Images with more pixels than this are refused before any pixel is decoded.</param>
    /// <exception cref="ImageFileException">The data is empty, not an image, corrupt, truncated or too large.</exception>
    public static RgbImage Decode(byte[] encoded, string name, long maxPixels = DefaultMaxPixels)
    {
        ArgumentNullException.ThrowIfNull(encoded);
        var (width, height, rgba) = DecodeRgba(encoded, name, maxPixels);
        return new RgbImage(width, height, rgba);
    }

    /// <summary>
    /// The width and height an encoded image's header declares, without decoding a pixel (a service uses it to budget
    /// memory before decoding); null when the header cannot be read.
    /// </summary>
    public static (int Width, int Height)? ReadSize(ReadOnlySpan<byte> encoded)
    {
        if (encoded.IsEmpty)
        {
            return null;
        }

        using var data = CreateData(encoded.ToArray());
        using var codec = SKCodec.Create(data);
        return codec is null ? null : (codec.Info.Width, codec.Info.Height);
    }

    /// <summary>
    /// Decodes a mask: grey values (colour masks are first turned grey with PIL's ITU-R 601-2 luma
    /// rounding), any value above 0 is anomalous.
    /// </summary>
    internal static BinaryMask DecodeMask(string path, long maxPixels)
    {
        var (width, height, rgba) = DecodeRgba(ReadFile(path), path, maxPixels);
        var values = new byte[width * height];
        for (int i = 0, j = 0; i < values.Length; i++, j += 4)
        {
            // PIL: L = (R·19595 + G·38470 + B·7471 + 0x8000) >> 16, so L > 0 exactly when the sum reaches 65536.
            int luma = (rgba[j] * 19595) + (rgba[j + 1] * 38470) + (rgba[j + 2] * 7471) + 0x8000;
            values[i] = luma >= 65536 ? (byte)1 : (byte)0;
        }

        return new BinaryMask(width, height, values);
    }

    internal static void CheckSize(string name, long width, long height, long maxPixels)
    {
        if (width <= 0 || height <= 0)
        {
            throw new ImageFileException(name, $"the image claims a size of {width} x {height} pixels.");
        }

        if (width * height > maxPixels)
        {
            throw new ImageFileException(name, $"the image is {width} x {height} = {width * height:N0} pixels, more than the limit of {maxPixels:N0} (a decompression bomb?). Raise {nameof(PreprocessOptions)}.{nameof(PreprocessOptions.MaxImagePixels)} if the image is genuine.");
        }

        if (width * height * 4 > Array.MaxLength)
        {
            throw new ImageFileException(name, $"the image is {width} x {height} pixels, too large to decode into one buffer.");
        }
    }

    private static byte[] ReadFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Image file '{path}' does not exist.", path);
        }

        return File.ReadAllBytes(path);
    }

    /// <summary>The version of the SkiaSharp package loaded (its informational version without the commit), which the native library must match.</summary>
    internal static string SkiaSharpVersion =>
        (System.Reflection.CustomAttributeExtensions.GetCustomAttribute<System.Reflection.AssemblyInformationalVersionAttribute>(typeof(SKData).Assembly)?.InformationalVersion ?? "?").Split('+')[0];

    /// <summary>The first call into SkiaSharp's native library: a missing library gets a message naming the package to add.</summary>
    /// <exception cref="DllNotFoundException">libSkiaSharp is not in the application.</exception>
    private static SKData CreateData(byte[] encoded)
    {
        try
        {
            return SKData.CreateCopy(encoded);
        }
        catch (Exception ex) when (ex is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException)
        {
            throw new DllNotFoundException(
                "SkiaSharp's native library (libSkiaSharp) cannot be loaded, so images cannot be decoded. " + (OperatingSystem.IsLinux()
                    ? $"On Linux the application references it, at the version of SkiaSharp it uses ({SkiaSharpVersion}): <PackageReference Include=\"SkiaSharp.NativeAssets.Linux.NoDependencies\" Version=\"{SkiaSharpVersion}\" /> (or SkiaSharp.NativeAssets.Linux, which needs fontconfig)."
                    : $"Reference the SkiaSharp native assets package for this platform at SkiaSharp's version ({SkiaSharpVersion}; SkiaSharp.NativeAssets.Win32 or .macOS come with SkiaSharp).") + $" ({NativeLibraryErrors.Innermost(ex).Message})",
                ex);
        }
    }

    /// <summary>
    /// Why Skia could not even read the header: a known signature whose file lacks its end marker is truncated (a JPEG
    /// cut before its scan data is refused here, not by the pixel decoder); a known signature otherwise has a corrupt
    /// header; anything else is of an unknown format.
    /// </summary>
    private static string Unreadable(byte[] encoded)
    {
        ReadOnlySpan<byte> bytes = encoded;
        string? format = bytes.StartsWith(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }) ? "PNG"
            : bytes.StartsWith(new byte[] { 0xFF, 0xD8, 0xFF }) ? "JPEG"
            : bytes.StartsWith("BM"u8) ? "BMP"
            : bytes.StartsWith("GIF8"u8) ? "GIF"
            : null;
        bool complete = format switch
        {
            "PNG" => bytes.EndsWith(new byte[] { (byte)'I', (byte)'E', (byte)'N', (byte)'D', 0xAE, 0x42, 0x60, 0x82 }),
            "JPEG" => bytes.EndsWith(new byte[] { 0xFF, 0xD9 }),
            _ => true,
        };
        return format switch
        {
            null => "not a readable image: the format is unknown (PNG, JPEG and BMP are supported).",
            "GIF" => "a GIF image: only PNG, JPEG and BMP are supported (convert it first).",
            _ when !complete => $"the image data is truncated (the {format} file of {encoded.Length:N0} bytes ends before its end marker).",
            _ => $"not a readable image: the {format} header is corrupt.",
        };
    }

    private static (int Width, int Height, byte[] Rgba) DecodeRgba(byte[] encoded, string name, long maxPixels)
    {
        if (encoded.Length == 0)
        {
            throw new ImageFileException(name, "the file is empty (0 bytes).");
        }

        using var data = CreateData(encoded);
        using var codec = SKCodec.Create(data);
        if (codec is null)
        {
            throw new ImageFileException(name, Unreadable(encoded));
        }

        if (codec.EncodedFormat is not (SKEncodedImageFormat.Png or SKEncodedImageFormat.Jpeg or SKEncodedImageFormat.Bmp))
        {
            throw new ImageFileException(name, $"a {codec.EncodedFormat.ToString().ToUpperInvariant()} image: only PNG, JPEG and BMP are supported (convert it first).");
        }

        var info = codec.Info;
        CheckSize(name, info.Width, info.Height, maxPixels);

        // No colour space on the target: Skia converts pixel formats only, never colours.
        var alpha = info.AlphaType == SKAlphaType.Opaque ? SKAlphaType.Opaque : SKAlphaType.Unpremul;
        var target = new SKImageInfo(info.Width, info.Height, SKColorType.Rgba8888, alpha);
        var rgba = new byte[info.Width * info.Height * 4];
        var result = codec.GetPixels(target, rgba);
        return result switch
        {
            SKCodecResult.Success => (info.Width, info.Height, rgba),
            SKCodecResult.IncompleteInput => throw new ImageFileException(name, "the image data is truncated (the file ends before the last row)."),
            _ => throw new ImageFileException(name, $"the image data is corrupt ({result})."),
        };
    }
}
