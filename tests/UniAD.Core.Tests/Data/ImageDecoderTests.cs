using UniAD.Core.Data;

namespace UniAD.Core.Tests.Data;

/// <summary>Decoding of every pixel format the issue names, from files made byte by byte.</summary>
public sealed class ImageDecoderTests : IDisposable
{
    private readonly TempFolder temp = new();

    public void Dispose() => temp.Dispose();

    /// <summary>A 1 x 1 GIF89a, byte by byte (Skia can read GIF but not write it).</summary>
    private static readonly byte[] OnePixelGif =
    {
        0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x21, 0xF9, 0x04,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x2C, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3B,
    };

    [Fact]
    public void Only_png_jpeg_and_bmp_are_decoded_and_truncation_is_named_as_such()
    {
        // One rule: the formats folder scans take (.png, .jpg, .jpeg, .bmp); a GIF is refused by content, whatever its name.
        var gif = Assert.Throws<ImageFileException>(() => ImageDecoder.Decode(OnePixelGif, "part.png"));
        Assert.Contains("a GIF image: only PNG, JPEG and BMP are supported", gif.Message);

        // A JPEG cut in its headers or in its scan data is "truncated", never "corrupt header" or "unknown format"; one
        // that lacks only its end marker holds every row and decodes.
        var jpeg = File.ReadAllBytes(TestImages.WriteJpeg(temp.File("whole.jpg"), TestImages.Pattern(64, 64, 3)));
        foreach (int length in new[] { 200, jpeg.Length / 2 })
        {
            var cut = Assert.Throws<ImageFileException>(() => ImageDecoder.Decode(jpeg.AsSpan(0, length).ToArray(), $"cut-{length}.jpg"));
            Assert.Contains("truncated", cut.Message);
        }

        Assert.Equal(64, ImageDecoder.Decode(jpeg.AsSpan(0, jpeg.Length - 2).ToArray(), "no-end-marker.jpg").Width);

        var png = File.ReadAllBytes(TestImages.WritePng(temp.File("whole.png"), TestImages.Pattern(64, 64, 3)));
        Assert.Contains("truncated", Assert.Throws<ImageFileException>(() => ImageDecoder.Decode(png.AsSpan(0, 30).ToArray(), "cut.png")).Message);
        Assert.Contains("the format is unknown", Assert.Throws<ImageFileException>(() => ImageDecoder.Decode(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, "x.png")).Message);
    }

    [Fact]
    public void Rgb_png_round_trips_exactly()
    {
        var image = TestImages.Pattern(37, 23);
        var decoded = ImageDecoder.Decode(TestImages.WritePng(temp.File("rgb.png"), image));
        AssertSame(image, decoded);
    }

    [Fact]
    public void Grey_png_becomes_three_equal_channels()
    {
        var png = TestImages.Png(3, 2, colorType: 0, bitDepth: 8, rows: new byte[] { 0, 17, 255, 128, 64, 1 });
        var decoded = Decode(png, "grey.png");
        Assert.Equal((17, 17, 17), Tuple(decoded[1, 0]));
        Assert.Equal((128, 128, 128), Tuple(decoded[0, 1]));
        Assert.Equal((1, 1, 1), Tuple(decoded[2, 1]));
    }

    [Fact]
    public void Palette_png_is_expanded()
    {
        var palette = new byte[] { 10, 20, 30, 200, 100, 50 };
        var png = TestImages.Png(2, 2, colorType: 3, bitDepth: 8, rows: new byte[] { 0, 1, 1, 0 }, palette);
        var decoded = Decode(png, "palette.png");
        Assert.Equal((10, 20, 30), Tuple(decoded[0, 0]));
        Assert.Equal((200, 100, 50), Tuple(decoded[1, 0]));
        Assert.Equal((200, 100, 50), Tuple(decoded[0, 1]));
    }

    [Fact]
    public void Alpha_is_dropped_without_premultiplying()
    {
        // RGBA: a half-transparent and a fully transparent pixel keep their colour, as PIL's convert("RGB") does.
        var png = TestImages.Png(2, 1, colorType: 6, bitDepth: 8, rows: new byte[] { 200, 100, 50, 128, 90, 80, 70, 0 });
        var decoded = Decode(png, "rgba.png");
        Assert.Equal((200, 100, 50), Tuple(decoded[0, 0]));
        Assert.Equal((90, 80, 70), Tuple(decoded[1, 0]));

        var greyAlpha = TestImages.Png(2, 1, colorType: 4, bitDepth: 8, rows: new byte[] { 77, 10, 200, 255 });
        var decodedGrey = Decode(greyAlpha, "grey-alpha.png");
        Assert.Equal((77, 77, 77), Tuple(decodedGrey[0, 0]));
        Assert.Equal((200, 200, 200), Tuple(decodedGrey[1, 0]));
    }

    [Fact]
    public void Sixteen_bit_pngs_scale_to_eight_bits()
    {
        // 16-bit samples (big-endian). PIL keeps the high byte, OpenCV rounds v / 257: within one level.
        ushort[] values = { 0, 0x1234, 0x8000, 0xFFFF };
        var rgbRows = values.SelectMany(v => new[] { (byte)(v >> 8), (byte)v, (byte)(v >> 8), (byte)v, (byte)(v >> 8), (byte)v }).ToArray();
        var rgb = Decode(TestImages.Png(4, 1, colorType: 2, bitDepth: 16, rows: rgbRows), "rgb16.png");
        var greyRows = values.SelectMany(v => new[] { (byte)(v >> 8), (byte)v }).ToArray();
        var grey = Decode(TestImages.Png(4, 1, colorType: 0, bitDepth: 16, rows: greyRows), "grey16.png");
        for (int x = 0; x < values.Length; x++)
        {
            foreach (var decoded in new[] { rgb, grey })
            {
                var (r, g, b) = decoded[x, 0];
                Assert.Equal(r, g);
                Assert.Equal(g, b);
                Assert.InRange(r, (values[x] >> 8) - 1, (values[x] >> 8) + 1);
            }
        }
    }

    [Fact]
    public void Bmp_decodes_exactly()
    {
        var image = TestImages.Pattern(5, 3, seed: 2);
        AssertSame(image, Decode(TestImages.Bmp(image), "image.bmp"));
    }

    [Fact]
    public void Jpeg_decodes_close_to_its_source()
    {
        var image = TestImages.Rgb(64, 48, (x, y, c) => 60 + x + y + (20 * c));
        var decoded = ImageDecoder.Decode(TestImages.WriteJpeg(temp.File("smooth.jpg"), image, quality: 95));
        Assert.Equal((64, 48), (decoded.Width, decoded.Height));
        double error = 0;
        for (int y = 0; y < 48; y++)
        {
            for (int x = 0; x < 64; x++)
            {
                var (a, b) = (image[x, y], decoded[x, y]);
                error += Math.Abs(a.R - b.R) + Math.Abs(a.G - b.G) + Math.Abs(a.B - b.B);
            }
        }

        Assert.True(error / (64 * 48 * 3) < 3, $"mean JPEG error {error / (64 * 48 * 3):F2} levels");
    }

    [Fact]
    public void Preprocessed_grey_image_has_three_planes_normalised_per_channel()
    {
        var png = TestImages.Png(2, 2, colorType: 0, bitDepth: 8, rows: new byte[] { 0, 255, 255, 0 });
        var path = temp.File("grey4.png");
        File.WriteAllBytes(path, png);
        using var t = ImagePreprocessor.LoadImage(path, new PreprocessOptions { InputSize = new GridSize(2, 2) });
        Assert.Equal(new long[] { 3, 2, 2 }, t.shape);
        var values = t.data<float>().ToArray();
        Assert.Equal((0f - 0.485f) / 0.229f, values[0]);
        Assert.Equal((1f - 0.456f) / 0.224f, values[4 + 1]);
        Assert.Equal((1f - 0.406f) / 0.225f, values[8 + 2]);
    }

    private RgbImage Decode(byte[] file, string name)
    {
        var path = temp.File(name);
        File.WriteAllBytes(path, file);
        return ImageDecoder.Decode(path);
    }

    private static (int, int, int) Tuple((byte R, byte G, byte B) p) => (p.R, p.G, p.B);

    private static void AssertSame(RgbImage expected, RgbImage actual)
    {
        Assert.Equal((expected.Width, expected.Height), (actual.Width, actual.Height));
        for (int y = 0; y < expected.Height; y++)
        {
            for (int x = 0; x < expected.Width; x++)
            {
                Assert.Equal(expected[x, y], actual[x, y]);
            }
        }
    }
}
