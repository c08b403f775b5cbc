using UniAD.Core.Data;

namespace UniAD.Core.Tests.Data;

/// <summary>The PIL resampler: coefficients by hand, the vectorised passes against a plain loop, NEAREST's rule.</summary>
public sealed class ResizeTests
{
    [Fact]
    public void Halving_four_pixels_uses_the_widened_triangle()
    {
        // 4 -> 2: scale 2, support 2. Output 0 is centred at 1.0 and covers inputs 0..2 with triangle weights
        // 0.75, 0.75, 0.25 (normalised by 1.75): (0·0.75 + 100·0.75 + 200·0.25) / 1.75 = 71.43 -> 71.
        // Output 1 (centre 3.0) covers inputs 1..3: 0.25, 0.75, 0.75 -> (25 + 150 + 191.25) / 1.75 = 209.3 -> 209.
        var image = TestImages.Rgb(4, 1, (x, _, _) => new[] { 0, 100, 200, 255 }[x]);
        var resized = ImagePreprocessor.Resize(image, 2, 1);
        Assert.Equal((byte)71, resized[0, 0].R);
        Assert.Equal((byte)209, resized[1, 0].R);
    }

    [Theory]
    [InlineData(900, 224)]
    [InlineData(1024, 224)]
    [InlineData(32, 224)]
    [InlineData(7, 3)]
    [InlineData(224, 224)]
    public void Fixed_point_weights_sum_to_one(int inSize, int outSize)
    {
        var taps = PilResize.Taps.Bilinear(inSize, outSize);
        for (int i = 0; i < outSize; i++)
        {
            int sum = taps.Weights.Skip(i * taps.Width).Take(taps.Count[i]).Sum();
            Assert.InRange(sum, (1 << 22) - taps.Count[i], (1 << 22) + taps.Count[i]);
            Assert.InRange(taps.First[i], 0, inSize - taps.Count[i]);
        }
    }

    [Theory]
    [InlineData(50, 37, 13, 11)]
    [InlineData(13, 9, 30, 20)]
    [InlineData(64, 64, 16, 5)]
    [InlineData(31, 17, 31, 40)]
    public void Vectorised_passes_match_a_plain_loop(int width, int height, int outWidth, int outHeight)
    {
        var image = TestImages.Pattern(width, height, seed: width);
        var fast = ImagePreprocessor.Resize(image, outWidth, outHeight);
        var slow = PlainBilinear(image, outWidth, outHeight);
        for (int y = 0; y < outHeight; y++)
        {
            for (int x = 0; x < outWidth; x++)
            {
                Assert.Equal(slow[x, y], fast[x, y]);
            }
        }
    }

    [Fact]
    public void Nearest_picks_floor_of_the_scaled_centre()
    {
        Assert.Equal(new[] { 2, 6, 10, 14 }, PilResize.NearestIndices(16, 4));
        Assert.Equal(new[] { 0, 0, 1, 1, 2, 2 }, PilResize.NearestIndices(3, 6));
        // 900 -> 224: source floor((i + 0.5) · 900 / 224).
        var index = PilResize.NearestIndices(900, 224);
        for (int i = 0; i < 224; i++)
        {
            Assert.Equal((int)Math.Floor((i + 0.5) * 900 / 224.0), index[i]);
        }
    }

    // The same arithmetic written as directly as possible: one channel at a time, no vectors.
    private static RgbImage PlainBilinear(RgbImage image, int outWidth, int outHeight)
    {
        var h = PilResize.Taps.Bilinear(image.Width, outWidth);
        var v = PilResize.Taps.Bilinear(image.Height, outHeight);
        var temp = new int[outWidth, image.Height, 3];
        for (int y = 0; y < image.Height; y++)
        {
            for (int x = 0; x < outWidth; x++)
            {
                for (int c = 0; c < 3; c++)
                {
                    int sum = 1 << 21;
                    for (int k = 0; k < h.Count[x]; k++)
                    {
                        var p = image[h.First[x] + k, y];
                        sum += (c == 0 ? p.R : c == 1 ? p.G : p.B) * h.Weights[(x * h.Width) + k];
                    }

                    temp[x, y, c] = outWidth == image.Width ? (c == 0 ? image[x, y].R : c == 1 ? image[x, y].G : image[x, y].B) : Math.Clamp(sum >> 22, 0, 255);
                }
            }
        }

        var rgb = new byte[outWidth * outHeight * 3];
        for (int y = 0; y < outHeight; y++)
        {
            for (int x = 0; x < outWidth; x++)
            {
                for (int c = 0; c < 3; c++)
                {
                    int sum = 1 << 21;
                    for (int k = 0; k < v.Count[y]; k++)
                    {
                        sum += temp[x, v.First[y] + k, c] * v.Weights[(y * v.Width) + k];
                    }

                    rgb[(((y * outWidth) + x) * 3) + c] = (byte)(outHeight == image.Height ? temp[x, y, c] : Math.Clamp(sum >> 22, 0, 255));
                }
            }
        }

        return RgbImage.FromRgb(outWidth, outHeight, rgb);
    }
}
