namespace UniAD.Core.Detection;

/// <summary>
/// Resizing anomaly maps without tensors: bilinear with half-pixel centres and no antialiasing, the rule of
/// libtorch's <c>interpolate(mode: bilinear, align_corners: false)</c> that UniAD.Core applies to maps (source
/// coordinate (d + 0.5) x in / out - 0.5, clamped at 0; float32 arithmetic).
/// </summary>
public static class MapResize
{
    /// <summary>The <paramref name="height"/> x <paramref name="width"/> map resized to <paramref name="toHeight"/> x <paramref name="toWidth"/> (row-major).</summary>
    /// <exception cref="ArgumentException">The sizes do not match the values or are not positive.</exception>
    public static float[] Bilinear(ReadOnlySpan<float> map, int height, int width, int toHeight, int toWidth)
    {
        if (height < 1 || width < 1 || toHeight < 1 || toWidth < 1 || map.Length != (long)height * width)
        {
            throw new ArgumentException($"Cannot resize {map.Length} values as {height} x {width} to {toHeight} x {toWidth}.", nameof(map));
        }

        if (height == toHeight && width == toWidth)
        {
            return map.ToArray();
        }

        var (y0, y1, ly) = Axis(height, toHeight);
        var (x0, x1, lx) = Axis(width, toWidth);
        var result = new float[(long)toHeight * toWidth];
        for (int y = 0; y < toHeight; y++)
        {
            float wy1 = ly[y], wy0 = 1f - wy1;
            int r0 = y0[y] * width, r1 = y1[y] * width;
            for (int x = 0; x < toWidth; x++)
            {
                float wx1 = lx[x], wx0 = 1f - wx1;
                result[(y * toWidth) + x] = (wy0 * ((wx0 * map[r0 + x0[x]]) + (wx1 * map[r0 + x1[x]])))
                    + (wy1 * ((wx0 * map[r1 + x0[x]]) + (wx1 * map[r1 + x1[x]])));
            }
        }

        return result;
    }

    private static (int[] I0, int[] I1, float[] Lambda) Axis(int input, int output)
    {
        float scale = (float)input / output;
        var i0 = new int[output];
        var i1 = new int[output];
        var lambda = new float[output];
        for (int d = 0; d < output; d++)
        {
            float source = Math.Max(0f, ((d + 0.5f) * scale) - 0.5f);
            int lower = Math.Min((int)source, input - 1);
            i0[d] = lower;
            i1[d] = lower < input - 1 ? lower + 1 : lower;
            lambda[d] = source - lower;
        }

        return (i0, i1, lambda);
    }
}
