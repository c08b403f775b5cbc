namespace UniAD.Core.Export;

/// <summary>
/// How an exported model stores the reconstruction's linear layers (UniAD.Core's <c>OnnxExportOptions.Quantization</c>;
/// recorded under <see cref="OnnxMetadataKeys.Quantization"/> and read back as <see cref="OnnxScoringInfo.Quantization"/>).
/// </summary>
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

/// <summary>The metadata names of <see cref="OnnxQuantization"/> values (<see cref="OnnxMetadataKeys.Quantization"/>).</summary>
public static class OnnxQuantizationNames
{
    /// <summary>The name written for a value: <c>none</c> or <c>dynamic-int8</c>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Not a defined value.</exception>
    public static string Of(OnnxQuantization quantization) => quantization switch
    {
        OnnxQuantization.None => "none",
        OnnxQuantization.DynamicInt8 => "dynamic-int8",
        _ => throw new ArgumentOutOfRangeException(nameof(quantization), quantization, "Not an OnnxQuantization value."),
    };

    /// <summary>The value of a name written by <see cref="Of"/>, or false for any other text.</summary>
    public static bool TryParse(string name, out OnnxQuantization quantization)
    {
        foreach (var value in Enum.GetValues<OnnxQuantization>())
        {
            if (string.Equals(Of(value), name, StringComparison.Ordinal))
            {
                quantization = value;
                return true;
            }
        }

        quantization = default;
        return false;
    }
}
