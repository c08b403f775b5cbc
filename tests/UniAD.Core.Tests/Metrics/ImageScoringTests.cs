using UniAD.Core.Metrics;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Metrics;

public sealed class ImageScoringTests
{
    [Fact]
    public void Small_map_matches_hand_computed_scores()
    {
        // 3 x 3 map; 2 x 2 windows: (1+2+4+5)/4 = 3, (2+3+5+6)/4 = 4, (4+5+7+8)/4 = 6, (5+6+8+9)/4 = 7.
        float[] map = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        var s = ImageScoring.Compute(map, 3, 3, poolSize: 2);

        Assert.Equal(7.0, s.PooledMax, 1e-15);
        Assert.Equal(5.0, s.Mean, 1e-15);
        Assert.Equal(Math.Sqrt(60.0 / 9), s.Std, 1e-14); // population: Σ (x − 5)² = 60, / 9
        Assert.Equal(9.0, s.PlainMax);
        Assert.Equal(9.0, ImageScoring.PooledMax(map, 3, 3, poolSize: 1));
        Assert.Equal(5.0, ImageScoring.PooledMax(map, 3, 3, poolSize: 3));
    }

    [Fact]
    public void Rectangular_windows_match_hand_computed_scores()
    {
        // 3 x 3 map 1..9: a 1 x 3 window averages a row (2, 5, 8), a 3 x 1 window a column (4, 5, 6), 2 x 3 two rows (3.5, 6.5).
        float[] map = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        Assert.Equal(8.0, ImageScoring.PooledMax(map, 3, 3, poolHeight: 1, poolWidth: 3), 1e-15);
        Assert.Equal(6.0, ImageScoring.PooledMax(map, 3, 3, poolHeight: 3, poolWidth: 1), 1e-15);
        Assert.Equal(6.5, ImageScoring.PooledMax(map, 3, 3, poolHeight: 2, poolWidth: 3), 1e-15);
        Assert.Equal(6.5, ImageScoring.Compute(map, 3, 3, poolHeight: 2, poolWidth: 3).PooledMax, 1e-15);
        Assert.Equal(6.5, MapScore.Of(map, 3, 3, ImageScoreKind.PooledMax, poolHeight: 2, poolWidth: 3), 1e-15);
        Assert.Equal(ImageScoring.PooledMax(map, 3, 3, poolSize: 2), ImageScoring.PooledMax(map, 3, 3, 2, 2));

        // A window that does not fit names its side; MapScore falls back to the plain max as the detector does.
        Assert.Equal("poolHeight", Assert.Throws<ArgumentOutOfRangeException>(() => ImageScoring.PooledMax(map, 3, 3, poolHeight: 4, poolWidth: 1)).ParamName);
        Assert.Equal("poolWidth", Assert.Throws<ArgumentOutOfRangeException>(() => ImageScoring.PooledMax(map, 3, 3, poolHeight: 1, poolWidth: 0)).ParamName);
        Assert.Equal(9.0, MapScore.Of(map, 3, 3, ImageScoreKind.PooledMax, poolHeight: 1, poolWidth: 4));
        Assert.Throws<ArgumentException>(() => MapScore.Of(map, 3, 3, ImageScoreKind.PooledMax, poolHeight: 0, poolWidth: 2));
    }

    [Theory]
    [InlineData(20, 23, 2, 16)]
    [InlineData(31, 17, 9, 3)]
    [InlineData(12, 40, 12, 1)]
    public void Rectangular_pooled_max_equals_an_explicit_window_search_and_libtorch(int height, int width, int poolHeight, int poolWidth)
    {
        var rng = new Random((height * 1000) + (width * 10) + poolHeight);
        var map = Enumerable.Range(0, height * width).Select(_ => (float)((rng.NextDouble() * 4) - 1)).ToArray();
        double expected = double.NegativeInfinity;
        for (int y = 0; y + poolHeight <= height; y++)
        {
            for (int x = 0; x + poolWidth <= width; x++)
            {
                double sum = 0;
                for (int dy = 0; dy < poolHeight; dy++)
                {
                    for (int dx = 0; dx < poolWidth; dx++)
                    {
                        sum += map[((y + dy) * width) + x + dx];
                    }
                }

                expected = Math.Max(expected, sum / (poolHeight * poolWidth));
            }
        }

        Assert.Equal(expected, ImageScoring.PooledMax(map, height, width, poolHeight, poolWidth), 1e-12);
        Assert.Equal(expected, MapScore.Of(map, height, width, ImageScoreKind.PooledMax, poolHeight, poolWidth), 1e-12);
        using var t = tensor(map).reshape(1, 1, height, width);
        using var pooled = nn.functional.avg_pool2d(t, [poolHeight, poolWidth], [1, 1]);
        Assert.Equal(expected, pooled.max().item<float>(), 1e-5);
        Assert.Equal(expected, ImageScoring.Compute(t, poolHeight, poolWidth)[0].PooledMax, 1e-12);
    }

    [Theory]
    [InlineData(20, 23, 16)]
    [InlineData(16, 16, 16)]
    [InlineData(31, 17, 4)]
    public void Pooled_max_equals_an_explicit_window_search(int height, int width, int pool)
    {
        var rng = new Random(height * 100 + width);
        var map = Enumerable.Range(0, height * width).Select(_ => (float)((rng.NextDouble() * 4) - 1)).ToArray();
        double best = double.NegativeInfinity;
        for (int top = 0; top + pool <= height; top++)
        {
            for (int left = 0; left + pool <= width; left++)
            {
                double sum = 0;
                for (int y = top; y < top + pool; y++)
                {
                    for (int x = left; x < left + pool; x++)
                    {
                        sum += map[(y * width) + x];
                    }
                }

                best = Math.Max(best, sum / (pool * pool));
            }
        }

        Assert.Equal(best, ImageScoring.PooledMax(map, height, width, pool), 1e-12);
    }

    [Fact]
    public void Scores_index_by_kind()
    {
        var s = new ImageScores(1, 2, 3, 4) { TopMean = 5 };
        Assert.Equal([1.0, 2.0, 3.0, 4.0, 5.0], ImageScoring.Kinds.Select(k => s[k]));
        Assert.Equal(["max", "mean", "std", "plainmax", "topmean"], ImageScoring.Kinds.Select(ImageScoring.Name));
    }

    [Fact]
    public void The_top_mean_averages_the_largest_one_percent_rounded_up()
    {
        // 250 values 0..249: 1 % is 2.5, rounded up to 3 values: 247, 248, 249.
        var map = Enumerable.Range(0, 250).Select(i => (float)((i * 37) % 250)).ToArray(); // a permutation of 0..249
        Assert.Equal(248.0, UniAD.Core.Metrics.MapScore.TopMean(map), 12);
        Assert.Equal(248.0, ImageScoring.Compute(map, 10, 25, 2).TopMean, 12);
        Assert.Equal(248.0, UniAD.Core.Metrics.MapScore.Of(map, 10, 25, ImageScoreKind.TopMean, 16), 12);
        Assert.Equal(3, UniAD.Core.Metrics.MapScore.TopCount(250));
        Assert.Equal(1, UniAD.Core.Metrics.MapScore.TopCount(7)); // fewer than 100 values: the maximum
        Assert.Equal(9.0, UniAD.Core.Metrics.MapScore.TopMean(new float[] { 1, 9, 3 }));
        Assert.Throws<ArgumentException>(() => MetricKeys.ReferenceAuroc("x", ImageScoreKind.TopMean));
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(99, 1)]
    [InlineData(101, 2)]
    [InlineData(65536, 3)]
    [InlineData(230400, 4)]
    public void The_top_mean_equals_the_mean_of_a_full_sorts_largest_values_exactly(int count, int seed)
    {
        // Random values with many ties (a few hundred distinct values), signed zeros, and sorted or reversed runs: the
        // selection must give bit for bit the sum a full ascending sort gives.
        var random = new Random(seed);
        var map = Enumerable.Range(0, count).Select(i => i % 97 == 0 ? -0f : (float)Math.Round(random.NextDouble() * 300, 1) - 150).ToArray();
        Array.Sort(map, 0, count / 3);
        Array.Reverse(map, count / 3, count / 3);
        var sorted = map.ToArray();
        Array.Sort(sorted);
        int k = UniAD.Core.Metrics.MapScore.TopCount(count);
        double expected = 0;
        for (int i = count - k; i < count; i++)
        {
            expected += sorted[i];
        }

        Assert.Equal(expected / k, UniAD.Core.Metrics.MapScore.TopMean(map));
        Assert.Equal(5.0, UniAD.Core.Metrics.MapScore.TopMean(Enumerable.Repeat(5f, count).ToArray()));
    }

    [Fact]
    public void Tensor_overload_scores_every_map()
    {
        var data = Enumerable.Range(0, 2 * 16 * 16).Select(i => (float)(i % 37)).ToArray();
        using var maps = tensor(data, [2, 1, 16, 16]);
        var scores = ImageScoring.Compute(maps);

        Assert.Equal(2, scores.Count);
        Assert.Equal(ImageScoring.Compute(data.AsSpan(256, 256), 16, 16), scores[1]);
    }

    [Fact]
    public void Bad_input_is_rejected()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => ImageScoring.PooledMax(new float[15 * 20], 15, 20));
        Assert.Contains("between 1 and the map's size (15 x 20)", ex.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => ImageScoring.PooledMax(new float[4], 2, 2, poolSize: 0));
        var size = Assert.Throws<ArgumentException>(() => ImageScoring.Compute(new float[5], 2, 2, 1));
        Assert.Contains("A 2 x 2 map needs 4 values, got 5", size.Message);
        var nan = Assert.Throws<ArgumentException>(() => ImageScoring.Compute([0f, float.NaN, 0f, 0f], 2, 2, 1));
        Assert.Contains("map[1] is NaN", nan.Message);
    }
}
