namespace UniAD.Core.Metrics;

/// <summary>
/// Least-significant-digit radix sort of 32-bit keys (11-bit digits, three passes) held in chunked buffers, optionally carrying one
/// item per key. Stable and O(n); the scratch space, as large as the input, is allocated chunk by chunk only when a
/// pass is needed and dropped afterwards; passes whose digit is the same for every key are skipped.
/// </summary>
internal static class RadixSort
{
    private const int DigitBits = 11;
    private const int Buckets = 1 << DigitBits;
    private const int Passes = (32 + DigitBits - 1) / DigitBits;
    private const int Shift = ChunkedBuffer<uint>.ChunkShift;
    private const long Mask = ChunkedBuffer<uint>.ChunkLength - 1;

    /// <summary>Sorts <paramref name="keys"/> ascending, permuting <paramref name="items"/> (if any, as long as the keys) alike.</summary>
    public static void Sort<TItem>(ChunkedBuffer<uint> keys, ChunkedBuffer<TItem>? items)
        where TItem : unmanaged
    {
        long n = keys.Count;
        if (items is not null && items.Count != n)
        {
            throw new ArgumentException($"{n} keys but {items.Count} items.", nameof(items));
        }

        if (n < 2)
        {
            return;
        }

        var counts = new long[Passes * Buckets];
        for (int c = 0; c < keys.ChunkCount; c++)
        {
            foreach (uint key in keys.Chunk(c))
            {
                for (int pass = 0; pass < Passes; pass++)
                {
                    counts[(pass * Buckets) + (int)((key >> (pass * DigitBits)) & (Buckets - 1))]++;
                }
            }
        }

        ChunkedBuffer<uint> src = keys, dst = keys;
        ChunkedBuffer<TItem>? srcItems = items, dstItems = items;
        var offsets = new long[Buckets];
        for (int pass = 0; pass < Passes; pass++)
        {
            var histogram = counts.AsSpan(pass * Buckets, Buckets);
            int shift = pass * DigitBits;
            if (histogram[(int)((src[0] >> shift) & (Buckets - 1))] == n)
            {
                continue;
            }

            if (ReferenceEquals(dst, src))
            {
                dst = ChunkedBuffer<uint>.OfLength(n);
                dstItems = items is null ? null : ChunkedBuffer<TItem>.OfLength(n);
            }

            long running = 0;
            for (int b = 0; b < Buckets; b++)
            {
                offsets[b] = running;
                running += histogram[b];
            }

            var to = dst.ChunkArrays();
            var itemsTo = dstItems?.ChunkArrays();
            for (int c = 0; c < src.ChunkCount; c++)
            {
                var chunk = src.Chunk(c);
                if (srcItems is null || itemsTo is null)
                {
                    foreach (uint key in chunk)
                    {
                        long at = offsets[(int)((key >> shift) & (Buckets - 1))]++;
                        to[at >> Shift][at & Mask] = key;
                    }
                }
                else
                {
                    var itemChunk = srcItems.Chunk(c);
                    for (int i = 0; i < chunk.Length; i++)
                    {
                        uint key = chunk[i];
                        long at = offsets[(int)((key >> shift) & (Buckets - 1))]++;
                        to[at >> Shift][at & Mask] = key;
                        itemsTo[at >> Shift][at & Mask] = itemChunk[i];
                    }
                }
            }

            (src, dst) = (dst, src);
            (srcItems, dstItems) = (dstItems, srcItems);
        }

        if (!ReferenceEquals(src, keys))
        {
            keys.SwapContents(src);
            items?.SwapContents(srcItems!);
        }
    }
}
