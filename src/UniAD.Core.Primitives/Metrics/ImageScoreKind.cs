namespace UniAD.Core.Metrics;

/// <summary>How an image's anomaly score is derived from its anomaly map.</summary>
public enum ImageScoreKind
{
    /// <summary>Average pooling with a k x k window and stride 1 (no padding), then the maximum (the reference uses k = 16). Key name <c>max</c>, as the reference's.</summary>
    PooledMax,

    /// <summary>The mean of the map. Key name <c>mean</c>.</summary>
    Mean,

    /// <summary>The population standard deviation of the map (divisor N, numpy's default). Key name <c>std</c>.</summary>
    Std,

    /// <summary>The largest value of the map, without pooling. Key name <c>plainmax</c> (the reference has no such score).</summary>
    PlainMax,

    /// <summary>
    /// The mean of the largest 1 % of the map's values (<see cref="MapScore.TopFraction"/>, at least one value): the image
    /// score of the later reconstruction models (<c>shared/methods/FAST_OBJECTIVE.md</c>), steadier than one pixel's maximum.
    /// Key name <c>topmean</c> (the reference has no such score).
    /// </summary>
    TopMean,
}
