namespace UniAD.Core.Metrics;

/// <summary>
/// Threshold-free ranking metrics of scores against binary labels (anomalous = positive), computed exactly as
/// scikit-learn does, tied scores being one threshold.
/// </summary>
/// <param name="Positives">Anomalous samples.</param>
/// <param name="Negatives">Normal samples.</param>
/// <param name="Auroc">Area under the ROC curve (the true value; see <see cref="BinaryClassification.FoldBelowHalf"/>
/// for the reference evaluator's convention). NaN unless both labels occur.</param>
/// <param name="AveragePrecision">Average precision, Σ (R_n − R_(n−1)) P_n (scikit-learn's average_precision_score).
/// NaN without anomalous samples; 1 when every sample is anomalous.</param>
/// <param name="F1Max">The best F1 over all thresholds and its threshold. Undefined (NaN) without anomalous
/// samples; F1 = 1 at the lowest score when every sample is anomalous.</param>
public sealed record BinaryMetrics(long Positives, long Negatives, double Auroc, double AveragePrecision, F1Max F1Max)
{
    /// <summary>True when both labels occur, so that <see cref="Auroc"/> has a value.</summary>
    public bool IsAurocDefined => Positives > 0 && Negatives > 0;

    /// <summary>True when at least one sample is anomalous, so that <see cref="AveragePrecision"/> and <see cref="F1Max"/> have values.</summary>
    public bool IsPrecisionDefined => Positives > 0;

    /// <summary>Why some values are NaN, or null when every value is defined.</summary>
    public string? UndefinedReason => UndefinedReasons.Reason(Positives, Negatives);
}

/// <summary>The wording of undefined results, shared by the result records.</summary>
internal static class UndefinedReasons
{
    public static string? Reason(long positives, long negatives, string what = "samples", bool withAuPro = false)
    {
        string ranking = withAuPro ? "AUROC and AU-PRO are" : "AUROC is";
        string every = withAuPro ? "AUROC, AP, F1-max and AU-PRO are" : "AUROC, AP and F1-max are";
        return (positives, negatives) switch
        {
            (0, 0) => $"there are no {what}: {every} undefined (NaN)",
            (0, _) => $"all {negatives} {what} are normal: {every} undefined (NaN)",
            (_, 0) => $"all {positives} {what} are anomalous: {ranking} undefined (NaN); AP and F1-max are 1",
            _ => null,
        };
    }
}
