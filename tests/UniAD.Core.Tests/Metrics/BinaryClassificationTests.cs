using UniAD.Core.Metrics;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Metrics;

public sealed class BinaryClassificationTests
{
    private const double Exact = 1e-15;

    [Theory]
    // scikit-learn's documentation example (roc_auc_score 0.75, average_precision_score 0.8333...);
    // F1 at thresholds 0.8, 0.4, 0.35, 0.1 = 2/3, 1/2, 4/5, 2/3.
    [InlineData(new[] { 0.1, 0.4, 0.35, 0.8 }, new[] { false, false, true, true }, 0.75, 5.0 / 6, 0.8, 0.35)]
    // A tie at 0.5 holds one anomalous and one normal sample, and is one threshold: ROC (0,0) (0,.5) (.5,1)
    // (1,1), area 0.875 = (1 + 1 + 0.5 + 1) / 4 pairs; AP = 1/2 · 1 + 1/2 · 2/3; F1 at 0.5 = 2·2 / (2 + 2 + 1).
    [InlineData(new[] { 0.9, 0.5, 0.5, 0.1 }, new[] { true, true, false, false }, 0.875, 5.0 / 6, 0.8, 0.5)]
    public void Small_examples_match_hand_computed_values(double[] scores, bool[] labels, double auroc, double ap, double f1, double threshold)
    {
        var m = BinaryClassification.Evaluate(scores, labels);

        Assert.Equal(auroc, m.Auroc, Exact);
        Assert.Equal(ap, m.AveragePrecision, Exact);
        Assert.Equal(new F1Max(f1, threshold), m.F1Max);
        Assert.Equal((2L, 2L), (m.Positives, m.Negatives));
        Assert.Null(m.UndefinedReason);
    }

    [Fact]
    public void Equal_best_F1_reports_the_lowest_threshold()
    {
        // F1 at 0.9: TP 1, FP 0 → 2/3; at 0.6: TP 2, FP 2 → 2/3; in between lower. numpy's argmax over
        // scikit-learn's ascending thresholds picks 0.6.
        double[] scores = [0.9, 0.8, 0.7, 0.6];
        bool[] labels = [true, false, false, true];
        Assert.Equal(new F1Max(2.0 / 3, 0.6), BinaryClassification.F1Max(scores, labels));
        Assert.Equal(0.6, NaiveMetrics.F1Max(scores, labels).Threshold);
    }

    [Theory]
    [InlineData(2, 1)]
    [InlineData(50, 7)]
    [InlineData(500, 250)]
    public void Perfect_ranking_gives_one_and_reversed_ranking_zero(int count, int anomalous)
    {
        var scores = Enumerable.Range(0, count).Select(i => (double)i).ToArray();
        var labels = scores.Select(s => s >= count - anomalous).ToArray();

        Assert.Equal(1.0, BinaryClassification.Auroc(scores, labels));
        Assert.Equal(1.0, BinaryClassification.AveragePrecision(scores, labels));
        Assert.Equal(new F1Max(1.0, count - anomalous), BinaryClassification.F1Max(scores, labels));
        Assert.Equal(0.0, BinaryClassification.Auroc(scores.Select(s => -s).ToArray(), labels));
    }

    [Theory]
    [InlineData(3, 1)]
    [InlineData(10, 4)]
    [InlineData(1000, 999)]
    public void All_tied_scores_give_one_half(int count, int anomalous)
    {
        var scores = Enumerable.Repeat(0.25f, count).ToArray();
        var labels = Enumerable.Range(0, count).Select(i => i < anomalous).ToArray();
        var m = BinaryClassification.Evaluate(scores, labels);

        Assert.Equal(0.5, m.Auroc);
        // One threshold: recall 1 at precision = prevalence; F1 = 2P / (P + n).
        Assert.Equal((double)anomalous / count, m.AveragePrecision, Exact);
        Assert.Equal(new F1Max(2.0 * anomalous / (anomalous + count), 0.25), m.F1Max);
    }

    [Fact]
    public void Strictly_increasing_transforms_change_nothing_but_the_threshold()
    {
        var (scores, labels) = RandomSample(400, seed: 3, distinct: 60);
        var reference = BinaryClassification.Evaluate(scores, labels);
        foreach (var transform in new Func<double, double>[] { s => (3 * s) + 7, Math.Exp, s => s * s * s, s => Math.Atan(s - 0.5) })
        {
            var m = BinaryClassification.Evaluate(scores.Select(transform).ToArray(), labels);
            Assert.Equal(reference.Auroc, m.Auroc);
            Assert.Equal(reference.AveragePrecision, m.AveragePrecision);
            Assert.Equal(reference.F1Max.F1, m.F1Max.F1);
            Assert.Equal(transform(reference.F1Max.Threshold), m.F1Max.Threshold);
        }
    }

    [Theory]
    [InlineData(1, 200, 1000)]
    [InlineData(2, 300, 25)]
    [InlineData(3, 100, 3)]
    public void Agrees_with_the_definitions_on_random_data_with_ties(int seed, int count, int distinct)
    {
        var (scores, labels) = RandomSample(count, seed, distinct);
        var m = BinaryClassification.Evaluate(scores, labels);
        var (f1, threshold) = NaiveMetrics.F1Max(scores, labels);

        Assert.Equal(NaiveMetrics.Auroc(scores, labels), m.Auroc, 1e-12);
        Assert.Equal(NaiveMetrics.AveragePrecision(scores, labels), m.AveragePrecision, 1e-12);
        Assert.Equal(f1, m.F1Max.F1, 1e-12);
        Assert.Equal(threshold, m.F1Max.Threshold);
    }

    [Fact]
    public void Float_and_double_overloads_agree_exactly()
    {
        var (scores, labels) = RandomSample(2000, seed: 9, distinct: 300);
        var floats = scores.Select(s => (float)s).ToArray();

        var fromFloats = BinaryClassification.Evaluate(floats, labels);
        var fromDoubles = BinaryClassification.Evaluate(floats.Select(f => (double)f).ToArray(), labels);

        Assert.Equal(fromDoubles, fromFloats);
    }

    [Fact]
    public void Negative_and_positive_zero_are_the_same_score()
    {
        Assert.Equal(0.5, BinaryClassification.Auroc([-0.0f, 0.0f], [true, false]));
        Assert.Equal(0.5, BinaryClassification.Auroc([0.0, -0.0], [true, false]));
        Assert.Equal(0.5, BinaryClassification.Auroc([-0.0, 0.0], [true, false]));
    }

    [Fact]
    public void Negative_scores_and_extremes_sort_numerically()
    {
        float[] scores = [-3e38f, -1f, -float.Epsilon, 0f, float.Epsilon, 2f, 3e38f];
        Assert.Equal(1.0, BinaryClassification.Auroc(scores, [false, false, false, true, true, true, true]));
        Assert.Equal(0.0, BinaryClassification.Auroc(scores, [true, true, true, false, false, false, false]));
    }

    [Fact]
    public void Only_normal_samples_give_NaN_with_a_reason_and_the_scalar_functions_throw()
    {
        double[] scores = [0.1, 0.2, 0.3];
        bool[] labels = [false, false, false];
        var m = BinaryClassification.Evaluate(scores, labels);

        Assert.False(m.IsAurocDefined);
        Assert.False(m.IsPrecisionDefined);
        Assert.True(double.IsNaN(m.Auroc) && double.IsNaN(m.AveragePrecision) && double.IsNaN(m.F1Max.F1) && double.IsNaN(m.F1Max.Threshold));
        Assert.Equal("all 3 samples are normal: AUROC, AP and F1-max are undefined (NaN)", m.UndefinedReason);
        var ex = Assert.Throws<UndefinedMetricException>(() => BinaryClassification.Auroc(scores, labels));
        Assert.Contains("all 3 samples are normal", ex.Message);
        Assert.Throws<UndefinedMetricException>(() => BinaryClassification.AveragePrecision(scores, labels));
        Assert.Throws<UndefinedMetricException>(() => BinaryClassification.F1Max(scores, labels));
    }

    [Fact]
    public void Only_anomalous_samples_leave_AUROC_undefined_but_AP_and_F1_at_one()
    {
        float[] scores = [0.7f, 0.2f, 0.5f];
        bool[] labels = [true, true, true];
        var m = BinaryClassification.Evaluate(scores, labels);

        Assert.False(m.IsAurocDefined);
        Assert.True(m.IsPrecisionDefined);
        Assert.True(double.IsNaN(m.Auroc));
        Assert.Equal(1.0, m.AveragePrecision);
        Assert.Equal(new F1Max(1.0, 0.2f), m.F1Max);
        Assert.Equal("all 3 samples are anomalous: AUROC is undefined (NaN); AP and F1-max are 1", m.UndefinedReason);
        Assert.Throws<UndefinedMetricException>(() => BinaryClassification.Auroc(scores, labels));
        Assert.Equal(1.0, BinaryClassification.AveragePrecision(scores, labels));
    }

    [Fact]
    public void Bad_input_is_rejected_with_the_offending_index_and_value()
    {
        var nan = Assert.Throws<ArgumentException>(() => BinaryClassification.Evaluate([0.1f, 0.2f, float.NaN], [true, false, true]));
        Assert.Contains("scores[2] is NaN", nan.Message);
        var inf = Assert.Throws<ArgumentException>(() => BinaryClassification.Evaluate([double.NegativeInfinity, 0.2], [true, false]));
        Assert.Contains("scores[0] is -Infinity", inf.Message);
        var lengths = Assert.Throws<ArgumentException>(() => BinaryClassification.Evaluate([0.1, 0.2], [true]));
        Assert.Contains("2 scores but 1 labels", lengths.Message);
        var empty = Assert.Throws<ArgumentException>(() => BinaryClassification.Evaluate(ReadOnlySpan<float>.Empty, ReadOnlySpan<bool>.Empty));
        Assert.Contains("No scores", empty.Message);
    }

    [Fact]
    public void Tensor_overload_counts_labels_above_zero_as_anomalous_and_rejects_negative_ones()
    {
        using var scores = tensor(new[] { 0.1f, 0.4f, 0.35f, 0.8f });
        using var labels = tensor(new[] { 0f, 0f, 0.5f, 1f });
        var m = BinaryClassification.Evaluate(scores, labels);
        Assert.Equal(0.75, m.Auroc, Exact);

        using var doubles = tensor(new[] { 0.1, 0.4, 0.35, 0.8 });
        using var flags = tensor(new[] { false, false, true, true });
        var fromDoubles = BinaryClassification.Evaluate(doubles, flags);
        Assert.Equal((m.Auroc, m.AveragePrecision, m.F1Max.F1), (fromDoubles.Auroc, fromDoubles.AveragePrecision, fromDoubles.F1Max.F1));
        Assert.Equal(0.35, fromDoubles.F1Max.Threshold); // float64 scores stay double

        using var negative = tensor(new[] { 0f, -1f, 1f, 1f });
        var ex = Assert.Throws<ArgumentException>(() => BinaryClassification.Evaluate(scores, negative));
        Assert.Contains("labels[1] is -1", ex.Message);
    }

    [Theory]
    [InlineData(0.2, 0.8)]
    [InlineData(0.5, 0.5)]
    [InlineData(0.7, 0.7)]
    [InlineData(0.0, 1.0)]
    public void FoldBelowHalf_is_the_reference_convention(double auroc, double folded)
    {
        Assert.Equal(folded, BinaryClassification.FoldBelowHalf(auroc), Exact);
    }

    [Fact]
    public void FoldBelowHalf_keeps_NaN()
    {
        Assert.True(double.IsNaN(BinaryClassification.FoldBelowHalf(double.NaN)));
    }

    /// <summary>Scores rounded to <paramref name="distinct"/> levels (so that many tie), labels correlated with them.</summary>
    private static (double[] Scores, bool[] Labels) RandomSample(int count, int seed, int distinct)
    {
        var rng = new Random(seed);
        var labels = Enumerable.Range(0, count).Select(_ => rng.NextDouble() < 0.3).ToArray();
        var scores = labels.Select(l => Math.Round(((l ? 0.3 : 0) + rng.NextDouble()) * distinct) / distinct).ToArray();
        return (scores, labels);
    }
}
