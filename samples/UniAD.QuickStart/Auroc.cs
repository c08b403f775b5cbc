namespace UniAD.QuickStart;

/// <summary>Area under the ROC curve by the rank-sum (Mann-Whitney) formula, with tied scores sharing their mean rank.</summary>
internal static class Auroc
{
    public static double Compute(float[] scores, bool[] labels)
    {
        if (scores.Length != labels.Length)
        {
            throw new ArgumentException($"{scores.Length} scores but {labels.Length} labels.");
        }

        var order = Enumerable.Range(0, scores.Length).ToArray();
        Array.Sort(scores.ToArray(), order);
        double positives = labels.Count(l => l), negatives = labels.Length - positives;
        if (positives == 0 || negatives == 0)
        {
            return double.NaN;
        }

        double rankSum = 0;
        for (int i = 0; i < order.Length;)
        {
            int j = i;
            while (j + 1 < order.Length && scores[order[j + 1]] == scores[order[i]])
            {
                j++;
            }

            double meanRank = ((i + j) / 2.0) + 1;
            for (int k = i; k <= j; k++)
            {
                if (labels[order[k]])
                {
                    rankSum += meanRank;
                }
            }

            i = j + 1;
        }

        return (rankSum - (positives * (positives + 1) / 2)) / (positives * negatives);
    }
}
