using UniAD.Core.Metrics;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Metrics;

public sealed class PixelMetricsAccumulatorTests
{
    private const double Exact = 1e-15;

    // One 1 x 6 image: regions A = pixels 0-1 (size 2) and B = pixel 5 (size 1); pixels 2-4 are normal.
    // The 0.8 tie puts a normal pixel and region B on one threshold, so the curve climbs diagonally through
    // FPR 0.3: (0,0) (0,.25) (1/3,.75) (1/3,1) (2/3,1) (1,1).
    private static readonly float[] TinyMap = [0.9f, 0.3f, 0.8f, 0.2f, 0.1f, 0.8f];
    private static readonly float[] TinyMask = [1, 1, 0, 0, 0, 1];

    [Fact]
    public void Tiny_example_matches_hand_computed_values()
    {
        var acc = new PixelMetricsAccumulator();
        acc.Add(TinyMap, TinyMask, 1, 6);
        var m = acc.Compute();

        Assert.Equal((1, 3L, 3L, 2L), (m.Images, m.AnomalousPixels, m.NormalPixels, m.Regions));
        Assert.Equal(7.5 / 9, m.Auroc, Exact);                          // pairs: 3 + 2 + 2.5 (one tie)
        Assert.Equal((1.0 / 3) + (2.0 / 9) + (1.0 / 4), m.AveragePrecision, Exact);
        Assert.Equal(6.0 / 7, m.F1Max.F1, Exact);                       // at 0.3: TP 3, FP 1
        Assert.Equal(0.3f, m.F1Max.Threshold);
        // PRO at FPR 0.3 by interpolation: 0.25 + 0.5 · 0.9 = 0.7; area 0.3 · (0.25 + 0.7) / 2 = 0.1425.
        Assert.Equal(0.475, m.AuPro, 1e-12);
        Assert.Equal(0.3, m.FprLimit);
        Assert.Null(m.UndefinedReason);
    }

    [Theory]
    [InlineData(0.5, 2.0 / 3)]   // (1/3 · (.25 + .75) / 2 + (0.5 − 1/3) · 1) / 0.5
    [InlineData(1.0, 5.0 / 6)]   // 1/6 + 2/3
    [InlineData(0.1, 0.325)]     // PRO(0.1) = 0.25 + 0.5 · 0.3 = 0.4; 0.1 · (0.25 + 0.4) / 2 / 0.1
    public void AuPro_is_divided_by_its_limit(double limit, double expected)
    {
        var acc = new PixelMetricsAccumulator();
        acc.Add(TinyMap, TinyMask, 1, 6);
        Assert.Equal(expected, acc.Compute(limit).AuPro, 1e-12);
    }

    [Fact]
    public void Regions_are_8_connected_within_an_image_only()
    {
        var acc = new PixelMetricsAccumulator();
        // A diagonal line is one region under 8-connectivity.
        acc.Add(new float[9], [1, 0, 0, 0, 1, 0, 0, 0, 1], 3, 3);
        Assert.Equal(1, acc.Regions);
        // The end of one row and the start of the next are not neighbours.
        acc.Add(new float[6], [0, 0, 1, 1, 0, 0], 2, 3);
        Assert.Equal(3, acc.Regions);
        // The same pixel in two images of one batch is two regions.
        acc.Add(new float[8], [0, 1, 0, 0, 0, 1, 0, 0], 2, 2);
        Assert.Equal(5, acc.Regions);
    }

    [Fact]
    public void Pro_weighs_regions_equally_whatever_their_size()
    {
        // Region A: 4 pixels scored high; region B: 1 pixel scored low; 4 normal pixels in between.
        float[] map = [0.9f, 0.9f, 0.9f, 0.9f, 0.5f, 0.5f, 0.5f, 0.5f, 0.1f];
        float[] mask = [1, 1, 1, 1, 0, 0, 0, 0, 1];
        var acc = new PixelMetricsAccumulator();
        acc.Add(map, mask, 1, 9);
        // Curve (0,0) (0,.5) (1,.5) (1,1): PRO is 0.5 (one of two regions) up to FPR 1, whatever the limit.
        Assert.Equal(0.5, acc.Compute(0.3).AuPro, Exact);
        Assert.Equal(0.5, acc.Compute(1.0).AuPro, Exact);
    }

    [Theory]
    [InlineData(11, 7, 9, 0.3)]
    [InlineData(12, 5, 6, 0.05)]
    [InlineData(13, 4, 4, 1.0)]
    public void Agrees_with_the_definitions_on_random_maps_with_ties(int seed, int height, int width, double limit)
    {
        var (maps, masks) = RandomMaps(seed, count: 5, height, width, levels: 40);
        var acc = new PixelMetricsAccumulator();
        acc.Add(maps, masks, height, width);
        var m = acc.Compute(limit);

        var scores = maps.Select(v => (double)v).ToList();
        var labels = masks.Select(v => v > 0).ToList();
        Assert.Equal(NaiveMetrics.Auroc(scores, labels), m.Auroc, 1e-12);
        Assert.Equal(NaiveMetrics.AveragePrecision(scores, labels), m.AveragePrecision, 1e-12);
        Assert.Equal(NaiveMetrics.F1Max(scores, labels).F1, m.F1Max.F1, 1e-12);
        Assert.Equal(NaiveMetrics.AuPro(scores, RegionIds(masks, height, width), limit), m.AuPro, 1e-12);
    }

    [Fact]
    public void Streaming_in_any_batches_gives_identical_results()
    {
        const int count = 12, height = 9, width = 10, pixels = height * width;
        var (maps, masks) = RandomMaps(seed: 5, count, height, width, levels: 25);
        var whole = new PixelMetricsAccumulator();
        whole.Add(maps, masks, height, width);
        var expected = whole.Compute();

        foreach (int batch in new[] { 1, 5, 7 })
        {
            Assert.Equal(expected, Streamed(maps, masks, height, width, batch).Compute());
        }

        // Computing half-way, then adding the rest, changes nothing either.
        var twice = new PixelMetricsAccumulator();
        twice.Add(maps.AsSpan(0, 5 * pixels), masks.AsSpan(0, 5 * pixels), height, width);
        var half = twice.Compute();
        Assert.Equal(5, half.Images);
        twice.Add(maps.AsSpan(5 * pixels), masks.AsSpan(5 * pixels), height, width);
        Assert.Equal(expected, twice.Compute());
        Assert.Equal(expected, twice.Compute());
    }

    [Fact]
    public void Streaming_across_chunk_boundaries_gives_identical_results()
    {
        // 1.5 M pixels: more than one 1 M-value storage chunk, added in uneven batches.
        const int height = 100, width = 150, count = 100;
        var (maps, masks) = RandomMaps(seed: 8, count, height, width, levels: 5000);
        var whole = new PixelMetricsAccumulator();
        whole.Add(maps, masks, height, width);

        var expected = whole.Compute();
        Assert.Equal(expected, Streamed(maps, masks, height, width, batch: 13).Compute());
        var flat = BinaryClassification.Evaluate(maps, masks.Select(v => v > 0).ToArray());
        Assert.Equal((flat.Auroc, flat.AveragePrecision, flat.F1Max), (expected.Auroc, expected.AveragePrecision, expected.F1Max));
    }

    [Fact]
    public void Mask_values_above_zero_count_as_anomalous_and_byte_masks_agree()
    {
        var (maps, masks) = RandomMaps(seed: 2, count: 3, height: 6, width: 7, levels: 30);
        var binary = new PixelMetricsAccumulator();
        binary.Add(maps, masks, 6, 7);
        var soft = new PixelMetricsAccumulator();
        soft.Add(maps, masks.Select(v => v * 0.25f).ToArray(), 6, 7);
        var bytes = new PixelMetricsAccumulator();
        bytes.Add(maps, masks.Select(v => (byte)(v * 255)).ToArray(), 6, 7);

        Assert.Equal(binary.Compute(), soft.Compute());
        Assert.Equal(binary.Compute(), bytes.Compute());
    }

    [Fact]
    public void Tensor_overload_accepts_N_x_1_x_H_x_W_and_matches_spans()
    {
        var (maps, masks) = RandomMaps(seed: 4, count: 3, height: 5, width: 8, levels: 50);
        var fromSpans = new PixelMetricsAccumulator();
        fromSpans.Add(maps, masks, 5, 8);
        var fromTensors = new PixelMetricsAccumulator();
        using var mapTensor = tensor(maps, [3, 1, 5, 8]);
        using var maskTensor = tensor(masks.Select(v => v > 0).ToArray(), [3, 5, 8]);
        fromTensors.Add(mapTensor, maskTensor);

        Assert.Equal(fromSpans.Compute(), fromTensors.Compute());
        using var wrong = zeros(3, 5, 7);
        var ex = Assert.Throws<ArgumentException>(() => fromTensors.Add(mapTensor, wrong));
        Assert.Contains("maps are 3 x 5 x 8 but masks are 3 x 5 x 7", ex.Message);
    }

    [Fact]
    public void Without_AuPro_the_other_metrics_are_unchanged()
    {
        var (maps, masks) = RandomMaps(seed: 6, count: 4, height: 6, width: 6, levels: 20);
        var with = new PixelMetricsAccumulator();
        with.Add(maps, masks, 6, 6);
        var without = new PixelMetricsAccumulator(computeAuPro: false);
        without.Add(maps, masks, 6, 6);
        var a = with.Compute();
        var b = without.Compute();

        Assert.Equal((a.Auroc, a.AveragePrecision, a.F1Max), (b.Auroc, b.AveragePrecision, b.F1Max));
        Assert.True(double.IsNaN(b.AuPro));
        Assert.Equal(0, b.Regions);
        Assert.Contains("AU-PRO was not computed", b.UndefinedReason);
    }

    [Fact]
    public void Only_normal_pixels_give_NaN_with_a_reason()
    {
        var acc = new PixelMetricsAccumulator();
        acc.Add([0.1f, 0.5f, 0.3f, 0.2f], new float[4], 2, 2);
        var m = acc.Compute();

        Assert.True(double.IsNaN(m.Auroc) && double.IsNaN(m.AveragePrecision) && double.IsNaN(m.F1Max.F1) && double.IsNaN(m.AuPro));
        Assert.Equal("all 4 pixels are normal: AUROC, AP, F1-max and AU-PRO are undefined (NaN)", m.UndefinedReason);
    }

    [Fact]
    public void Only_anomalous_pixels_give_NaN_AUROC_and_AU_PRO_with_a_reason()
    {
        var acc = new PixelMetricsAccumulator();
        acc.Add([0.1f, 0.5f], [1f, 1f], 1, 2);
        var m = acc.Compute();

        Assert.True(double.IsNaN(m.Auroc) && double.IsNaN(m.AuPro));
        Assert.Equal((1.0, 1.0), (m.AveragePrecision, m.F1Max.F1));
        Assert.Equal("all 2 pixels are anomalous: AUROC and AU-PRO are undefined (NaN); AP and F1-max are 1", m.UndefinedReason);
    }

    [Fact]
    public void Bad_input_is_rejected_and_adds_nothing()
    {
        var acc = new PixelMetricsAccumulator();
        var nan = new float[12];
        nan[11] = float.NaN;
        var ex = Assert.Throws<ArgumentException>(() => acc.Add(nan, new float[12], 2, 3));
        Assert.Contains("maps: image 1 of the batch, row 1, column 2 is NaN", ex.Message);

        var mask = new float[12];
        mask[4] = -1;
        ex = Assert.Throws<ArgumentException>(() => acc.Add(new float[12], mask, 2, 3));
        Assert.Contains("masks: image 0 of the batch, row 1, column 1 is -1", ex.Message);

        mask[4] = float.NaN;
        Assert.Throws<ArgumentException>(() => acc.Add(new float[12], mask, 2, 3));
        ex = Assert.Throws<ArgumentException>(() => acc.Add([float.PositiveInfinity], [0f], 1, 1));
        Assert.Contains("is Infinity", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => acc.Add(new float[12], new float[6], 2, 3));
        Assert.Contains("12 map values but 6 mask values", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => acc.Add(new float[10], new float[10], 2, 3));
        Assert.Contains("not a whole number of 2 x 3 maps", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => acc.Add(ReadOnlySpan<float>.Empty, ReadOnlySpan<float>.Empty, 2, 3));
        Assert.Contains("No maps", ex.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => acc.Add(new float[6], new float[6], 0, 6));

        Assert.Equal((0, 0L, 0L, 0L), (acc.Images, acc.NormalPixels, acc.AnomalousPixels, acc.Regions));
        var empty = Assert.Throws<InvalidOperationException>(() => acc.Compute());
        Assert.Contains("No maps were added", empty.Message);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-0.1)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public void Fpr_limit_must_lie_in_zero_one(double limit)
    {
        var acc = new PixelMetricsAccumulator();
        acc.Add(TinyMap, TinyMask, 1, 6);
        Assert.Throws<ArgumentOutOfRangeException>(() => acc.Compute(limit));
    }

    /// <summary>An accumulator fed <paramref name="batch"/> maps at a time (the last batch may be smaller).</summary>
    private static PixelMetricsAccumulator Streamed(float[] maps, float[] masks, int height, int width, int batch)
    {
        int pixels = height * width, count = maps.Length / pixels;
        var streamed = new PixelMetricsAccumulator();
        for (int first = 0; first < count; first += batch)
        {
            int n = Math.Min(batch, count - first);
            streamed.Add(maps.AsSpan(first * pixels, n * pixels), masks.AsSpan(first * pixels, n * pixels), height, width);
        }

        return streamed;
    }

    /// <summary>Smooth-ish random maps rounded to <paramref name="levels"/> values (ties), with one or two rectangles per anomalous image.</summary>
    internal static (float[] Maps, float[] Masks) RandomMaps(int seed, int count, int height, int width, int levels)
    {
        var rng = new Random(seed);
        var maps = new float[count * height * width];
        var masks = new float[maps.Length];
        for (int i = 0; i < count; i++)
        {
            int offset = i * height * width;
            if (i % 3 != 0)
            {
                for (int r = 0; r < 1 + (i % 2); r++)
                {
                    int h = 1 + rng.Next(height / 2), w = 1 + rng.Next(width / 2), top = rng.Next(height - h), left = rng.Next(width - w);
                    for (int y = top; y < top + h; y++)
                    {
                        masks.AsSpan(offset + (y * width) + left, w).Fill(1f);
                    }
                }
            }

            for (int p = 0; p < height * width; p++)
            {
                double v = rng.NextDouble() + (masks[offset + p] * 0.4);
                maps[offset + p] = (float)(Math.Round(v * levels) / levels);
            }
        }

        return (maps, masks);
    }

    /// <summary>Region ids (−1 normal) by flood fill with 8-connectivity, per image, numbered across images.</summary>
    private static List<int> RegionIds(float[] masks, int height, int width)
    {
        var ids = Enumerable.Repeat(-1, masks.Length).ToList();
        int next = 0;
        for (int start = 0; start < masks.Length; start++)
        {
            if (masks[start] <= 0 || ids[start] >= 0)
            {
                continue;
            }

            int image = start / (height * width);
            var queue = new Queue<int>([start]);
            ids[start] = next;
            while (queue.Count > 0)
            {
                int p = queue.Dequeue(), y = (p / width) % height, x = p % width;
                foreach (var (dy, dx) in from dy in new[] { -1, 0, 1 } from dx in new[] { -1, 0, 1 } select (dy, dx))
                {
                    int ny = y + dy, nx = x + dx, q = (image * height * width) + (ny * width) + nx;
                    if (ny >= 0 && ny < height && nx >= 0 && nx < width && masks[q] > 0 && ids[q] < 0)
                    {
                        ids[q] = next;
                        queue.Enqueue(q);
                    }
                }
            }

            next++;
        }

        return ids;
    }
}
