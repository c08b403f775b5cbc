namespace UniAD.Core.Metrics;

/// <summary>
/// Scores of normal and anomalous samples kept apart and compactly (4 bytes per normal sample, 8 per anomalous one
/// with its region id), sorted on demand by radix sort and walked from the highest score to the lowest.
/// The order in which samples were added is irrelevant to every metric, so sorting in place is harmless.
/// </summary>
internal sealed class ScoreStore
{
    private readonly ChunkedBuffer<uint> _pendingNormals = new();
    private readonly ChunkedBuffer<uint> _pendingPositives = new();
    private readonly ChunkedBuffer<int>? _pendingRegions;
    private uint[] _normals = [];
    private uint[] _positives = [];
    private int[] _regions = [];

    /// <param name="withRegions">Keep a region id per anomalous sample (for AU-PRO).</param>
    public ScoreStore(bool withRegions)
    {
        _pendingRegions = withRegions ? new ChunkedBuffer<int>() : null;
    }

    public long Normals => _normals.Length + _pendingNormals.Count;

    public long Positives => _positives.Length + _pendingPositives.Count;

    /// <summary>Throws unless <paramref name="normals"/> and <paramref name="positives"/> more samples still fit in arrays.</summary>
    public void EnsureRoomFor(long normals, long positives)
    {
        if (Normals + normals > Array.MaxLength || Positives + positives > Array.MaxLength)
        {
            throw new InvalidOperationException($"Too many samples for one set: at most {Array.MaxLength} normal and {Array.MaxLength} anomalous samples can be accumulated.");
        }
    }

    public void AddNormal(float score) => _pendingNormals.Add(ScoreKeys.ToKey(score));

    public void AddPositive(float score, int region)
    {
        _pendingPositives.Add(ScoreKeys.ToKey(score));
        _pendingRegions?.Add(region);
    }

    /// <summary>
    /// Sorts what was added since the last call into the sorted sets, then sweeps every distinct threshold.
    /// </summary>
    /// <param name="regionMass">1 / (region size) per region id (AU-PRO); empty without regions.</param>
    /// <param name="fprLimit">The AU-PRO FPR limit.</param>
    public SweepResult Sweep(ReadOnlySpan<double> regionMass, double fprLimit)
    {
        (_normals, _) = Merge(_normals, [], _pendingNormals, null);
        (_positives, _regions) = Merge(_positives, _regions, _pendingPositives, _pendingRegions);

        bool withRegions = _pendingRegions is not null && regionMass.Length > 0;
        var sweep = new ThresholdSweep(_positives.Length, _normals.Length, withRegions ? regionMass.Length : 0, fprLimit);
        uint[] normals = _normals, positives = _positives;
        int[] regions = _regions;
        int i = normals.Length - 1, j = positives.Length - 1;
        while (i >= 0 || j >= 0)
        {
            uint key = i < 0 ? positives[j] : j < 0 ? normals[i] : Math.Max(normals[i], positives[j]);
            int firstNormal = i;
            while (i >= 0 && normals[i] == key)
            {
                i--;
            }

            int firstPositive = j;
            double mass = 0;
            while (j >= 0 && positives[j] == key)
            {
                if (withRegions)
                {
                    mass += regionMass[regions[j]];
                }

                j--;
            }

            sweep.Add(ScoreKeys.ToScore(key), firstPositive - j, firstNormal - i, mass);
        }

        return sweep.Result();
    }

    /// <summary>The sorted keys (and items) of <paramref name="sorted"/> and <paramref name="pending"/> together; empties <paramref name="pending"/>.</summary>
    private static (uint[] Keys, int[] Items) Merge(uint[] sorted, int[] sortedItems, ChunkedBuffer<uint> pending, ChunkedBuffer<int>? pendingItems)
    {
        if (pending.Count == 0)
        {
            return (sorted, sortedItems);
        }

        int n = checked((int)(sorted.Length + pending.Count));
        var keys = GC.AllocateUninitializedArray<uint>(n);
        sorted.CopyTo(keys, 0);
        pending.CopyTo(keys.AsSpan(sorted.Length));
        pending.Clear();
        int[] items = [];
        if (pendingItems is not null)
        {
            items = GC.AllocateUninitializedArray<int>(n);
            sortedItems.CopyTo(items, 0);
            pendingItems.CopyTo(items.AsSpan(sorted.Length));
            pendingItems.Clear();
        }

        RadixSort.Sort<int>(keys, items, GC.AllocateUninitializedArray<uint>(n), items.Length == 0 ? [] : GC.AllocateUninitializedArray<int>(n));
        return (keys, items);
    }
}
