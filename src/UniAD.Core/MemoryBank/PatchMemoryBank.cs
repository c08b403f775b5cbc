using UniAD.Core.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.MemoryBank;

/// <summary>
/// A memory bank of normal patch features and its anomaly maps (<c>shared/methods/PATCHCORE.md</c>, steps 3 to 6): fitted
/// by the greedy coreset of the normal patches, it scores a patch by its distance to the nearest bank patch; the patch-score
/// grid is upsampled to the working size and smoothed with a Gaussian; the image score is the smoothed map's maximum.
/// The tensor model only: the detector pipeline (builder, tiling, calibration, checkpoints, ONNX) is not wired to it yet.
/// </summary>
public sealed class PatchMemoryBank : IDisposable
{
    /// <summary>The Gaussian's sigma in pixels of the working size (the authors': 4).</summary>
    public const double DefaultSigma = 4.0;

    private PatchMemoryBank(Tensor bank) => Bank = bank;

    /// <summary>The bank: K x D patch features of normal images.</summary>
    public Tensor Bank { get; }

    /// <summary>
    /// Fits a bank from the patches of normal images (N x D rows, <see cref="PatchFeatures.Rows"/>): a random subset of at
    /// most <paramref name="maxCandidates"/> patches (seeded; all of them when fewer), reduced by the greedy coreset to
    /// <paramref name="ratio"/> of the patches (at least one).
    /// </summary>
    /// <exception cref="ArgumentException">The ratio is not in (0, 1], no patch, or a bad candidate cap.</exception>
    public static PatchMemoryBank Fit(Tensor patches, double ratio, long seed, int maxCandidates = int.MaxValue, IProgress<(int Done, int Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(patches);
        if (!(ratio > 0 && ratio <= 1))
        {
            throw new ArgumentException($"The coreset ratio must lie in (0, 1]; got {ratio}.", nameof(ratio));
        }

        if (patches.dim() != 2 || patches.shape[0] == 0 || maxCandidates < 1)
        {
            throw new ArgumentException($"Fitting needs N x D patches (N > 0) and a positive candidate cap; got [{string.Join(" x ", patches.shape)}], cap {maxCandidates}.", nameof(patches));
        }

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var candidates = patches;
        if (patches.shape[0] > maxCandidates)
        {
            using var generator = new Generator(unchecked((ulong)seed ^ 0x5EEDUL));
            var chosen = randperm(patches.shape[0], generator: generator, device: CPU).narrow(0, 0, maxCandidates).to(patches.device);
            candidates = patches.index_select(0, chosen);
        }

        int count = (int)Math.Max(1, Math.Round(ratio * candidates.shape[0]));
        var picks = Coreset.Select(candidates, count, seed, progress, cancellationToken);
        var bank = candidates.index_select(0, tensor(picks, device: candidates.device)).contiguous();
        return new PatchMemoryBank(bank.MoveToOuterDisposeScope());
    }

    /// <summary>Patch scores of B x D x H x W features: B x H x W distances to the nearest bank patch.</summary>
    public Tensor PatchScores(Tensor features) => PatchScores(features, Bank);

    /// <summary>Patch scores of B x D x H x W features against <paramref name="bank"/> (K x D): B x H x W distances to the nearest bank patch, on the bank's device.</summary>
    public static Tensor PatchScores(Tensor features, Tensor bank)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(bank);
        using var scope = NewDisposeScope();
        var rows = PatchFeatures.Rows(features).to(bank.device);
        var distances = NearestNeighbour.Distances(rows, bank);
        return distances.reshape(features.shape[0], features.shape[2], features.shape[3]).MoveToOuterDisposeScope();
    }

    /// <summary>Anomaly maps: B x H x W patch scores upsampled bilinearly to <paramref name="height"/> x <paramref name="width"/> and smoothed (Gaussian, <paramref name="sigma"/> pixels; 0 for none).</summary>
    public static Tensor Maps(Tensor patchScores, long height, long width, double sigma = DefaultSigma)
    {
        ArgumentNullException.ThrowIfNull(patchScores);
        using var scope = NewDisposeScope();
        var up = F.interpolate(patchScores.unsqueeze(1), new[] { height, width }, mode: InterpolationMode.Bilinear, align_corners: false);
        var smoothed = sigma > 0 ? MapSmoothing.GaussianBlur(up, sigma) : up;
        return smoothed.squeeze(1).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public void Dispose() => Bank.Dispose();
}
