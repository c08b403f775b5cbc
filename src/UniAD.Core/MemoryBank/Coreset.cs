using static TorchSharp.torch;

namespace UniAD.Core.MemoryBank;

/// <summary>
/// PatchCore's approximate greedy coreset (<c>shared/methods/PATCHCORE.md</c>, step 3): the patches are projected by a
/// seeded random matrix to <see cref="ProjectionDimensions"/>; from <see cref="Starts"/> seeded random picks, each patch
/// keeps its distance to the selection, and the patch farthest from it is picked next, until <c>count</c> are chosen.
/// Memory: the projected patches and one distance per patch; never an N x N matrix. Deterministic for a seed.
/// </summary>
public static class Coreset
{
    /// <summary>Dimensions of the random projection (the authors': 128).</summary>
    public const int ProjectionDimensions = 128;

    /// <summary>Random picks the selection starts from (the authors': 10).</summary>
    public const int Starts = 10;

    /// <summary>
    /// The indices (ascending order of selection) of <paramref name="count"/> patches of <paramref name="patches"/>
    /// (N x D rows) chosen greedily, each the farthest (in the projected space) from those chosen before it.
    /// </summary>
    /// <exception cref="ArgumentException">The patches are not N x D, or <paramref name="count"/> is not in 1..N.</exception>
    /// <exception cref="OperationCanceledException">Cancelled (checked every 64 picks).</exception>
    public static long[] Select(Tensor patches, int count, long seed, IProgress<(int Done, int Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(patches);
        if (patches.dim() != 2)
        {
            throw new ArgumentException($"Patches must be N x D rows; got [{string.Join(" x ", patches.shape)}].", nameof(patches));
        }

        long n = patches.shape[0];
        if (count < 1 || count > n)
        {
            throw new ArgumentException($"The coreset size must lie in 1..{n} (the patches); got {count}.", nameof(count));
        }

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var device = patches.device;
        using var generator = new Generator(unchecked((ulong)seed));
        long dims = patches.shape[1];
        var projection = (randn(new long[] { dims, ProjectionDimensions }, generator: generator, device: CPU) / Math.Sqrt(ProjectionDimensions)).to(device);
        var projected = patches.to(float32).matmul(projection); // N x 128
        var picks = new long[count];
        var starts = randperm(n, generator: generator, device: CPU).narrow(0, 0, Math.Min(Starts, n)).to(device);
        var distance = NearestNeighbour.SquaredDistances(projected, projected.index_select(0, starts)).amin(1); // N: to the nearest start
        var squares = projected.square().sum(1); // |x|², once: each pick then costs one matrix-vector product
        for (int i = 0; i < count; i++)
        {
            if ((i & 63) == 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
                progress?.Report((i, count));
            }

            long pick = distance.argmax().item<long>();
            picks[i] = pick;
            using var step = NewDisposeScope();
            var p = projected.narrow(0, pick, 1); // 1 x 128
            var toPick = (squares - (2 * projected.matmul(p.t()).squeeze(1)) + squares.narrow(0, pick, 1)).clamp_min(0);
            var next = minimum(distance, toPick).MoveToOuterDisposeScope();
            distance.Dispose(); // one distance vector alive, not one per pick (5,000 picks of 500,000 patches were 10 GB)
            distance = next;
        }

        progress?.Report((count, count));
        return picks;
    }
}
