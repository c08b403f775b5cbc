namespace UniAD.Core.Metrics;

/// <summary>
/// Scores of normal and anomalous samples kept apart and compactly (4 bytes per normal sample, 8 per anomalous one
/// with its region id), radix-sorted on demand and walked from the highest score to the lowest. The order in which
/// samples were added is irrelevant to every metric, so the store sorts in place; adding more later and sweeping
/// again sorts again.
/// </summary>
internal sealed class ScoreStore
{
    private readonly ChunkedBuffer<uint> _normals = new();
    private readonly ChunkedBuffer<uint> _positives = new();
    private readonly ChunkedBuffer<int>? _regions;
    private bool _sorted = true;

    /// <param name="withRegions">Keep a region id per anomalous sample (for AU-PRO).</param>
    public ScoreStore(bool withRegions)
    {
        _regions = withRegions ? new ChunkedBuffer<int>() : null;
    }

    public long Normals => _normals.Count;

    public long Positives => _positives.Count;

    public void AddNormal(float score)
    {
        _normals.Add(ScoreKeys.ToKey(score));
        _sorted = false;
    }

    public void AddPositive(float score, int region)
    {
        _positives.Add(ScoreKeys.ToKey(score));
        _regions?.Add(region);
        _sorted = false;
    }

    /// <summary>Sorts what is not sorted yet, then sweeps every distinct threshold from the highest down.</summary>
    /// <param name="regionMass">1 / (region size) per region id (AU-PRO); empty without regions.</param>
    /// <param name="fprLimit">The AU-PRO FPR limit.</param>
    public SweepResult Sweep(ReadOnlySpan<double> regionMass, double fprLimit)
    {
        if (!_sorted)
        {
            RadixSort.Sort<int>(_normals, null);
            RadixSort.Sort(_positives, _regions);
            _sorted = true;
        }

        bool withRegions = _regions is not null && regionMass.Length > 0;
        var sweep = new ThresholdSweep(_positives.Count, _normals.Count, withRegions ? regionMass.Length : 0, fprLimit);
        long i = _normals.Count - 1, j = _positives.Count - 1;
        uint normal = i >= 0 ? _normals[i] : 0, positive = j >= 0 ? _positives[j] : 0;
        while (i >= 0 || j >= 0)
        {
            uint key = i < 0 ? positive : j < 0 ? normal : Math.Max(normal, positive);
            long firstNormal = i;
            while (i >= 0 && normal == key)
            {
                normal = --i >= 0 ? _normals[i] : 0;
            }

            long firstPositive = j;
            double mass = 0;
            while (j >= 0 && positive == key)
            {
                if (withRegions)
                {
                    mass += regionMass[_regions![j]];
                }

                positive = --j >= 0 ? _positives[j] : 0;
            }

            sweep.Add(ScoreKeys.ToScore(key), firstPositive - j, firstNormal - i, mass);
        }

        return sweep.Result();
    }
}
