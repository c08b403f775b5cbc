using MathNet.Numerics.Statistics;
using static TorchSharp.torch;

namespace UniAD.Core.Metrics;

/// <summary>The four image scores of one anomaly map.</summary>
/// <param name="PooledMax">Max after k x k average pooling, stride 1.</param>
/// <param name="Mean">Mean of the map.</param>
/// <param name="Std">Population standard deviation of the map.</param>
/// <param name="PlainMax">Largest value of the map.</param>
public sealed record ImageScores(double PooledMax, double Mean, double Std, double PlainMax)
{
    /// <summary>The mean of the largest 1 % of the map (<see cref="ImageScoreKind.TopMean"/>); NaN when not computed.</summary>
    public double TopMean { get; init; } = double.NaN;

    /// <summary>The score of the given kind.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An unknown kind.</exception>
    public double this[ImageScoreKind kind] => kind switch
    {
        ImageScoreKind.PooledMax => PooledMax,
        ImageScoreKind.Mean => Mean,
        ImageScoreKind.Std => Std,
        ImageScoreKind.PlainMax => PlainMax,
        ImageScoreKind.TopMean => TopMean,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown image score kind."),
    };
}

/// <summary>
/// Image scores from anomaly maps, computed in double precision (the reference computes them in float32, so the
/// last digits may differ; only their order matters to the image metrics).
/// </summary>
public static class ImageScoring
{
    /// <summary>The reference evaluator's pooling window, 16 x 16.</summary>
    public const int ReferencePoolSize = 16;

    /// <summary>Every kind, in the order of reports.</summary>
    public static IReadOnlyList<ImageScoreKind> Kinds { get; } = [ImageScoreKind.PooledMax, ImageScoreKind.Mean, ImageScoreKind.Std, ImageScoreKind.PlainMax, ImageScoreKind.TopMean];

    /// <summary>The kind's short name in metric keys: <c>max</c> (pooled, as the reference), <c>mean</c>, <c>std</c>, <c>plainmax</c>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An unknown kind.</exception>
    public static string Name(ImageScoreKind kind) => kind switch
    {
        ImageScoreKind.PooledMax => "max",
        ImageScoreKind.Mean => "mean",
        ImageScoreKind.Std => "std",
        ImageScoreKind.PlainMax => "plainmax",
        ImageScoreKind.TopMean => "topmean",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown image score kind."),
    };

    /// <summary>All four scores of one row-major map.</summary>
    /// <param name="map">height x width scores, finite.</param>
    /// <param name="height">Rows.</param>
    /// <param name="width">Columns.</param>
    /// <param name="poolSize">Pooling window for <see cref="ImageScores.PooledMax"/>, at most the map's height and width.</param>
    /// <exception cref="ArgumentException">The map's length is not height x width, a score is not finite, or the window does not fit.</exception>
    public static ImageScores Compute(ReadOnlySpan<float> map, int height, int width, int poolSize = ReferencePoolSize) =>
        Compute(map, height, width, poolSize, poolSize);

    /// <summary>All four scores of one row-major map, with a <paramref name="poolHeight"/> x <paramref name="poolWidth"/> pooling window.</summary>
    /// <param name="map">height x width scores, finite.</param>
    /// <param name="height">Rows.</param>
    /// <param name="width">Columns.</param>
    /// <param name="poolHeight">Rows of the pooling window, at most the map's height.</param>
    /// <param name="poolWidth">Columns of the pooling window, at most the map's width.</param>
    /// <exception cref="ArgumentException">The map's length is not height x width, a score is not finite, or the window does not fit.</exception>
    public static ImageScores Compute(ReadOnlySpan<float> map, int height, int width, int poolHeight, int poolWidth)
    {
        double pooled = PooledMax(map, height, width, poolHeight, poolWidth);
        var stats = new RunningStatistics();
        foreach (float v in map)
        {
            stats.Push(v);
        }

        return new ImageScores(pooled, stats.Mean, stats.PopulationStandardDeviation, stats.Maximum) { TopMean = MapScore.TopMean(map) };
    }

    /// <summary>Scores of every map of a tensor (copied to the CPU as float32): N x H x W, N x 1 x H x W or one H x W map.</summary>
    /// <param name="maps">The anomaly maps.</param>
    /// <param name="poolSize">Pooling window for <see cref="ImageScores.PooledMax"/>.</param>
    /// <exception cref="ArgumentException">See <see cref="Compute(ReadOnlySpan{float}, int, int, int)"/>; also an unsupported shape.</exception>
    public static IReadOnlyList<ImageScores> Compute(Tensor maps, int poolSize = ReferencePoolSize) => Compute(maps, poolSize, poolSize);

    /// <summary>Scores of every map of a tensor, with a <paramref name="poolHeight"/> x <paramref name="poolWidth"/> pooling window.</summary>
    /// <param name="maps">The anomaly maps.</param>
    /// <param name="poolHeight">Rows of the pooling window.</param>
    /// <param name="poolWidth">Columns of the pooling window.</param>
    /// <exception cref="ArgumentException">See <see cref="Compute(ReadOnlySpan{float}, int, int, int, int)"/>; also an unsupported shape.</exception>
    public static IReadOnlyList<ImageScores> Compute(Tensor maps, int poolHeight, int poolWidth)
    {
        var (data, count, height, width) = TensorInput.Maps(maps, nameof(maps));
        int pixels = height * width;
        var scores = new ImageScores[count];
        for (int i = 0; i < count; i++)
        {
            scores[i] = Compute(data.AsSpan(i * pixels, pixels), height, width, poolHeight, poolWidth);
        }

        return scores;
    }

    /// <summary>
    /// The maximum over all positions of the mean of a <paramref name="poolSize"/> x <paramref name="poolSize"/>
    /// window (average pooling with stride 1 and no padding, as PyTorch's avg_pool2d, then the max).
    /// </summary>
    /// <param name="map">height x width scores, finite.</param>
    /// <param name="height">Rows.</param>
    /// <param name="width">Columns.</param>
    /// <param name="poolSize">Window side, from 1 to min(height, width).</param>
    /// <exception cref="ArgumentException">The map's length is not height x width, a score is not finite, or the window does not fit.</exception>
    public static double PooledMax(ReadOnlySpan<float> map, int height, int width, int poolSize = ReferencePoolSize)
    {
        if (poolSize < 1 || poolSize > height || poolSize > width)
        {
            throw new ArgumentOutOfRangeException(nameof(poolSize), poolSize, $"The pooling window must lie between 1 and the map's size ({height} x {width}).");
        }

        return PooledMax(map, height, width, poolSize, poolSize);
    }

    /// <summary>
    /// The maximum over all positions of the mean of a <paramref name="poolHeight"/> x <paramref name="poolWidth"/>
    /// window (average pooling with kernel [poolHeight, poolWidth], stride 1 and no padding, as PyTorch's avg_pool2d, then the max).
    /// A wide, flat window suits long, thin defects (scratches, cracks) that a square one averages against normal surface.
    /// </summary>
    /// <param name="map">height x width scores, finite.</param>
    /// <param name="height">Rows.</param>
    /// <param name="width">Columns.</param>
    /// <param name="poolHeight">Window rows, from 1 to height.</param>
    /// <param name="poolWidth">Window columns, from 1 to width.</param>
    /// <exception cref="ArgumentException">The map's length is not height x width, a score is not finite, or the window does not fit.</exception>
    public static double PooledMax(ReadOnlySpan<float> map, int height, int width, int poolHeight, int poolWidth)
    {
        if (height <= 0 || width <= 0 || (long)height * width != map.Length)
        {
            throw new ArgumentException($"A {height} x {width} map needs {(long)height * width} values, got {map.Length}.", nameof(map));
        }

        if (poolHeight < 1 || poolHeight > height)
        {
            throw new ArgumentOutOfRangeException(nameof(poolHeight), poolHeight, $"The pooling window's height must lie between 1 and the map's height ({height} x {width}).");
        }

        if (poolWidth < 1 || poolWidth > width)
        {
            throw new ArgumentOutOfRangeException(nameof(poolWidth), poolWidth, $"The pooling window's width must lie between 1 and the map's width ({height} x {width}).");
        }

        InputChecks.RequireFiniteScores(map, nameof(map));
        return MapScore.WindowMax(map, height, width, poolHeight, poolWidth);
    }
}
