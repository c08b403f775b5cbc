using System.Globalization;

namespace UniAD.Core.MemoryBank;

/// <summary>
/// The memory-bank family's settings (<c>shared/methods/PATCHCORE.md</c>): how the bank is fitted and how its maps are
/// smoothed. Stored with the detector (<see cref="Detection.DetectorOptions.MemoryBank"/>).
/// </summary>
public sealed record MemoryBankOptions
{
    /// <summary>The coreset keeps this fraction of the candidate patches (default 0.01; the authors: 0.01 to 0.1).</summary>
    public double CoresetRatio { get; init; } = 0.01;

    /// <summary>
    /// At most this many normal patches, drawn at random (seeded) from all of them, are the coreset's candidates (default
    /// 200,000): the greedy coreset costs bank size x candidates x feature width, and the candidates' memory is
    /// candidates x feature width x 4 bytes.
    /// </summary>
    public int MaxCandidates { get; init; } = 200_000;

    /// <summary>
    /// One bank per class instead of one for all (default false: the unified setting, no class needed at test time). With
    /// per-class banks each class's normal images are fitted into a bank of their own (the ratio, candidate and memory
    /// limits apply to each bank), and every image must be scored with its class: the map is the distance to the nearest
    /// patch of that class's bank only, as separate per-class models would give it.
    /// </summary>
    public bool PerClassBanks { get; init; }

    /// <summary>The locally aware neighbourhood p of the patch features (default 3: every feature averaged over 3 x 3).</summary>
    public int Neighbourhood { get; init; } = 3;

    /// <summary>The Gaussian smoothing of the map in pixels of the input grid (default 4, the authors'); 0 for none.</summary>
    public double Sigma { get; init; } = PatchMemoryBank.DefaultSigma;

    /// <summary>
    /// The fit's memory limit in bytes (default 4 GiB): candidates, one coreset distance row and the bank. A fit that
    /// would need more is refused before any image is read, with the figure; lower <see cref="MaxCandidates"/>.
    /// </summary>
    public long MaxFitBytes { get; init; } = 4L << 30;

    /// <summary>
    /// The fit's time limit for the coreset (null: none). The coreset's speed is measured on its first picks; when the
    /// requested bank would take longer, the bank is made smaller to fit (a warning names both sizes).
    /// </summary>
    public TimeSpan? CoresetTimeLimit { get; init; }

    /// <summary>The seed of the candidate draw and the coreset's first pick (default 133).</summary>
    public long Seed { get; init; } = 133;

    /// <summary>Checks every value.</summary>
    /// <exception cref="ArgumentException">A value is impossible (named in the message).</exception>
    public void Validate()
    {
        if (!(CoresetRatio > 0 && CoresetRatio <= 1))
        {
            throw new ArgumentException($"MemoryBank.CoresetRatio = {CoresetRatio.ToString(CultureInfo.InvariantCulture)} must lie in (0, 1].");
        }

        if (MaxCandidates < 1)
        {
            throw new ArgumentException($"MemoryBank.MaxCandidates = {MaxCandidates} must be positive.");
        }

        if (Neighbourhood < 1 || Neighbourhood % 2 == 0)
        {
            throw new ArgumentException($"MemoryBank.Neighbourhood = {Neighbourhood} must be a positive odd size.");
        }

        if (!(Sigma >= 0 && double.IsFinite(Sigma)))
        {
            throw new ArgumentException($"MemoryBank.Sigma = {Sigma.ToString(CultureInfo.InvariantCulture)} must be 0 or positive.");
        }

        if (MaxFitBytes < 1)
        {
            throw new ArgumentException($"MemoryBank.MaxFitBytes = {MaxFitBytes} must be positive.");
        }

        if (CoresetTimeLimit is { } limit && limit <= TimeSpan.Zero)
        {
            throw new ArgumentException($"MemoryBank.CoresetTimeLimit = {limit} must be positive.");
        }
    }
}
