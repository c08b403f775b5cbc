using UniAD.Core.Metrics;

namespace UniAD.Core.Tests.Metrics;

public sealed class RadixSortTests
{
    [Fact]
    public void Score_keys_follow_numeric_order_and_round_trip()
    {
        float[] ascending = [float.NegativeInfinity, -3e38f, -1f, -1e-30f, -float.Epsilon, 0f, float.Epsilon, 1e-30f, 1f, 3e38f, float.PositiveInfinity];
        var keys = ascending.Select(ScoreKeys.ToKey).ToArray();

        Assert.True(keys.Zip(keys.Skip(1)).All(p => p.First < p.Second));
        Assert.Equal(ascending, keys.Select(ScoreKeys.ToScore));
        Assert.Equal(ScoreKeys.ToKey(0f), ScoreKeys.ToKey(-0f));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(1000)]
    [InlineData(2_500_000)] // spans three 1 M-value chunks
    public void Sorts_keys_and_carries_items_stably(int count)
    {
        var rng = new Random(count);
        var keys = new ChunkedBuffer<uint>();
        var items = new ChunkedBuffer<int>();
        var expected = new (uint Key, int Item)[count];
        for (int i = 0; i < count; i++)
        {
            // Few distinct high bytes and many ties, like scores in a narrow range.
            uint key = (uint)(0xBF00_0000u + rng.Next(1 << 20));
            keys.Add(key);
            items.Add(i);
            expected[i] = (key, i);
        }

        RadixSort.Sort(keys, items);

        // OrderBy is stable: equal keys keep the order in which they were added.
        var sorted = expected.OrderBy(e => e.Key).ToArray();
        Assert.Equal(count, keys.Count);
        for (int i = 0; i < count; i++)
        {
            Assert.True(sorted[i] == (keys[i], items[i]), $"position {i}: {(keys[i], items[i])} instead of {sorted[i]}");
        }
    }

    [Fact]
    public void Keys_without_items_and_all_equal_keys_are_handled()
    {
        var keys = new ChunkedBuffer<uint>();
        foreach (uint k in new uint[] { 7, 7, 7 })
        {
            keys.Add(k);
        }

        RadixSort.Sort<int>(keys, null);
        Assert.Equal([7u, 7u, 7u], Enumerable.Range(0, 3).Select(i => keys[i]));

        var mixed = new ChunkedBuffer<uint>();
        foreach (uint k in new uint[] { 0xFFFF_FFFF, 0, 0x8000_0000, 0x0000_0100, 0x0001_0000 })
        {
            mixed.Add(k);
        }

        RadixSort.Sort<int>(mixed, null);
        Assert.Equal([0u, 0x100u, 0x1_0000u, 0x8000_0000u, 0xFFFF_FFFFu], Enumerable.Range(0, 5).Select(i => mixed[i]));
    }
}
