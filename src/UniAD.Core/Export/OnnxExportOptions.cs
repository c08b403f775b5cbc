namespace UniAD.Core.Export;

/// <summary>How <see cref="OnnxExport.ExportOnnx"/> writes the reconstruction's linear layers.</summary>
public enum OnnxQuantization
{
    /// <summary>float32 <c>MatMul</c> and <c>Add</c>: the standard operators, any ONNX runtime, maps within about 3e-5 of TorchSharp's (the default).</summary>
    None,

    /// <summary>
    /// Opt-in, ONNX Runtime only: every linear layer of the reconstruction (input and output projections, the attention
    /// projections, the feed-forward layers) becomes ONNX Runtime's <c>com.microsoft.DynamicQuantizeMatMul</c>: the weights
    /// stored as int8 with one symmetric scale per output column in a 7-bit range (±63, so that the u8 x s8 products of
    /// the AVX2 kernels cannot saturate), the activations quantized to uint8 per tensor at run time. The backbone, the
    /// attention products, softmax and the map stay float32. Faster on CPUs with fast integer dot products, and it
    /// changes the numbers: docs/benchmarks.md gives the measured map difference and AUROC effect.
    /// </summary>
    DynamicInt8,
}

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
