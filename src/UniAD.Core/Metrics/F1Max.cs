namespace UniAD.Core.Metrics;

/// <summary>
/// The best F1 score over all thresholds of the precision-recall curve, and the threshold that attains it:
/// samples scored at or above <see cref="Threshold"/> are called anomalous. Among thresholds with the same best F1
/// the lowest one is reported (numpy's argmax over scikit-learn's ascending thresholds).
/// </summary>
/// <param name="F1">The maximum F1, in [0, 1]; NaN when undefined (no anomalous sample).</param>
/// <param name="Threshold">The score threshold attaining it; NaN when undefined or for a mean over classes.</param>
public sealed record F1Max(double F1, double Threshold)
{
    /// <summary>The value for a set without anomalous samples: F1 and threshold are NaN.</summary>
    public static F1Max Undefined { get; } = new(double.NaN, double.NaN);
}
