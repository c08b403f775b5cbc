namespace UniAD.Core.Metrics;

/// <summary>
/// Thrown by the single-value metric functions when the metric has no value for the input: AUROC needs at least one
/// normal and one anomalous sample; AP and F1-max need at least one anomalous sample; AU-PRO needs both normal and
/// anomalous pixels. The functions that return a whole record report NaN with a reason instead.
/// </summary>
public sealed class UndefinedMetricException : InvalidOperationException
{
    /// <summary>Creates the exception with a message that says which metric and why.</summary>
    public UndefinedMetricException(string message)
        : base(message)
    {
    }
}
