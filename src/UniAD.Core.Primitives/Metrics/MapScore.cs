using System.Buffers;

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
    /// <summary>The fraction of the map's values whose mean is <see cref="ImageScoreKind.TopMean"/> (1 %).</summary>
    public const double TopFraction = 0.01;

    /// <summary>How many values <see cref="ImageScoreKind.TopMean"/> averages in a map of <paramref name="count"/> values: 1 % rounded up, at least one.</summary>
    public static int TopCount(long count) => (int)Math.Max(1, Math.Ceiling(count * TopFraction));

    /// <summary>
    /// The mean of the largest <see cref="TopCount"/> values (float64). Every evaluated image computes it, so the largest
    /// values are selected in linear time and only they are sorted (ascending, then summed: the order of a full sort).
    /// </summary>
    public static double TopMean(ReadOnlySpan<float> map)
    {
        if (map.IsEmpty)
        {
            throw new ArgumentException("An empty map has no top mean.", nameof(map));
        }

        var values = map.ToArray();
        int k = TopCount(values.Length), start = values.Length - k;
        SelectRank(values, start);
        Array.Sort(values, start, k);
        double sum = 0;
        for (int i = start; i < values.Length; i++)
        {
            sum += values[i];
        }

        return sum / k;
    }

    /// <summary>
    /// Reorders <paramref name="values"/> so that the one at <paramref name="rank"/> is the one a full ascending sort puts
    /// there, none before it larger and none after it smaller (Hoare's selection with a median-of-three pivot, in
    /// <see cref="float.CompareTo(float)"/>'s order, which is <see cref="Array.Sort(Array)"/>'s).
    /// </summary>
    private static void SelectRank(float[] values, int rank)
    {
        int lo = 0, hi = values.Length - 1;
        while (hi > lo)
        {
            float a = values[lo], b = values[lo + ((hi - lo) / 2)], c = values[hi];
            float pivot = a.CompareTo(b) < 0
                ? (b.CompareTo(c) < 0 ? b : a.CompareTo(c) < 0 ? c : a)
                : (a.CompareTo(c) < 0 ? a : b.CompareTo(c) < 0 ? c : b);
            int i = lo, j = hi;
            while (i <= j)
            {
                while (values[i].CompareTo(pivot) < 0)
                {
                    i++;
                }

                while (values[j].CompareTo(pivot) > 0)
                {
                    j--;
                }

                if (i <= j)
                {
                    (values[i], values[j]) = (values[j], values[i]);
                    i++;
                    j--;
                }
            }

            if (rank <= j)
            {
                hi = j;
            }
            else if (rank >= i)
            {
                lo = i;
            }
            else
            {
                return;
            }
        }
    }

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
                return WindowMax(map, height, width, poolHeight, poolWidth);
            case ImageScoreKind.PooledMax or ImageScoreKind.PlainMax:
                float max = float.NegativeInfinity;
                foreach (var v in map)
                {
                    max = Math.Max(max, v);
                }

                return max;
            case ImageScoreKind.TopMean:
                return TopMean(map);
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

    /// <summary>
    /// The largest mean of a <paramref name="poolHeight"/> x <paramref name="poolWidth"/> window (stride 1, no padding),
    /// from horizontal window sums of every row slid down the map (float64). The one implementation of the pooled max:
    /// ImageScoring checks its arguments and calls it. The window must fit the map; callers check that.
    /// </summary>
    internal static double WindowMax(ReadOnlySpan<float> map, int height, int width, int poolHeight, int poolWidth)
    {
        int outWidth = width - poolWidth + 1;
        var rows = ArrayPool<double>.Shared.Rent(height * outWidth);
        var window = ArrayPool<double>.Shared.Rent(outWidth);
        try
        {
            // Horizontal window sums of every row, then vertical sliding sums of those.
            for (int y = 0; y < height; y++)
            {
                var row = map.Slice(y * width, width);
                double sum = 0;
                for (int x = 0; x < poolWidth; x++)
                {
                    sum += row[x];
                }

                rows[y * outWidth] = sum;
                for (int x = 1; x < outWidth; x++)
                {
                    sum += (double)row[x + poolWidth - 1] - row[x - 1];
                    rows[(y * outWidth) + x] = sum;
                }
            }

            var sums = window.AsSpan(0, outWidth);
            sums.Clear();
            for (int y = 0; y < poolHeight; y++)
            {
                for (int x = 0; x < outWidth; x++)
                {
                    sums[x] += rows[(y * outWidth) + x];
                }
            }

            double best = double.NegativeInfinity;
            for (int top = 0; ; top++)
            {
                foreach (double s in sums)
                {
                    best = Math.Max(best, s);
                }

                if (top + poolHeight >= height)
                {
                    break;
                }

                for (int x = 0; x < outWidth; x++)
                {
                    sums[x] += rows[((top + poolHeight) * outWidth) + x] - rows[(top * outWidth) + x];
                }
            }

            return best / ((double)poolHeight * poolWidth);
        }
        finally
        {
            ArrayPool<double>.Shared.Return(rows);
            ArrayPool<double>.Shared.Return(window);
        }
    }
}
