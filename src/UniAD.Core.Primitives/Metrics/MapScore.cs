namespace UniAD.Core.Metrics;

/// <summary>
/// The image score of one anomaly map without tensors (UniAD.Onnx scores stitched tile maps with it):
/// <see cref="ImageScoreKind.PooledMax"/> averages windows of kh x kw (square k x k unless a height is given; stride 1,
/// no padding) and takes the maximum, falling back to the plain maximum when the map is smaller than the window,
/// as UniAD.Core does.
/// Accumulated in float64 (libtorch pools in float32: the two agree to about 1e-6 relative).
/// </summary>
public static class MapScore
{
    /// <summary>The score of a <paramref name="height"/> x <paramref name="width"/> row-major map, with a square window.</summary>
    /// <exception cref="ArgumentException">The sizes do not match the values, or the window is not positive.</exception>
    public static double Of(ReadOnlySpan<float> map, int height, int width, ImageScoreKind kind, int poolSize) =>
        Of(map, height, width, kind, poolSize, poolSize);

    /// <summary>
    /// The score of a <paramref name="height"/> x <paramref name="width"/> row-major map, with a
    /// <paramref name="poolHeight"/> x <paramref name="poolWidth"/> window for <see cref="ImageScoreKind.PooledMax"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The sizes do not match the values, or a side of the window is not positive.</exception>
    public static double Of(ReadOnlySpan<float> map, int height, int width, ImageScoreKind kind, int poolHeight, int poolWidth)
    {
        if (height < 1 || width < 1 || map.Length != (long)height * width || poolHeight < 1 || poolWidth < 1)
        {
            throw new ArgumentException($"A {height} x {width} map with {map.Length} values and window {poolHeight} x {poolWidth} cannot be scored.", nameof(map));
        }

        switch (kind)
        {
            case ImageScoreKind.PooledMax when height >= poolHeight && width >= poolWidth:
                return PooledMax(map, height, width, poolHeight, poolWidth);
            case ImageScoreKind.PooledMax or ImageScoreKind.PlainMax:
                float max = float.NegativeInfinity;
                foreach (var v in map)
                {
                    max = Math.Max(max, v);
                }

                return max;
            case ImageScoreKind.Mean:
            case ImageScoreKind.Std:
                double sum = 0;
                foreach (var v in map)
                {
                    sum += v;
                }

                double mean = sum / map.Length;
                if (kind == ImageScoreKind.Mean)
                {
                    return mean;
                }

                double squares = 0;
                foreach (var v in map)
                {
                    squares += (v - mean) * (v - mean);
                }

                return Math.Sqrt(squares / map.Length);
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown image score kind.");
        }
    }

    /// <summary>Max over kh x kw window means, from a summed-area table (float64).</summary>
    private static double PooledMax(ReadOnlySpan<float> map, int height, int width, int kh, int kw)
    {
        var table = new double[(long)(height + 1) * (width + 1)];
        int stride = width + 1;
        for (int y = 0; y < height; y++)
        {
            double row = 0;
            for (int x = 0; x < width; x++)
            {
                row += map[(y * width) + x];
                table[((y + 1) * stride) + x + 1] = table[(y * stride) + x + 1] + row;
            }
        }

        double best = double.NegativeInfinity, area = (double)kh * kw;
        for (int y = 0; y + kh <= height; y++)
        {
            for (int x = 0; x + kw <= width; x++)
            {
                double s = table[((y + kh) * stride) + x + kw] - table[(y * stride) + x + kw] - table[((y + kh) * stride) + x] + table[(y * stride) + x];
                best = Math.Max(best, s / area);
            }
        }

        return best;
    }
}
