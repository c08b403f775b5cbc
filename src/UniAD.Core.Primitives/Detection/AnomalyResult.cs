namespace UniAD.Core.Detection;

/// <summary>An anomaly map (row-major, one value per pixel of the scored image, raw scale). Immutable.</summary>
public sealed class AnomalyMapData
{
    private readonly float[] values;

    /// <summary>Wraps the values (the array is taken over, not copied).</summary>
    /// <exception cref="ArgumentException">The array's length is not width x height.</exception>
    public AnomalyMapData(int width, int height, float[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (width <= 0 || height <= 0 || values.Length != (long)width * height)
        {
            throw new ArgumentException($"A {width} x {height} map needs {(long)width * height} values, got {values.Length}.", nameof(values));
        }

        Width = width;
        Height = height;
        this.values = values;
    }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>The values, row-major.</summary>
    public ReadOnlySpan<float> Values => values;

    /// <summary>The value at column <paramref name="x"/>, row <paramref name="y"/>.</summary>
    public float this[int x, int y] => (uint)x < (uint)Width && (uint)y < (uint)Height
        ? values[(y * Width) + x]
        : throw new ArgumentOutOfRangeException(nameof(x), $"({x}, {y}) lies outside the {Width} x {Height} map.");

    /// <summary>The largest value.</summary>
    public float Max => values.Max();

    /// <summary>A binary mask (1 = anomalous) of the values at or above <paramref name="threshold"/>.</summary>
    public byte[] Threshold(double threshold)
    {
        var mask = new byte[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            mask[i] = values[i] >= threshold ? (byte)1 : (byte)0;
        }

        return mask;
    }
}

/// <summary>The verdict on one image.</summary>
/// <param name="Source">The file or name the image came from, if known.</param>
/// <param name="Score">Raw image score (the configured <c>DetectorOptions.ScoreKind</c> of the map at network resolution).</param>
/// <param name="NormalizedScore">The score mapped to [0, 1] with the threshold at 0.5, or null when the detector is not calibrated.</param>
/// <param name="IsAnomalous">Score at or above the calibrated threshold (moved by the sensitivity: <see cref="Calibration.EffectiveImageThreshold"/>), or null when the detector is not calibrated.</param>
/// <param name="Map">The anomaly map resized to the original image size (raw scale).</param>
/// <param name="Mask">Binary defect mask at the original size (1 = anomalous) from the calibrated pixel threshold (after sensitivity: <see cref="Calibration.EffectivePixelThreshold"/>), or null when there is none.</param>
public sealed record AnomalyResult(string? Source, double Score, double? NormalizedScore, bool? IsAnomalous, AnomalyMapData Map, byte[]? Mask);
