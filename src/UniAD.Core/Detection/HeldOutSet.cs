using UniAD.Core.Data;

namespace UniAD.Core.Detection;

/// <summary>The held-out normal images, their cached features and the losses measured on them.</summary>
internal sealed class HeldOutSet
{
    private readonly FeatureCache cache;
    private readonly double minDelta;
    private readonly List<HeldOutLoss> losses = new();

    private HeldOutSet(IImageSource source, FeatureCache cache, double minDelta)
    {
        Source = source;
        this.cache = cache;
        this.minDelta = minDelta;
    }

    /// <summary>The held-out normal images, or with tiling their tiles (as training sees them).</summary>
    public IImageSource Source { get; }

    public IReadOnlyList<HeldOutLoss> Losses => losses;

    public double? BestLoss { get; private set; }

    public int? BestEpoch { get; private set; }

    public int EvaluationsSinceBest { get; private set; }

    public static HeldOutSet Prepare(AnomalyDetector detector, IImageSource source, TrainingOptions options, CancellationToken cancellationToken)
    {
        var normal = new ImageSource(source.Name, source.Samples.Where(s => s.Label == 0));
        if (normal.Samples.Count == 0)
        {
            throw new InvalidDataException($"The held-out source '{source.Name}' has no normal (label 0) image.");
        }

        var samples = TiledScoring.TrainingImages(detector, normal, options.OnBadInput);
        var cache = DetectorFeatureCache.Create(detector, options);
        cache.Populate(samples, cancellationToken: cancellationToken);
        return new HeldOutSet(samples, cache, options.EarlyStopping?.MinDelta ?? 0);
    }

    /// <summary>Mean reconstruction loss over the images, in evaluation mode and without gradients.</summary>
    public double Measure(AnomalyDetector detector, int batchSize, int epoch, TimeSpan elapsed, CancellationToken cancellationToken)
    {
        double loss = ValidationLosses.Mean(detector, cache.Batches(Source, batchSize, cancellationToken: cancellationToken), b => b.Features.to(detector.Device));
        losses.Add(new HeldOutLoss(epoch, loss, elapsed));
        if (BestLoss is null || loss < BestLoss.Value - minDelta)
        {
            BestLoss = loss;
            BestEpoch = epoch;
            EvaluationsSinceBest = 0;
        }
        else
        {
            EvaluationsSinceBest++;
        }

        return loss;
    }
}
