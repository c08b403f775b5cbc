using MathNet.Numerics.Interpolation;

namespace UniAD.Core.Metrics;

/// <summary>What one sweep over the distinct thresholds yields; NaN where undefined (see <see cref="ThresholdSweep"/>).</summary>
internal readonly record struct SweepResult(double Auroc, double AveragePrecision, F1Max F1Max, double AuPro);

/// <summary>
/// Accumulates AUROC, AP, F1-max and AU-PRO while the distinct scores are visited from the highest to the lowest,
/// each visit adding the samples whose score equals that threshold (tied scores are one point of every curve).
/// <list type="bullet">
/// <item>AUROC: trapezoid rule over the ROC points (FPR, TPR), starting at (0, 0); summed exactly in integers
/// (twice the area times P·N), so it equals the Mann-Whitney statistic with tied pairs counted one half.</item>
/// <item>AP: Σ (R_n − R_(n−1)) P_n over the thresholds, no interpolation (scikit-learn's average_precision_score).</item>
/// <item>F1-max: the largest 2·TP / (P + TP + FP) over the thresholds, i.e. 2PR / (P + R) at each point of the
/// precision-recall curve; among equal maxima the lowest threshold (numpy's argmax over scikit-learn's ascending
/// thresholds).</item>
/// <item>AU-PRO: the curve (FPR, PRO) from (0, 0), PRO being the mean over regions of the fraction of the region's
/// pixels at or above the threshold, integrated with the trapezoid rule up to the FPR limit; the curve is
/// linearly interpolated at the limit; the area is divided by the limit.</item>
/// </list>
/// </summary>
internal struct ThresholdSweep
{
    private readonly long _positives;
    private readonly long _negatives;
    private readonly long _regions;
    private readonly double _fprLimit;
    private long _tp;
    private long _fp;
    private Int128 _twiceRocArea;
    private CompensatedSum _ap;
    private double _bestF1;
    private double _bestThreshold;
    private CompensatedSum _regionMass;
    private CompensatedSum _proArea;
    private double _lastFpr;
    private double _lastPro;
    private bool _proDone;

    /// <param name="positives">Anomalous samples in all.</param>
    /// <param name="negatives">Normal samples in all.</param>
    /// <param name="regions">Ground-truth regions for AU-PRO, or 0 when AU-PRO is not computed.</param>
    /// <param name="fprLimit">Upper FPR limit of the AU-PRO integral, in (0, 1].</param>
    public ThresholdSweep(long positives, long negatives, long regions, double fprLimit)
    {
        _positives = positives;
        _negatives = negatives;
        _regions = regions;
        _fprLimit = fprLimit;
        _bestF1 = double.NegativeInfinity;
        _bestThreshold = double.NaN;
        _proDone = regions == 0 || negatives == 0;
    }

    /// <summary>Adds the samples scored exactly <paramref name="threshold"/>, lower than every threshold added before.</summary>
    /// <param name="threshold">The score.</param>
    /// <param name="positives">Anomalous samples with that score.</param>
    /// <param name="negatives">Normal samples with that score.</param>
    /// <param name="regionMass">Σ 1 / (size of the pixel's region) over those anomalous pixels (AU-PRO only).</param>
    public void Add(double threshold, long positives, long negatives, double regionMass)
    {
        long tp = _tp + positives, fp = _fp + negatives;
        if (negatives != 0)
        {
            _twiceRocArea += (Int128)negatives * (_tp + tp);
        }

        if (positives != 0)
        {
            _ap.Add((double)positives / _positives * ((double)tp / (tp + fp)));
        }

        double f1 = 2.0 * tp / (_positives + tp + fp);
        if (f1 >= _bestF1)
        {
            _bestF1 = f1;
            _bestThreshold = threshold;
        }

        _tp = tp;
        _fp = fp;
        if (!_proDone)
        {
            _regionMass.Add(regionMass);
            AddProPoint((double)fp / _negatives, _regionMass.Value / _regions);
        }
    }

    public readonly SweepResult Result()
    {
        bool hasPositives = _positives > 0, hasBoth = hasPositives && _negatives > 0;
        return new SweepResult(
            hasBoth ? (double)_twiceRocArea / (2.0 * _positives * _negatives) : double.NaN,
            hasPositives ? _ap.Value : double.NaN,
            hasPositives ? new F1Max(_bestF1, _bestThreshold) : F1Max.Undefined,
            _regions > 0 && _negatives > 0 ? _proArea.Value / _fprLimit : double.NaN);
    }

    private void AddProPoint(double fpr, double pro)
    {
        if (fpr <= _fprLimit)
        {
            _proArea.Add((fpr - _lastFpr) * (pro + _lastPro) / 2);
            _lastFpr = fpr;
            _lastPro = pro;
            return;
        }

        // The first point beyond the limit: close the area with the curve's value at the limit.
        var segment = LinearSpline.InterpolateSorted([_lastFpr, fpr], [_lastPro, pro]);
        double atLimit = segment.Interpolate(_fprLimit);
        _proArea.Add((_fprLimit - _lastFpr) * (atLimit + _lastPro) / 2);
        _proDone = true;
    }
}
