using System.Numerics;
using static TorchSharp.torch;

namespace UniAD.Core.Metrics;

/// <summary>
/// Collects anomaly maps and ground-truth masks batch by batch and computes the pixel-level metrics over all of
/// them (<see cref="PixelMetrics"/>): the maps need not be in memory at once, and the result is identical to
/// adding everything in one batch, whatever the batching.
/// </summary>
/// <remarks>
/// <para>Memory: 4 bytes per normal pixel and 8 per anomalous pixel (score and region id), in 4 MiB chunks;
/// while <see cref="Compute"/> sorts, as much again for scratch space, released afterwards. Scores are
/// radix-sorted once; AUROC, AP, F1-max and AU-PRO then come from one sweep over the distinct scores.</para>
/// <para>A mask pixel &gt; 0 is anomalous and 0 is normal (as in the reference evaluator, so resized masks with
/// values in (0, 1) count as anomalous); negative or NaN mask values and non-finite scores are rejected.
/// AU-PRO regions are the 8-connected components of each mask, so a region never spans two images.</para>
/// <para>Not thread-safe.</para>
/// </remarks>
public sealed class PixelMetricsAccumulator
{
    /// <summary>The FPR limit of AU-PRO used unless another is given: 0.3.</summary>
    public const double DefaultFprLimit = 0.3;

    private readonly ScoreStore _store;
    private readonly List<int> _regionSizes = [];
    private bool[] _anomalous = [];
    private int[] _labels = [];
    private int[] _stack = [];

    /// <summary>Creates an empty accumulator.</summary>
    /// <param name="computeAuPro">Label the masks' regions for AU-PRO (default). Without it AU-PRO is NaN and
    /// anomalous pixels take 4 bytes instead of 8.</param>
    public PixelMetricsAccumulator(bool computeAuPro = true)
    {
        ComputesAuPro = computeAuPro;
        _store = new ScoreStore(computeAuPro);
    }

    /// <summary>Whether AU-PRO is computed.</summary>
    public bool ComputesAuPro { get; }

    /// <summary>Maps added so far.</summary>
    public int Images { get; private set; }

    /// <summary>Normal pixels (mask = 0) added so far.</summary>
    public long NormalPixels => _store.Normals;

    /// <summary>Anomalous pixels (mask &gt; 0) added so far.</summary>
    public long AnomalousPixels => _store.Positives;

    /// <summary>Ground-truth regions (8-connected components, per image) added so far; 0 unless <see cref="ComputesAuPro"/>.</summary>
    public long Regions => _regionSizes.Count;

    /// <summary>Adds one or more maps with their masks, row-major, image after image.</summary>
    /// <param name="maps">Anomaly scores, a whole number of <paramref name="height"/> x <paramref name="width"/> maps; finite.</param>
    /// <param name="masks">Ground truth of the same size: 0 normal, &gt; 0 anomalous.</param>
    /// <param name="height">Rows of each map.</param>
    /// <param name="width">Columns of each map.</param>
    /// <exception cref="ArgumentException">Sizes differ or are not whole maps, the batch is empty, a score is not
    /// finite or a mask value is negative or NaN (the message names the image, row and column). Nothing of the batch
    /// is added then.</exception>
    public void Add(ReadOnlySpan<float> maps, ReadOnlySpan<float> masks, int height, int width) => AddCore(maps, masks, height, width);

    /// <summary>Adds one or more maps with byte masks (0 normal, &gt; 0 anomalous), row-major, image after image.</summary>
    /// <param name="maps">Anomaly scores, a whole number of <paramref name="height"/> x <paramref name="width"/> maps; finite.</param>
    /// <param name="masks">Ground truth of the same size: 0 normal, &gt; 0 anomalous.</param>
    /// <param name="height">Rows of each map.</param>
    /// <param name="width">Columns of each map.</param>
    /// <exception cref="ArgumentException">Sizes differ or are not whole maps, the batch is empty or a score is not
    /// finite. Nothing of the batch is added then.</exception>
    public void Add(ReadOnlySpan<float> maps, ReadOnlySpan<byte> masks, int height, int width) => AddCore(maps, masks, height, width);

    /// <summary>Adds a batch of tensors (copied to the CPU as float32): N x H x W, N x 1 x H x W or one H x W map.</summary>
    /// <param name="maps">Anomaly maps.</param>
    /// <param name="masks">Masks of the same size, any real or bool dtype: 0 normal, &gt; 0 anomalous.</param>
    /// <exception cref="ArgumentException">See <see cref="Add(ReadOnlySpan{float}, ReadOnlySpan{float}, int, int)"/>; also a shape that is not one of those above.</exception>
    public void Add(Tensor maps, Tensor masks)
    {
        var m = TensorInput.Maps(maps, nameof(maps));
        var g = TensorInput.Maps(masks, nameof(masks));
        TensorInput.RequireSameShape(m, g);
        AddCore<float>(m.Data, g.Data, m.Height, m.Width);
    }

    /// <summary>
    /// Computes AUROC, AP, F1-max (with its threshold) and AU-PRO over every pixel added so far. Can be called again
    /// after more batches (and with other limits); what was already sorted stays sorted.
    /// </summary>
    /// <param name="fprLimit">Upper FPR limit of the AU-PRO integral, in (0, 1]; the area is divided by it.</param>
    /// <returns>The metrics; values that are undefined for the data (e.g. no anomalous pixel) are NaN and
    /// <see cref="PixelMetrics.UndefinedReason"/> says why.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="fprLimit"/> is not in (0, 1].</exception>
    /// <exception cref="InvalidOperationException">No map was added.</exception>
    public PixelMetrics Compute(double fprLimit = DefaultFprLimit)
    {
        if (!(fprLimit > 0 && fprLimit <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(fprLimit), fprLimit, "The AU-PRO FPR limit must lie in (0, 1].");
        }

        if (Images == 0)
        {
            throw new InvalidOperationException("No maps were added: pixel metrics need at least one map.");
        }

        var regionMass = new double[_regionSizes.Count];
        for (int r = 0; r < regionMass.Length; r++)
        {
            regionMass[r] = 1.0 / _regionSizes[r];
        }

        var result = _store.Sweep(regionMass, fprLimit);
        return new PixelMetrics(Images, AnomalousPixels, NormalPixels, Regions, result.Auroc, result.AveragePrecision, result.F1Max, result.AuPro, fprLimit);
    }

    private void AddCore<TMask>(ReadOnlySpan<float> maps, ReadOnlySpan<TMask> masks, int height, int width)
        where TMask : INumber<TMask>
    {
        InputChecks.RequireMapsAndMasks(maps, masks, height, width);
        int pixels = height * width;
        if (_anomalous.Length < pixels)
        {
            _anomalous = new bool[pixels];
            _labels = ComputesAuPro ? new int[pixels] : [];
            _stack = ComputesAuPro ? new int[pixels] : [];
        }

        var isAnomalous = _anomalous.AsSpan(0, pixels);
        for (int start = 0; start < maps.Length; start += pixels)
        {
            var map = maps.Slice(start, pixels);
            var mask = masks.Slice(start, pixels);
            for (int p = 0; p < pixels; p++)
            {
                isAnomalous[p] = InputChecks.IsAnomalous(mask[p]);
            }

            int firstRegion = _regionSizes.Count - 1;
            if (ComputesAuPro)
            {
                ConnectedComponents.Label8(isAnomalous, height, width, _labels, _stack, _regionSizes);
            }

            for (int p = 0; p < pixels; p++)
            {
                if (isAnomalous[p])
                {
                    _store.AddPositive(map[p], ComputesAuPro ? firstRegion + _labels[p] : 0);
                }
                else
                {
                    _store.AddNormal(map[p]);
                }
            }

            Images++;
        }
    }
}
