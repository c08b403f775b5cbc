using UniAD.Core.Metrics;
using UniAD.Core.Reconstruction;

namespace UniAD.Core.Detection;

/// <summary>
/// Everything that defines a detector's network and scoring, as stored in its checkpoints. Built and
/// validated by <see cref="AnomalyDetectorBuilder"/>.
/// </summary>
public sealed record DetectorOptions
{
    /// <summary>
    /// The model family (<see cref="ModelFamilies"/>): <c>uniad</c> (the default, and every checkpoint written before
    /// families existed) or <c>memory-bank</c> (<see cref="MemoryBank"/> then holds its settings).
    /// </summary>
    public string Family { get; init; } = ModelFamilies.UniAD;

    /// <summary>The memory-bank family's settings; null for UniAD.</summary>
    public UniAD.Core.MemoryBank.MemoryBankOptions? MemoryBank { get; init; }

    /// <summary>Backbone model name (<c>efficientnet-b0</c>..<c>b7</c>, <c>resnet18</c>, ...; the paper: <c>efficientnet-b4</c>).</summary>
    public string Backbone { get; init; } = "efficientnet-b4";

    /// <summary>Backbone output layers (1..5 for EfficientNet, 1..4 for ResNet; the paper: 1..4).</summary>
    public IReadOnlyList<int> BackboneLayers { get; init; } = new[] { 1, 2, 3, 4 };

    /// <summary>The stride every backbone output is resized to by the neck (the paper: 16).</summary>
    public int NeckStride { get; init; } = 16;

    /// <summary>Largest side of <see cref="InputSize"/> a detector accepts (larger parts are tiled).</summary>
    public const int MaxInputSide = 8192;

    /// <summary>Network input size (the paper: 224 x 224; each side at most <see cref="MaxInputSide"/>).</summary>
    public GridSize InputSize { get; init; } = new(224, 224);

    /// <summary>Reconstruction hyper-parameters (UniAD). Channels, stride and feature size are derived from the backbone, neck and input size.</summary>
    public ReconstructionOptions Reconstruction { get; init; } = new();

    /// <summary>How an image score is computed from its anomaly map (the reference on MVTec-AD: 16 x 16 average pooling, then the max).</summary>
    public ImageScoreKind ScoreKind { get; init; } = ImageScoreKind.PooledMax;

    /// <summary>Window of the pooled-max image score: its side, or its width when <see cref="ScorePoolHeight"/> is set.</summary>
    public int ScorePoolSize { get; init; } = 16;

    /// <summary>
    /// Rows of a rectangular pooled-max window (<see cref="ScorePoolSize"/> is then its width); null (the default, and
    /// every checkpoint written before rectangular windows existed) for a square window. A wide, flat window suits long,
    /// thin defects that run across the part (KolektorSDD's cracks).
    /// </summary>
    public int? ScorePoolHeight { get; init; }

    /// <summary>The pooled-max window's rows: <see cref="ScorePoolHeight"/>, or <see cref="ScorePoolSize"/> for a square one.</summary>
    internal int ScoreWindowHeight => ScorePoolHeight ?? ScorePoolSize;

    /// <summary>These options with another image score over a <paramref name="poolHeight"/> x <paramref name="poolWidth"/> window (a square one keeps no height).</summary>
    internal DetectorOptions WithScoreWindow(ImageScoreKind kind, int poolHeight, int poolWidth) =>
        this with { ScoreKind = kind, ScorePoolSize = poolWidth, ScorePoolHeight = poolHeight == poolWidth ? null : poolHeight };

    /// <summary>ImageNet normalisation mean per channel.</summary>
    public IReadOnlyList<double> PixelMean { get; init; } = Data.PreprocessOptions.ImageNetMean;

    /// <summary>ImageNet normalisation standard deviation per channel.</summary>
    public IReadOnlyList<double> PixelStd { get; init; } = Data.PreprocessOptions.ImageNetStd;

    /// <summary>
    /// Tiling of high-resolution images into tiles of <see cref="InputSize"/> for training, scoring, calibration
    /// and evaluation; null (the default, and every checkpoint written before tiling existed) resizes each
    /// whole image to <see cref="InputSize"/> instead.
    /// </summary>
    public Tiling.TilingOptions? Tiling { get; init; }
}

/// <summary>Options of <see cref="AnomalyDetector.Calibrate"/>.</summary>
public sealed record CalibrationOptions
{
    /// <summary>Threshold rule.</summary>
    public CalibrationMethod Method { get; init; } = CalibrationMethod.F1Max;

    /// <summary>For <see cref="CalibrationMethod.FalseAlarmRate"/>: the fraction of normal images (and normal pixels) allowed above the threshold.</summary>
    public double FalseAlarmRate { get; init; } = 0.01;

    /// <summary>Batch size of the scoring passes.</summary>
    public int BatchSize { get; init; } = 8;

    /// <summary>
    /// For <see cref="CalibrationMethod.FalseAlarmRate"/>: fewest normal images accepted (default 10; a quantile of a
    /// handful of scores is no threshold). Below 1 / <see cref="FalseAlarmRate"/> normal images a warning is logged:
    /// the threshold is then interpolated between the highest scores.
    /// </summary>
    public int MinimumNormalImages { get; init; } = DefaultMinimumNormalImages;

    /// <summary>The default of <see cref="MinimumNormalImages"/>.</summary>
    public const int DefaultMinimumNormalImages = 10;
}
