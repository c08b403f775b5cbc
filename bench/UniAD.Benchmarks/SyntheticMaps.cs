/// <summary>
/// Seeded synthetic anomaly maps and masks, one image at a time (so a whole test set never sits in memory):
/// a smooth background of a few Gaussian bumps plus pixel noise; about half the images carry one to three
/// rectangular or elliptical defects, where the mask is 1 and the map is raised by a random amount.
/// Image i depends only on the seed and i, not on how the images are batched.
/// </summary>
internal sealed class SyntheticMaps(int size, int seed)
{
    public int Size { get; } = size;

    public void Fill(int image, Span<float> map, Span<float> mask)
    {
        var rng = new Random(unchecked((seed * 1_000_003) + image));
        int n = Size;
        var gx = new float[n];
        var gy = new float[n];
        map[..(n * n)].Fill(0.5f);
        mask[..(n * n)].Clear();
        for (int bump = 0; bump < 3; bump++)
        {
            double cx = rng.NextDouble() * n, cy = rng.NextDouble() * n, sigma = 20 + (rng.NextDouble() * 40), amp = 0.2 + (rng.NextDouble() * 0.4);
            for (int i = 0; i < n; i++)
            {
                gx[i] = (float)(amp * Math.Exp(-(i - cx) * (i - cx) / (2 * sigma * sigma)));
                gy[i] = (float)Math.Exp(-(i - cy) * (i - cy) / (2 * sigma * sigma));
            }

            for (int y = 0; y < n; y++)
            {
                var row = map.Slice(y * n, n);
                for (int x = 0; x < n; x++)
                {
                    row[x] += gx[x] * gy[y];
                }
            }
        }

        for (int p = 0; p < n * n; p++)
        {
            map[p] += 0.15f * rng.NextSingle();
        }

        if (rng.NextDouble() >= 0.5)
        {
            return;
        }

        int defects = 1 + rng.Next(3);
        for (int d = 0; d < defects; d++)
        {
            int w = 5 + rng.Next(46), h = 5 + rng.Next(46), left = rng.Next(n - w), top = rng.Next(n - h);
            bool ellipse = rng.Next(2) == 0;
            float lift = 0.1f + (0.4f * rng.NextSingle());
            for (int y = top; y < top + h; y++)
            {
                for (int x = left; x < left + w; x++)
                {
                    double u = ((x - left + 0.5) / w) - 0.5, v = ((y - top + 0.5) / h) - 0.5;
                    if (!ellipse || (u * u) + (v * v) <= 0.25)
                    {
                        mask[(y * n) + x] = 1f;
                        map[(y * n) + x] += lift * (0.5f + rng.NextSingle());
                    }
                }
            }
        }
    }
}
