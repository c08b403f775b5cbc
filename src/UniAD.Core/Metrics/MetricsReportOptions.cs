namespace UniAD.Core.Metrics;

/// <summary>Settings of a <see cref="MetricsReportBuilder"/>. The defaults are the reference evaluator's protocol, reporting true AUROC values.</summary>
public sealed record MetricsReportOptions
{
    /// <summary>Window of the pooled-max image score (<see cref="ImageScoreKind.PooledMax"/>); the reference uses 16.</summary>
    public int PoolSize { get; init; } = ImageScoring.ReferencePoolSize;

    /// <summary>
    /// Rows of the pooled-max window when it is not square (<see cref="PoolSize"/> is then its width); null (the default)
    /// for a square <see cref="PoolSize"/> x <see cref="PoolSize"/> window.
    /// </summary>
    public int? PoolHeight { get; init; }

    /// <summary>The pooled-max window's rows: <see cref="PoolHeight"/>, or <see cref="PoolSize"/> for a square one.</summary>
    internal int WindowHeight => PoolHeight ?? PoolSize;

    /// <summary>FPR limit of AU-PRO, in (0, 1]; default 0.3.</summary>
    public double FprLimit { get; init; } = PixelMetricsAccumulator.DefaultFprLimit;

    /// <summary>Compute AU-PRO (labels the masks' regions; 4 more bytes per anomalous pixel). Default true.</summary>
    public bool ComputeAuPro { get; init; } = true;

    /// <summary>
    /// Compatibility with the reference evaluator, off by default: every AUROC below 0.5 (image and pixel) is reported
    /// as 1 − AUROC (<see cref="BinaryClassification.FoldBelowHalf"/>), before the mean over classes, as the reference
    /// does. The report's notes list each value that was folded.
    /// </summary>
    public bool FoldAurocBelowHalf { get; init; }

    /// <summary>Throws an exception naming the first impossible value.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The pool size or height is below 1 or the FPR limit is not in (0, 1].</exception>
    public void Validate()
    {
        if (PoolSize < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(PoolSize), PoolSize, "The pooling window must be at least 1.");
        }

        if (PoolHeight is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(PoolHeight), PoolHeight, "The pooling window's height must be at least 1.");
        }

        if (!(FprLimit > 0 && FprLimit <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(FprLimit), FprLimit, "The AU-PRO FPR limit must lie in (0, 1].");
        }
    }
}
