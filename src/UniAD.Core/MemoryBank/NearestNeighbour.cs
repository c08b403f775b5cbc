using static TorchSharp.torch;

namespace UniAD.Core.MemoryBank;

/// <summary>
/// Exact nearest-neighbour distances to a memory bank (<c>shared/methods/PATCHCORE.md</c>, step 4): Euclidean distance of
/// every query patch to its nearest bank patch, computed as |a|² − 2a·b + |b|² (clamped at 0 before the square root) in
/// batched matrix products of <see cref="QueryChunk"/> queries at a time, so memory is chunk x bank, never queries x bank.
/// </summary>
public static class NearestNeighbour
{
    /// <summary>Queries per matrix product.</summary>
    public const int QueryChunk = 4096;

    /// <summary>For each row of <paramref name="queries"/> (M x D), its Euclidean distance to the nearest row of <paramref name="bank"/> (K x D): M values.</summary>
    /// <exception cref="ArgumentException">The shapes do not fit (2-D, same D, a non-empty bank).</exception>
    public static Tensor Distances(Tensor queries, Tensor bank)
    {
        ArgumentNullException.ThrowIfNull(queries);
        ArgumentNullException.ThrowIfNull(bank);
        if (queries.dim() != 2 || bank.dim() != 2 || queries.shape[1] != bank.shape[1] || bank.shape[0] == 0)
        {
            throw new ArgumentException($"Queries M x D and a bank K x D (K > 0) are needed; got [{string.Join(" x ", queries.shape)}] and [{string.Join(" x ", bank.shape)}].");
        }

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long m = queries.shape[0];
        var parts = new List<Tensor>();
        for (long start = 0; start < m; start += QueryChunk)
        {
            var q = queries.narrow(0, start, Math.Min(QueryChunk, m - start));
            parts.Add(SquaredDistances(q, bank).amin(1).sqrt());
        }

        return cat(parts, 0).MoveToOuterDisposeScope();
    }

    /// <summary>Squared Euclidean distances of every row of <paramref name="a"/> (N x d) to every row of <paramref name="b"/> (K x d): N x K, clamped at 0.</summary>
    internal static Tensor SquaredDistances(Tensor a, Tensor b)
    {
        var aa = a.square().sum(1, keepdim: true);
        var bb = b.square().sum(1, keepdim: true).t();
        return (aa - (2 * a.matmul(b.t())) + bb).clamp_min(0);
    }
}
