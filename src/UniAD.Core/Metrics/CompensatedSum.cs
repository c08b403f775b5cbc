namespace UniAD.Core.Metrics;

/// <summary>Neumaier's compensated summation: long sums of small terms keep about full double precision.</summary>
internal struct CompensatedSum
{
    private double _sum;
    private double _compensation;

    public readonly double Value => _sum + _compensation;

    public void Add(double term)
    {
        double t = _sum + term;
        _compensation += Math.Abs(_sum) >= Math.Abs(term) ? (_sum - t) + term : (term - t) + _sum;
        _sum = t;
    }
}
