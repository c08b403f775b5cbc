using System.Globalization;
using System.Text.Json;

namespace UniAD.Core.Data;

/// <summary>
/// How images become network input (the reference's pipeline): resize to <see cref="InputSize"/> with
/// PIL's antialiased BILINEAR filter, scale to [0, 1], subtract <see cref="Mean"/> and divide by
/// <see cref="Std"/> per channel. Masks: NEAREST resize, any value above 0 is anomalous.
/// </summary>
public sealed record PreprocessOptions
{
    /// <summary>ImageNet channel means (R, G, B), the reference's <c>pixel_mean</c>.</summary>
    public static IReadOnlyList<double> ImageNetMean { get; } = new[] { 0.485, 0.456, 0.406 };

    /// <summary>ImageNet channel standard deviations (R, G, B), the reference's <c>pixel_std</c>.</summary>
    public static IReadOnlyList<double> ImageNetStd { get; } = new[] { 0.229, 0.224, 0.225 };

    /// <summary>Network input height and width (the paper: 224 x 224).</summary>
    public GridSize InputSize { get; init; } = new(224, 224);

    /// <summary>Per-channel mean (R, G, B) subtracted after scaling to [0, 1].</summary>
    public IReadOnlyList<double> Mean { get; init; } = ImageNetMean;

    /// <summary>Per-channel standard deviation (R, G, B) divided by after subtracting the mean.</summary>
    public IReadOnlyList<double> Std { get; init; } = ImageNetStd;

    /// <summary>Images with more pixels are refused before decoding (decompression bombs); default PIL's limit.</summary>
    public long MaxImagePixels { get; init; } = ImageDecoder.DefaultMaxPixels;

    /// <summary>Checks every value and throws an exception naming the first one that is impossible.</summary>
    /// <exception cref="ArgumentException">A size is not positive, a list does not hold three finite values, or a deviation is not positive.</exception>
    public void Validate()
    {
        if (InputSize.Height <= 0 || InputSize.Width <= 0)
        {
            throw new ArgumentException($"{nameof(InputSize)} = {InputSize} must be positive in both directions.", nameof(InputSize));
        }

        if (Mean is not { Count: 3 } || Mean.Any(m => !double.IsFinite(m)))
        {
            throw new ArgumentException($"{nameof(Mean)} must hold three finite values (R, G, B), got [{Describe(Mean)}].", nameof(Mean));
        }

        if (Std is not { Count: 3 } || Std.Any(s => !(s > 0) || !double.IsFinite(s)))
        {
            throw new ArgumentException($"{nameof(Std)} must hold three finite positive values (R, G, B), got [{Describe(Std)}].", nameof(Std));
        }

        OptionCheck.Positive(MaxImagePixels);
    }

    /// <summary>
    /// Reads the reference's keys: <c>input_size</c> [h, w], <c>pixel_mean</c> and <c>pixel_std</c> (three
    /// numbers each). Absent keys keep the defaults.
    /// </summary>
    /// <exception cref="FormatException">A value has the wrong JSON type or length.</exception>
    public static PreprocessOptions FromReferenceConfig(JsonElement config)
    {
        if (config.ValueKind != JsonValueKind.Object)
        {
            throw new FormatException($"A preprocessing config must be a JSON object, got {config.ValueKind}.");
        }

        var o = new PreprocessOptions();
        if (config.TryGetProperty("input_size", out var v))
        {
            var size = Numbers(v, "input_size", 2);
            o = o with { InputSize = new GridSize(checked((int)size[0]), checked((int)size[1])) };
        }

        if (config.TryGetProperty("pixel_mean", out v))
        {
            o = o with { Mean = Numbers(v, "pixel_mean", 3) };
        }

        if (config.TryGetProperty("pixel_std", out v))
        {
            o = o with { Std = Numbers(v, "pixel_std", 3) };
        }

        return o;
    }

    /// <summary>A text that changes whenever the preprocessed tensors would (used to key cached features).</summary>
    internal string Fingerprint() =>
        string.Create(CultureInfo.InvariantCulture, $"resize=pil-bilinear;size={InputSize.Height}x{InputSize.Width};mean={Describe(Mean)};std={Describe(Std)}");

    internal float[] MeanF32() => Mean.Select(m => (float)m).ToArray();

    internal float[] StdF32() => Std.Select(s => (float)s).ToArray();

    private static string Describe(IReadOnlyList<double>? values) =>
        values is null ? "null" : string.Join(", ", values.Select(x => x.ToString("R", CultureInfo.InvariantCulture)));

    private static double[] Numbers(JsonElement v, string name, int count)
    {
        if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() != count || v.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.Number))
        {
            throw new FormatException($"'{name}' must be a list of {count} numbers, got {v}.");
        }

        return v.EnumerateArray().Select(e => e.GetDouble()).ToArray();
    }
}
