namespace UniAD.Core.Export;

/// <summary>Options of <see cref="OnnxExport.ExportOnnx"/>.</summary>
public sealed record OnnxExportOptions
{
    /// <summary>The numeric form of the reconstruction's linear layers (<see cref="OnnxQuantization.None"/> by default).</summary>
    public OnnxQuantization Quantization { get; init; } = OnnxQuantization.None;

    /// <summary>
    /// The class names of the training data, stored under <see cref="OnnxMetadataKeys.ClassNames"/>. A detector does not
    /// record the classes it was trained on, so only the caller can supply them; null leaves the key out.
    /// </summary>
    public IReadOnlyList<string>? ClassNames { get; init; }

    /// <summary>
    /// Extra metadata entries (e.g. a model name or a data-set version), written after the format's own in key order.
    /// Keys may not start with <see cref="OnnxMetadataKeys.Prefix"/>.
    /// </summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>Checks every value and throws an exception naming the first one that is impossible.</summary>
    /// <exception cref="ArgumentException">A class name is null or empty, a metadata key is empty, uses the format's prefix, or has a null value, or the quantization is not a defined value.</exception>
    public void Validate()
    {
        if (!Enum.IsDefined(Quantization))
        {
            throw new ArgumentException($"{nameof(Quantization)} {(int)Quantization} is not an {nameof(OnnxQuantization)} value.", nameof(Quantization));
        }

        if (ClassNames is { } classes && classes.Any(string.IsNullOrEmpty))
        {
            throw new ArgumentException($"{nameof(ClassNames)} holds a null or empty name.", nameof(ClassNames));
        }

        foreach (var (key, value) in Metadata ?? new Dictionary<string, string>())
        {
            if (string.IsNullOrEmpty(key) || key.StartsWith(OnnxMetadataKeys.Prefix, StringComparison.Ordinal))
            {
                throw new ArgumentException($"{nameof(Metadata)} key '{key}' is empty or starts with '{OnnxMetadataKeys.Prefix}', which the format keeps for itself.", nameof(Metadata));
            }

            if (value is null)
            {
                throw new ArgumentException($"{nameof(Metadata)} key '{key}' has a null value.", nameof(Metadata));
            }
        }
    }
}
