namespace UniAD.Core.Weights;

/// <summary>
/// A state dict does not fit a module: keys are missing, unexpected, or of the wrong shape. The message lists them
/// (the first 25 of each kind; the properties hold all). An <see cref="ArgumentException"/> (the weights given do
/// not fit the module; <see cref="System.IO.InvalidDataException"/> is sealed), so it falls under the library's error
/// contract: every documented failure is an <see cref="System.IO.InvalidDataException"/>, an <see cref="IOException"/>
/// or an <see cref="ArgumentException"/>, or derives from one.
/// </summary>
public sealed class StateDictMismatchException : ArgumentException
{
    /// <summary>Creates the exception; the message names every offending key.</summary>
    public StateDictMismatchException(string moduleName, string? source, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> shapeMismatches)
        : base(Describe(moduleName, source, missing, unexpected, shapeMismatches))
    {
        Missing = missing;
        Unexpected = unexpected;
        ShapeMismatches = shapeMismatches;
    }

    /// <summary>Keys the module has and the state dict lacks.</summary>
    public IReadOnlyList<string> Missing { get; }

    /// <summary>Keys the state dict has and the module does not.</summary>
    public IReadOnlyList<string> Unexpected { get; }

    /// <summary>Keys present in both with different shapes, as "key: expected [..], got [..]".</summary>
    public IReadOnlyList<string> ShapeMismatches { get; }

    private const int Listed = 25;

    private static string List(IReadOnlyList<string> keys, string separator) =>
        keys.Count <= Listed ? string.Join(separator, keys) : $"{string.Join(separator, keys.Take(Listed))}{separator}... and {keys.Count - Listed} more";

    private static string Describe(string moduleName, string? source, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> shapes)
    {
        var parts = new List<string>();
        if (missing.Count > 0)
        {
            parts.Add($"missing keys ({missing.Count}): {List(missing, ", ")}");
        }

        if (unexpected.Count > 0)
        {
            parts.Add($"unexpected keys ({unexpected.Count}): {List(unexpected, ", ")}");
        }

        if (shapes.Count > 0)
        {
            parts.Add($"wrong shapes ({shapes.Count}): {List(shapes, "; ")}");
        }

        string from = source is null ? string.Empty : $" from '{source}'";
        return $"The state dict{from} does not fit {moduleName}: {string.Join(" | ", parts)}.";
    }
}
