namespace UniAD.Core.Metrics;

/// <summary>
/// Least-significant-digit radix sort of 32-bit keys (8-bit digits), optionally carrying one item per key.
/// Stable, O(n), one scratch buffer as long as the input; passes whose digit is the same for every key are skipped.
/// </summary>
internal static class RadixSort
{
    private const int DigitBits = 8;
    private const int Buckets = 1 << DigitBits;
    private const int Passes = 32 / DigitBits;

    /// <summary>Sorts <paramref name="keys"/> ascending, permuting <paramref name="items"/> alike unless it is empty.</summary>
    public static void Sort<TItem>(Span<uint> keys, Span<TItem> items, Span<uint> keyScratch, Span<TItem> itemScratch)
        where TItem : unmanaged
    {
        bool withItems = !items.IsEmpty;
        if (keyScratch.Length < keys.Length || (withItems && (items.Length != keys.Length || itemScratch.Length < keys.Length)))
        {
            throw new ArgumentException("The scratch buffers must be at least as long as the keys, and items as long as the keys.");
        }

        int n = keys.Length;
        if (n < 2)
        {
            return;
        }

        var counts = new int[Passes * Buckets];
        foreach (uint key in keys)
        {
            for (int pass = 0; pass < Passes; pass++)
            {
                counts[(pass * Buckets) + (int)((key >> (pass * DigitBits)) & (Buckets - 1))]++;
            }
        }

        Span<uint> srcKeys = keys, dstKeys = keyScratch[..n];
        Span<TItem> srcItems = items, dstItems = withItems ? itemScratch[..n] : default;
        var offsets = new int[Buckets];
        bool inScratch = false;
        for (int pass = 0; pass < Passes; pass++)
        {
            var histogram = counts.AsSpan(pass * Buckets, Buckets);
            int shift = pass * DigitBits;
            if (histogram[(int)((srcKeys[0] >> shift) & (Buckets - 1))] == n)
            {
                continue;
            }

            int running = 0;
            for (int b = 0; b < Buckets; b++)
            {
                offsets[b] = running;
                running += histogram[b];
            }

            if (withItems)
            {
                for (int i = 0; i < n; i++)
                {
                    uint key = srcKeys[i];
                    int at = offsets[(int)((key >> shift) & (Buckets - 1))]++;
                    dstKeys[at] = key;
                    dstItems[at] = srcItems[i];
                }
            }
            else
            {
                for (int i = 0; i < n; i++)
                {
                    uint key = srcKeys[i];
                    dstKeys[offsets[(int)((key >> shift) & (Buckets - 1))]++] = key;
                }
            }

            var swapKeys = srcKeys;
            srcKeys = dstKeys;
            dstKeys = swapKeys;
            var swapItems = srcItems;
            srcItems = dstItems;
            dstItems = swapItems;
            inScratch = !inScratch;
        }

        if (inScratch)
        {
            srcKeys.CopyTo(keys);
            if (withItems)
            {
                srcItems.CopyTo(items);
            }
        }
    }
}
