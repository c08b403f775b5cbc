namespace UniAD.Core.Data;

/// <summary>
/// A small deterministic generator (SplitMix64) whose streams never depend on the .NET version or on
/// thread scheduling: every consumer derives its own stream from the user's seed and its identity
/// (epoch, sample index, ...) with <see cref="For"/>.
/// </summary>
internal sealed class SeededRandom
{
    private ulong state;

    public SeededRandom(long seed) => state = unchecked((ulong)seed);

    /// <summary>A generator for one purpose: the seed mixed with any number of identifying values.</summary>
    public static SeededRandom For(long seed, params long[] parts)
    {
        ulong h = Mix(unchecked((ulong)seed) ^ 0x6A09E667F3BCC909UL);
        foreach (var p in parts)
        {
            h = Mix(h ^ Mix(unchecked((ulong)p) + 0x9E3779B97F4A7C15UL));
        }

        return new SeededRandom(unchecked((long)h));
    }

    public ulong NextUInt64()
    {
        state = unchecked(state + 0x9E3779B97F4A7C15UL);
        return Mix(state);
    }

    /// <summary>Uniform in [0, 1).</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform in [min, max).</summary>
    public double Uniform(double min, double max) => min + ((max - min) * NextDouble());

    /// <summary>Uniform integer in [0, n), without modulo bias.</summary>
    public int NextInt(int n)
    {
        if (n <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(n), n, "The range must be positive.");
        }

        ulong limit = ulong.MaxValue - (ulong.MaxValue % (ulong)n);
        ulong x;
        do
        {
            x = NextUInt64();
        }
        while (x >= limit);
        return (int)(x % (ulong)n);
    }

    /// <summary>True with probability <paramref name="p"/>.</summary>
    public bool Chance(double p) => NextDouble() < p;

    /// <summary>Fisher-Yates shuffle in place.</summary>
    public void Shuffle<T>(IList<T> items)
    {
        for (int i = items.Count - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary><paramref name="count"/> distinct indices of [0, n), in increasing order.</summary>
    public int[] Sample(int n, int count)
    {
        if (count < 0 || count > n)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, $"Cannot draw {count} distinct items out of {n}.");
        }

        var all = Enumerable.Range(0, n).ToArray();
        for (int i = 0; i < count; i++)
        {
            int j = i + NextInt(n - i);
            (all[i], all[j]) = (all[j], all[i]);
        }

        var chosen = all[..count];
        Array.Sort(chosen);
        return chosen;
    }

    private static ulong Mix(ulong z)
    {
        unchecked
        {
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }
}
