using TorchSharp;
using UniAD.Core.Attention;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Attention;

public sealed class NeighborMaskTests
{
    // Independent count: a query at row y blocks min(y + r, H - 1) - max(y - r, 0) + 1 rows, and likewise
    // columns, r = size / 2; the mask is separable so the total is (sum of row spans) x (sum of column spans).
    private static int ExpectedBlocked(GridSize map, GridSize n)
    {
        static int Span(int length, int size) =>
            Enumerable.Range(0, length).Sum(i => Math.Min(i + size / 2, length - 1) - Math.Max(i - size / 2, 0) + 1);
        return Span(map.Height, n.Height) * Span(map.Width, n.Width);
    }

    [Theory]
    [InlineData(4, 4, 3, 3, 100)]
    [InlineData(14, 14, 7, 7, 7396)]
    [InlineData(6, 8, 3, 3, 352)]
    [InlineData(6, 6, 4, 4, 24 * 24)]
    public void Blocks_exactly_the_clipped_neighbourhoods(int h, int w, int nh, int nw, int expected)
    {
        var map = new GridSize(h, w);
        var n = new GridSize(nh, nw);
        var pattern = NeighborMask.Pattern(map, n);
        Assert.Equal(map.Count * map.Count, pattern.Length);
        Assert.Equal(expected, pattern.Count(b => b));
        Assert.Equal(ExpectedBlocked(map, n), expected);
        for (int i = 0; i < map.Count; i++)
        {
            Assert.True(pattern[i * map.Count + i], $"token {i} must not attend to itself");
        }
    }

    [Fact]
    public void Even_neighbourhood_spans_one_more_than_its_size_as_in_the_reference()
    {
        // 4x4 on a 6x6 map: the query at (2, 2) blocks rows 0..4 and columns 0..4.
        var pattern = NeighborMask.Pattern(new GridSize(6, 6), new GridSize(4, 4));
        int query = 2 * 6 + 2;
        var blocked = Enumerable.Range(0, 36).Where(k => pattern[query * 36 + k]).ToArray();
        Assert.Equal(25, blocked.Length);
        Assert.All(blocked, k => Assert.True(k / 6 <= 4 && k % 6 <= 4));
    }

    [Fact]
    public void Tensor_is_minus_infinity_where_blocked_and_zero_elsewhere()
    {
        var map = new GridSize(5, 7);
        var n = new GridSize(3, 5);
        var pattern = NeighborMask.Pattern(map, n);
        using var mask = NeighborMask.Create(map, n);
        Assert.Equal(new long[] { 35, 35 }, mask.shape);
        Assert.Equal(ScalarType.Float32, mask.dtype);
        var values = mask.data<float>().ToArray();
        for (int i = 0; i < values.Length; i++)
        {
            Assert.Equal(pattern[i] ? float.NegativeInfinity : 0f, values[i]);
        }

        // Corner (0, 0) with a 3x5 window: rows 0..1, columns 0..2.
        Assert.True(pattern[(0 * 35) + (1 * 7) + 2]);
        Assert.False(pattern[(0 * 35) + (2 * 7) + 0]);
        Assert.False(pattern[(0 * 35) + (0 * 7) + 3]);
    }

    [Fact]
    public void Cached_mask_is_shared_and_survives_dispose_scopes()
    {
        var map = new GridSize(9, 9);
        var n = new GridSize(3, 3);
        Tensor first;
        using (NewDisposeScope())
        {
            first = NeighborMask.GetCached(map, n, CPU);
        }

        var second = NeighborMask.GetCached(map, n, CPU);
        Assert.Same(first, second);
        Assert.False(second.IsInvalid);
        Assert.Equal(ExpectedBlocked(map, n), (int)second.isinf().sum().item<long>());
    }

    [Theory]
    [InlineData(0, 4, 3, 3, "feature size")]
    [InlineData(4, 4, 0, 3, "neighbourhood size")]
    [InlineData(3, 3, 3, 3, "covers the whole 3x3")]
    [InlineData(14, 14, 27, 27, "covers the whole 14x14")]
    public void Impossible_sizes_are_rejected_with_the_values_in_the_message(int h, int w, int nh, int nw, string fragment)
    {
        var ex = Assert.Throws<ArgumentException>(() => NeighborMask.Pattern(new GridSize(h, w), new GridSize(nh, nw)));
        Assert.Contains(fragment, ex.Message);
    }
}
