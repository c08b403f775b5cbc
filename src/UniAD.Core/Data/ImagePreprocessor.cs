using static TorchSharp.torch;

namespace UniAD.Core.Data;

/// <summary>
/// The reference's preprocessing, one image at a time: decode (<see cref="ImageDecoder"/>), resize with
/// PIL's antialiased BILINEAR filter on the 8-bit image, scale to [0, 1], normalise per channel; masks
/// resized with NEAREST and binarised (> 0 is anomalous). The same arithmetic as PIL and torchvision, so
/// the tensors match the reference's (see the preprocessing parity test for the measured difference).
/// </summary>
public static class ImagePreprocessor
{
    /// <summary>Decodes and preprocesses an image file into a 3 x H x W float32 tensor (normalised).</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ImageFileException">The file is empty, corrupt, truncated or too large.</exception>
    public static Tensor LoadImage(string path, PreprocessOptions? options = null)
    {
        options = Checked(options);
        return ToTensor(ImageDecoder.Decode(path, options.MaxImagePixels), options);
    }

    /// <summary>Preprocesses a decoded image into a 3 x H x W float32 tensor (normalised).</summary>
    public static Tensor ToTensor(RgbImage image, PreprocessOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        options = Checked(options);
        var size = options.InputSize;
        return tensor(ImageNormalizer.ToChw(image, options), new long[] { 3, size.Height, size.Width }, device: CPU);
    }

    /// <summary>Decodes a mask file into a 1 x H x W float32 tensor of 0 (normal) and 1 (anomalous: grey value above 0).</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ImageFileException">The file is empty, corrupt, truncated or too large.</exception>
    public static Tensor LoadMask(string path, PreprocessOptions? options = null)
    {
        options = Checked(options);
        var size = options.InputSize;
        var mask = PilResize.Nearest(ImageDecoder.DecodeMask(path, options.MaxImagePixels), size.Width, size.Height);
        var data = new float[size.Count];
        WriteMask(mask.Values, data);
        return tensor(data, new long[] { 1, size.Height, size.Width }, device: CPU);
    }

    /// <summary>Resizes with PIL's BILINEAR filter (antialiased when shrinking), on 8-bit values with PIL's fixed-point rounding.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A target size is not positive.</exception>
    public static RgbImage Resize(RgbImage image, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(image);
        return PilResize.Bilinear(image, width, height);
    }

    /// <summary>
    /// Reads, checks, resizes and (optionally) augments one sample, writing the normalised image (3 x H x W)
    /// and, when <paramref name="mask"/> is not empty, its mask (H x W, 0 or 1).
    /// </summary>
    internal static void Prepare(IImageSource source, ImageSample sample, PreprocessOptions options, float[][] lut, AugmentationOptions augmentation, SeededRandom? random, Span<float> image, Span<float> mask)
    {
        var size = options.InputSize;
        var decoded = source.ReadImage(sample, options.MaxImagePixels);
        BinaryMask? binary = null;
        if (!mask.IsEmpty && sample.MaskPath is { } maskPath)
        {
            binary = ImageDecoder.DecodeMask(maskPath, options.MaxImagePixels);
            if (binary.Width != decoded.Width || binary.Height != decoded.Height)
            {
                throw new ImageFileException(maskPath, $"the mask is {binary.Width} x {binary.Height} pixels but its image '{sample.ImagePath}' is {decoded.Width} x {decoded.Height}.");
            }

            binary = PilResize.Nearest(binary, size.Width, size.Height);
        }

        var resized = PilResize.Bilinear(decoded, size.Width, size.Height);
        byte[]? maskValues = binary?.Values;
        if (random is not null && augmentation.IsEnabled)
        {
            var (flipX, flipY, turns) = Augmenter.DrawGeometry(augmentation, random);
            resized = Augmenter.Transform(resized, flipX, flipY, turns);
            if (maskValues is not null)
            {
                maskValues = Augmenter.Transform(maskValues, size.Width, size.Height, flipX, flipY, turns);
            }

            if (augmentation.ColorJitter is { } jitter)
            {
                WriteJittered(resized, options, jitter, random, image);
            }
            else
            {
                WriteNormalized(resized, lut, image);
            }
        }
        else
        {
            WriteNormalized(resized, lut, image);
        }

        if (!mask.IsEmpty)
        {
            if (maskValues is not null)
            {
                WriteMask(maskValues, mask);
            }
            else
            {
                // No mask file: all normal for a good image. An anomalous image without a mask has no pixel
                // labels (ImageSample.HasPixelLabels); it gets zeros, which the batch marks as no mask
                // (ImageBatch.HasMask) and the metrics ignore. (The reference invented an all-ones mask.)
                mask.Fill(0f);
            }
        }
    }

    /// <summary>Per channel, the normalised value of each 8-bit level (see <see cref="ImageNormalizer"/>).</summary>
    internal static float[][] Lut(PreprocessOptions options) => ImageNormalizer.Lut(options);

    private static void WriteNormalized(RgbImage image, float[][] lut, Span<float> target) => ImageNormalizer.WriteNormalized(image, lut, target);

    private static void WriteJittered(RgbImage image, PreprocessOptions options, ColorJitterOptions jitter, SeededRandom random, Span<float> target)
    {
        int n = image.Width * image.Height;
        var pixels = image.Pixels;
        for (int i = 0, j = 0; i < n; i++, j += 4)
        {
            target[i] = pixels[j] / 255f;
            target[n + i] = pixels[j + 1] / 255f;
            target[(2 * n) + i] = pixels[j + 2] / 255f;
        }

        Augmenter.ColorJitter(target, n, jitter, random);
        var mean = options.MeanF32();
        var std = options.StdF32();
        for (int c = 0; c < 3; c++)
        {
            var plane = target.Slice(c * n, n);
            for (int i = 0; i < n; i++)
            {
                plane[i] = (plane[i] - mean[c]) / std[c];
            }
        }
    }

    private static void WriteMask(byte[] values, Span<float> target)
    {
        for (int i = 0; i < values.Length; i++)
        {
            target[i] = values[i];
        }
    }

    private static PreprocessOptions Checked(PreprocessOptions? options)
    {
        options ??= new PreprocessOptions();
        options.Validate();
        return options;
    }
}
