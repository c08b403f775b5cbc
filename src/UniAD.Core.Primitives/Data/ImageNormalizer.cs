namespace UniAD.Core.Data;

/// <summary>
/// The reference's image preprocessing without tensors: PIL's antialiased BILINEAR resize on the 8-bit image, then
/// ((v / 255) - mean) / std per channel in float32, written channel-first (3 x H x W). UniAD.Core's
/// <c>ImagePreprocessor.ToTensor</c> and UniAD.Onnx's scorer both use it, so their inputs are identical.
/// </summary>
public static class ImageNormalizer
{
    /// <summary>The normalised image, 3 x H x W row-major float32 at <see cref="PreprocessOptions.InputSize"/>.</summary>
    /// <exception cref="ArgumentException">The options are invalid.</exception>
    public static float[] ToChw(RgbImage image, PreprocessOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        options ??= new PreprocessOptions();
        options.Validate();
        var size = options.InputSize;
        var data = new float[3 * size.Count];
        WriteNormalized(PilResize.Bilinear(image, size.Width, size.Height), Lut(options), data);
        return data;
    }

    /// <summary>The normalised image at its own size (no resize), 3 x H x W: a tiled image's working size.</summary>
    /// <exception cref="ArgumentException">The options are invalid.</exception>
    public static float[] ToChwAtOwnSize(RgbImage image, PreprocessOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        return ToChw(image, (options ?? new PreprocessOptions()) with { InputSize = new GridSize(image.Height, image.Width) });
    }

    /// <summary>Per channel, the normalised value of each 8-bit level: ((v / 255) − mean) / std in float32, as torchvision computes it.</summary>
    internal static float[][] Lut(PreprocessOptions options)
    {
        var mean = options.MeanF32();
        var std = options.StdF32();
        var lut = new float[3][];
        for (int c = 0; c < 3; c++)
        {
            lut[c] = new float[256];
            for (int v = 0; v < 256; v++)
            {
                lut[c][v] = ((v / 255f) - mean[c]) / std[c];
            }
        }

        return lut;
    }

    internal static void WriteNormalized(RgbImage image, float[][] lut, Span<float> target)
    {
        int n = image.Width * image.Height;
        var pixels = image.Pixels;
        var r = target[..n];
        var g = target.Slice(n, n);
        var b = target.Slice(2 * n, n);
        float[] lr = lut[0], lg = lut[1], lb = lut[2];
        for (int i = 0, j = 0; i < n; i++, j += 4)
        {
            r[i] = lr[pixels[j]];
            g[i] = lg[pixels[j + 1]];
            b[i] = lb[pixels[j + 2]];
        }
    }

}
