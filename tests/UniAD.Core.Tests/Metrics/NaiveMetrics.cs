namespace UniAD.Core.Tests.Metrics;

/// <summary>
/// The metrics straight from their definitions, slowly (quadratic), as an independent check of the library:
/// AUROC by counting pairs (ties count one half), AP / F1-max / AU-PRO by re-counting at every distinct threshold.
/// </summary>
internal static class NaiveMetrics
{
    public static double Auroc(IReadOnlyList<double> scores, IReadOnlyList<bool> labels)
    {
        double wins = 0, pairs = 0;
        for (int i = 0; i < scores.Count; i++)
        {
            for (int j = 0; j < scores.Count; j++)
            {
                if (labels[i] && !labels[j])
                {
                    pairs++;
                    wins += scores[i] > scores[j] ? 1 : scores[i] == scores[j] ? 0.5 : 0;
                }
            }
        }

        return wins / pairs;
    }

    public static double AveragePrecision(IReadOnlyList<double> scores, IReadOnlyList<bool> labels)
    {
        double positives = labels.Count(l => l), ap = 0, previousRecall = 0;
        foreach (double t in Thresholds(scores))
        {
            var (tp, fp) = Counts(scores, labels, t);
            double recall = tp / positives;
            ap += (recall - previousRecall) * (tp / (tp + fp));
            previousRecall = recall;
        }

        return ap;
    }

    /// <summary>F1 = 2PR / (P + R) at every threshold; the first maximum in ascending threshold order.</summary>
    public static (double F1, double Threshold) F1Max(IReadOnlyList<double> scores, IReadOnlyList<bool> labels)
    {
        double positives = labels.Count(l => l), best = -1, threshold = double.NaN;
        foreach (double t in Thresholds(scores).Reverse())
        {
            var (tp, fp) = Counts(scores, labels, t);
            double precision = tp / (tp + fp), recall = tp / positives;
            double f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
            if (f1 > best + 1e-12)
            {
                (best, threshold) = (f1, t);
            }
        }

        return (best, threshold);
    }

    /// <summary>AU-PRO over pixels with a region id (-1 = normal), integrated to <paramref name="limit"/> and divided by it.</summary>
    public static double AuPro(IReadOnlyList<double> scores, IReadOnlyList<int> regions, double limit)
    {
        int regionCount = regions.Max() + 1;
        var sizes = new double[regionCount];
        foreach (int r in regions.Where(r => r >= 0))
        {
            sizes[r]++;
        }

        double normals = regions.Count(r => r < 0);
        var fpr = new List<double> { 0 };
        var pro = new List<double> { 0 };
        foreach (double t in Thresholds(scores))
        {
            var above = new double[regionCount];
            double fp = 0;
            for (int i = 0; i < scores.Count; i++)
            {
                if (scores[i] >= t && regions[i] < 0)
                {
                    fp++;
                }
                else if (scores[i] >= t)
                {
                    above[regions[i]]++;
                }
            }

            fpr.Add(fp / normals);
            pro.Add(Enumerable.Range(0, regionCount).Average(r => above[r] / sizes[r]));
        }

        double area = 0;
        for (int k = 1; k < fpr.Count && fpr[k - 1] < limit; k++)
        {
            double x0 = fpr[k - 1], x1 = Math.Min(fpr[k], limit);
            if (x1 > x0)
            {
                double y1 = pro[k - 1] + ((pro[k] - pro[k - 1]) * (x1 - x0) / (fpr[k] - x0));
                area += (x1 - x0) * (pro[k - 1] + y1) / 2;
            }
        }

        return area / limit;
    }

    /// <summary>The distinct scores, highest first.</summary>
    private static IEnumerable<double> Thresholds(IReadOnlyList<double> scores) => scores.Distinct().OrderByDescending(s => s);

    private static (double Tp, double Fp) Counts(IReadOnlyList<double> scores, IReadOnlyList<bool> labels, double t)
    {
        double tp = 0, fp = 0;
        for (int i = 0; i < scores.Count; i++)
        {
            if (scores[i] >= t)
            {
                tp += labels[i] ? 1 : 0;
                fp += labels[i] ? 0 : 1;
            }
        }

        return (tp, fp);
    }
}
