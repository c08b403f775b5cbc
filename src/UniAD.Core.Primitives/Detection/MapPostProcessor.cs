using UniAD.Core.Metrics;

namespace UniAD.Core.Detection;

/// <summary>
/// The one step from a model's raw (checked finite) anomaly map to a result, shared by both runtimes (UniAD.Core's <c>AnomalyDetector</c>
/// and UniAD.Onnx's scorer) and by every model family, without tensors: the per-class reference
/// normalisation (the map divided by its class's reference, upsampled to the map and plus epsilon), the image score
/// (<see cref="MapScore"/>), the bilinear resize to the image's own size (<see cref="MapResize"/>) and the verdict,
/// normalised score and mask of the calibration (<see cref="ScoringSteps.Result"/>).
/// </summary>
internal sealed class MapPostProcessor
{
    private readonly Func<string, int, int, float[]>? reference;

    /// <summary>A post-processor with an image score and, optionally, reference maps.</summary>
    /// <param name="kind">The image score.</param>
    /// <param name="poolHeight">Rows of the pooled-max window.</param>
    /// <param name="poolWidth">Columns of the pooled-max window.</param>
    /// <param name="referenceClasses">The classes with a reference map, or null without reference maps.</param>
    /// <param name="reference">For a class and a map size: the reference (upsampled to that size, plus epsilon) to divide by; needed with <paramref name="referenceClasses"/>.</param>
    public MapPostProcessor(ImageScoreKind kind, int poolHeight, int poolWidth, IReadOnlyCollection<string>? referenceClasses = null, Func<string, int, int, float[]>? reference = null)
    {
        if ((referenceClasses is null) != (reference is null))
        {
            throw new ArgumentException("Reference classes and the reference function go together.", nameof(reference));
        }

        Kind = kind;
        PoolHeight = poolHeight;
        PoolWidth = poolWidth;
        ReferenceClasses = referenceClasses;
        this.reference = reference;
    }

    /// <summary>The image score.</summary>
    public ImageScoreKind Kind { get; }

    /// <summary>Rows of the pooled-max window.</summary>
    public int PoolHeight { get; }

    /// <summary>Columns of the pooled-max window.</summary>
    public int PoolWidth { get; }

    /// <summary>The classes with a reference map, or null when maps are not normalised.</summary>
    public IReadOnlyCollection<string>? ReferenceClasses { get; }

    /// <summary>Checks, before a model runs, that every image has a class with a reference (when there are references).</summary>
    /// <exception cref="ArgumentException">A class is missing or unknown.</exception>
    public void RequireClasses(IReadOnlyList<string?> classes) => ScoringSteps.RequireClasses(ReferenceClasses, classes);

    /// <summary>Divides a <paramref name="height"/> x <paramref name="width"/> map in place by its class's reference (nothing without references).</summary>
    public void Normalize(Span<float> map, int height, int width, string? className)
    {
        if (reference is null)
        {
            return;
        }

        ScoringSteps.RequireClasses(ReferenceClasses, new[] { className });
        var r = reference(className!, height, width);
        for (int i = 0; i < map.Length; i++)
        {
            map[i] /= r[i];
        }
    }

    /// <summary>The image score of a (normalised) <paramref name="height"/> x <paramref name="width"/> map.</summary>
    public double ImageScore(ReadOnlySpan<float> map, int height, int width) => MapScore.Of(map, height, width, Kind, PoolHeight, PoolWidth);

    /// <summary>
    /// The result of one raw map (<paramref name="height"/> x <paramref name="width"/>, row-major; normalised in place):
    /// normalised by the class's reference, scored, resized to <paramref name="target"/> and judged by
    /// <paramref name="calibration"/>. The caller has checked the map is finite (<see cref="ScoringSteps.RequireFinite"/>,
    /// once per batch, so that the message names the image's place in it).
    /// </summary>
    public AnomalyResult Finish(float[] map, int height, int width, string? name, string? className, GridSize target, Calibration? calibration)
    {
        Normalize(map, height, width, className);
        double score = ImageScore(map, height, width);
        var values = MapResize.Bilinear(map, height, width, target.Height, target.Width);
        return ScoringSteps.Result(name, score, new AnomalyMapData(target.Width, target.Height, values), calibration);
    }
}
