using System.Globalization;
using System.Numerics;

namespace UniAD.Core.Metrics;

/// <summary>Validation shared by the metric entry points; every message names the offending value and where it is.</summary>
internal static class InputChecks
{
    /// <summary>Throws unless every score is finite.</summary>
    public static void RequireFiniteScores<T>(ReadOnlySpan<T> scores, string name)
        where T : INumberBase<T>
    {
        int i = FirstNonFinite(scores);
        if (i >= 0)
        {
            throw new ArgumentException($"{name}[{i}] is {Format(scores[i])}; scores must be finite.", name);
        }
    }

    /// <summary>True for a mask or label value that marks an anomalous sample (anything &gt; 0, as in the reference).</summary>
    public static bool IsAnomalous<T>(T value)
        where T : INumber<T> => value > T.Zero;

    /// <summary>How many values are anomalous (&gt; 0).</summary>
    public static long CountAnomalous<T>(ReadOnlySpan<T> labels)
        where T : INumber<T>
    {
        long anomalous = 0;
        foreach (var v in labels)
        {
            anomalous += IsAnomalous(v) ? 1 : 0;
        }

        return anomalous;
    }

    /// <summary>Throws unless every label is 0 (normal) or &gt; 0 (anomalous); returns how many are anomalous.</summary>
    public static long RequireLabels<T>(ReadOnlySpan<T> labels, string name)
        where T : INumber<T>
    {
        int i = FirstInvalidLabel(labels);
        if (i >= 0)
        {
            throw new ArgumentException($"{name}[{i}] is {Format(labels[i])}; labels must be 0 (normal) or > 0 (anomalous).", name);
        }

        return CountAnomalous(labels);
    }

    /// <summary>Throws unless scores and labels are non-empty and equally long.</summary>
    public static void RequireSameLength(int scores, int labels, string scoresName, string labelsName)
    {
        if (scores != labels)
        {
            throw new ArgumentException($"{scores} {scoresName} but {labels} {labelsName}: they must be equally long.", labelsName);
        }

        if (scores == 0)
        {
            throw new ArgumentException($"No {scoresName}: the metrics need at least one sample.", scoresName);
        }
    }

    /// <summary>
    /// Checks a batch of row-major maps and masks (image x row x column): equal, non-empty, whole numbers of
    /// height x width images, finite scores, mask values 0 or &gt; 0. Returns the number of anomalous pixels.
    /// </summary>
    public static long RequireMapsAndMasks<TMask>(ReadOnlySpan<float> maps, ReadOnlySpan<TMask> masks, int height, int width)
        where TMask : INumber<TMask>
    {
        if (height <= 0 || width <= 0)
        {
            throw new ArgumentOutOfRangeException(height <= 0 ? nameof(height) : nameof(width), $"Maps must be at least 1 x 1; got height {height}, width {width}.");
        }

        if (maps.Length != masks.Length)
        {
            throw new ArgumentException($"{maps.Length} map values but {masks.Length} mask values: maps and masks must have the same size.", nameof(masks));
        }

        if (maps.Length == 0)
        {
            throw new ArgumentException("No maps: a batch must hold at least one map.", nameof(maps));
        }

        if (maps.Length % ((long)height * width) != 0)
        {
            throw new ArgumentException($"{maps.Length} values are not a whole number of {height} x {width} maps.", nameof(maps));
        }

        int i = FirstNonFinite(maps);
        if (i >= 0)
        {
            throw new ArgumentException($"maps: {Where(i, height, width)} is {Format(maps[i])}; anomaly scores must be finite.", nameof(maps));
        }

        i = FirstInvalidLabel(masks);
        if (i >= 0)
        {
            throw new ArgumentException($"masks: {Where(i, height, width)} is {Format(masks[i])}; mask values must be 0 (normal) or > 0 (anomalous).", nameof(masks));
        }

        return CountAnomalous(masks);
    }

    private static int FirstNonFinite<T>(ReadOnlySpan<T> values)
        where T : INumberBase<T>
    {
        for (int i = 0; i < values.Length; i++)
        {
            if (!T.IsFinite(values[i]))
            {
                return i;
            }
        }

        return -1;
    }

    private static int FirstInvalidLabel<T>(ReadOnlySpan<T> values)
        where T : INumber<T>
    {
        for (int i = 0; i < values.Length; i++)
        {
            if (T.IsNaN(values[i]) || values[i] < T.Zero)
            {
                return i;
            }
        }

        return -1;
    }

    private static string Where(int index, int height, int width)
    {
        int pixels = height * width, image = index / pixels, y = (index % pixels) / width, x = index % width;
        return $"image {image} of the batch, row {y}, column {x}";
    }

    private static string Format<T>(T value)
        where T : INumberBase<T> => value.ToString(null, CultureInfo.InvariantCulture);
}
