using static TorchSharp.torch;

namespace UniAD.Core.Metrics;

/// <summary>
/// AUROC, average precision and F1-max of scores against binary labels (true = anomalous), exact and
/// threshold-free: every distinct score is a threshold, tied scores form one point (as scikit-learn's roc_curve and
/// precision_recall_curve). Scores must be finite; −0 and +0 are the same score.
/// </summary>
/// <remarks>
/// The float overloads sort with a radix sort on the scores' bit patterns and suit millions of samples (pixels);
/// the double overloads sort a copy with <see cref="Array.Sort{TKey, TValue}(TKey[], TValue[])"/> (image scores).
/// Both give identical results on identical values. For the pixels of maps and masks, and for AU-PRO, use
/// <see cref="PixelMetricsAccumulator"/>.
/// </remarks>
public static class BinaryClassification
{
    /// <summary>Computes all three metrics from one sort. Undefined values are NaN (see <see cref="BinaryMetrics"/>); this never throws for a single-label input.</summary>
    /// <param name="scores">Anomaly scores, higher = more anomalous; finite.</param>
    /// <param name="labels">True for anomalous samples, as long as <paramref name="scores"/>.</param>
    /// <exception cref="ArgumentException">The lengths differ, the input is empty, or a score is not finite (the message names its index).</exception>
    public static BinaryMetrics Evaluate(ReadOnlySpan<float> scores, ReadOnlySpan<bool> labels)
    {
        InputChecks.RequireSameLength(scores.Length, labels.Length, nameof(scores), nameof(labels));
        InputChecks.RequireFiniteScores(scores, nameof(scores));
        var store = new ScoreStore(withRegions: false);
        for (int i = 0; i < scores.Length; i++)
        {
            if (labels[i])
            {
                store.AddPositive(scores[i], 0);
            }
            else
            {
                store.AddNormal(scores[i]);
            }
        }

        return ToMetrics(store.Positives, store.Normals, store.Sweep([], PixelMetricsAccumulator.DefaultFprLimit));
    }

    /// <inheritdoc cref="Evaluate(ReadOnlySpan{float}, ReadOnlySpan{bool})"/>
    public static BinaryMetrics Evaluate(ReadOnlySpan<double> scores, ReadOnlySpan<bool> labels)
    {
        InputChecks.RequireSameLength(scores.Length, labels.Length, nameof(scores), nameof(labels));
        InputChecks.RequireFiniteScores(scores, nameof(scores));
        var keys = new double[scores.Length];
        var items = labels.ToArray();
        long positives = 0;
        for (int i = 0; i < keys.Length; i++)
        {
            keys[i] = scores[i] + 0.0; // −0 becomes +0
            positives += items[i] ? 1 : 0;
        }

        Array.Sort(keys, items);
        var sweep = new ThresholdSweep(positives, keys.Length - positives, 0, PixelMetricsAccumulator.DefaultFprLimit);
        for (int end = keys.Length - 1; end >= 0;)
        {
            double threshold = keys[end];
            long tp = 0, fp = 0;
            for (; end >= 0 && keys[end] == threshold; end--)
            {
                if (items[end])
                {
                    tp++;
                }
                else
                {
                    fp++;
                }
            }

            sweep.Add(threshold, tp, fp, 0);
        }

        return ToMetrics(positives, keys.Length - positives, sweep.Result());
    }

    /// <summary>Evaluates tensors (copied to the CPU): scores of any real dtype (float64 stays double, others become float32), labels of the same number of elements, any real or bool dtype, 0 normal and &gt; 0 anomalous.</summary>
    /// <param name="scores">Anomaly scores; flattened.</param>
    /// <param name="labels">Labels; flattened.</param>
    /// <exception cref="ArgumentException">As for the span overloads; also a negative or NaN label.</exception>
    public static BinaryMetrics Evaluate(Tensor scores, Tensor labels)
    {
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(labels);
        var raw = TensorInput.Floats(labels);
        InputChecks.RequireLabels<float>(raw, nameof(labels));
        var flags = Array.ConvertAll(raw, v => InputChecks.IsAnomalous(v));
        return scores.dtype == ScalarType.Float64
            ? Evaluate(TensorInput.Doubles(scores), flags)
            : Evaluate(TensorInput.Floats(scores), flags);
    }

    /// <summary>Area under the ROC curve (scikit-learn's roc_auc_score): 1 for a perfect ranking, 0 for a reversed one, 0.5 when all scores tie.</summary>
    /// <param name="scores">Anomaly scores; finite.</param>
    /// <param name="labels">True for anomalous samples.</param>
    /// <exception cref="ArgumentException">See <see cref="Evaluate(ReadOnlySpan{double}, ReadOnlySpan{bool})"/>.</exception>
    /// <exception cref="UndefinedMetricException">Only one label occurs.</exception>
    public static double Auroc(ReadOnlySpan<double> scores, ReadOnlySpan<bool> labels) => RequireAuroc(Evaluate(scores, labels));

    /// <inheritdoc cref="Auroc(ReadOnlySpan{double}, ReadOnlySpan{bool})"/>
    public static double Auroc(ReadOnlySpan<float> scores, ReadOnlySpan<bool> labels) => RequireAuroc(Evaluate(scores, labels));

    /// <summary>Average precision (scikit-learn's average_precision_score): Σ (R_n − R_(n−1)) P_n over the thresholds, no interpolation.</summary>
    /// <param name="scores">Anomaly scores; finite.</param>
    /// <param name="labels">True for anomalous samples.</param>
    /// <exception cref="ArgumentException">See <see cref="Evaluate(ReadOnlySpan{double}, ReadOnlySpan{bool})"/>.</exception>
    /// <exception cref="UndefinedMetricException">No sample is anomalous.</exception>
    public static double AveragePrecision(ReadOnlySpan<double> scores, ReadOnlySpan<bool> labels) => RequirePrecision(Evaluate(scores, labels)).AveragePrecision;

    /// <inheritdoc cref="AveragePrecision(ReadOnlySpan{double}, ReadOnlySpan{bool})"/>
    public static double AveragePrecision(ReadOnlySpan<float> scores, ReadOnlySpan<bool> labels) => RequirePrecision(Evaluate(scores, labels)).AveragePrecision;

    /// <summary>The best F1 over the precision-recall curve's thresholds, with that threshold (see <see cref="Metrics.F1Max"/>).</summary>
    /// <param name="scores">Anomaly scores; finite.</param>
    /// <param name="labels">True for anomalous samples.</param>
    /// <exception cref="ArgumentException">See <see cref="Evaluate(ReadOnlySpan{double}, ReadOnlySpan{bool})"/>.</exception>
    /// <exception cref="UndefinedMetricException">No sample is anomalous.</exception>
    public static F1Max F1Max(ReadOnlySpan<double> scores, ReadOnlySpan<bool> labels) => RequirePrecision(Evaluate(scores, labels)).F1Max;

    /// <inheritdoc cref="F1Max(ReadOnlySpan{double}, ReadOnlySpan{bool})"/>
    public static F1Max F1Max(ReadOnlySpan<float> scores, ReadOnlySpan<bool> labels) => RequirePrecision(Evaluate(scores, labels)).F1Max;

    /// <summary>
    /// The reference evaluator's convention, for comparison with published logs only: an AUROC below 0.5 is
    /// replaced by 1 − AUROC (a detector ranked the wrong way round is scored as if it were inverted). NaN stays NaN.
    /// Every metric in this namespace reports the true AUROC unless this is applied explicitly.
    /// </summary>
    /// <param name="auroc">A true AUROC.</param>
    public static double FoldBelowHalf(double auroc) => auroc < 0.5 ? 1 - auroc : auroc;

    private static BinaryMetrics ToMetrics(long positives, long negatives, SweepResult r) =>
        new(positives, negatives, r.Auroc, r.AveragePrecision, r.F1Max);

    private static double RequireAuroc(BinaryMetrics m) =>
        m.IsAurocDefined ? m.Auroc : throw new UndefinedMetricException($"AUROC is undefined: {m.UndefinedReason}. It needs at least one normal and one anomalous sample.");

    private static BinaryMetrics RequirePrecision(BinaryMetrics m) =>
        m.IsPrecisionDefined ? m : throw new UndefinedMetricException($"AP and F1-max are undefined: {m.UndefinedReason}. They need at least one anomalous sample.");
}
