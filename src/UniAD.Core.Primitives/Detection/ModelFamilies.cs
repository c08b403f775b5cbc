namespace UniAD.Core.Detection;

/// <summary>
/// The model families a detector file can hold, by the key stored in its checkpoint (<c>DetectorOptions.Family</c>) and
/// in its ONNX metadata (<c>uniad.model_family</c>). Files written before the key existed are UniAD.
/// </summary>
public static class ModelFamilies
{
    /// <summary>UniAD (NeurIPS 2022): a transformer reconstructs frozen CNN features; the map is the reconstruction error. Trained.</summary>
    public const string UniAD = "uniad";

    /// <summary>The memory bank (PatchCore): the map is each patch's distance to the nearest normal patch of a coreset. Fitted, not trained.</summary>
    public const string MemoryBank = "memory-bank";

    /// <summary>Every family this version knows.</summary>
    public static IReadOnlyList<string> Known { get; } = new[] { UniAD, MemoryBank };

    /// <summary>
    /// The family named by <paramref name="value"/> (a stored key; null or empty: a file written before families existed,
    /// hence UniAD). <paramref name="source"/> names the file for the message.
    /// </summary>
    /// <exception cref="InvalidDataException">An unknown family: the message names it and the families this version knows.</exception>
    public static string Parse(string? value, string source)
    {
        if (string.IsNullOrEmpty(value))
        {
            return UniAD;
        }

        return Known.FirstOrDefault(k => string.Equals(k, value, StringComparison.Ordinal))
            ?? throw new InvalidDataException($"'{source}' holds a model of family '{value}'; this version of UniAD.Core knows {string.Join(" and ", Known.Select(k => $"'{k}'"))}. Update the library to read it.");
    }
}
