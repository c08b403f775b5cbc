namespace UniAD.Core.Data;

/// <summary>One image of a data set, with what the reference records about it.</summary>
/// <param name="ImagePath">Full path of the image file (for records inside a binary batch file: <c>&lt;file&gt;#&lt;record index&gt;</c>).</param>
/// <param name="MaskPath">Full path of the ground-truth mask, or null: a normal image's mask is all zeros; an anomalous image without a mask has an image-level label only (<see cref="HasPixelLabels"/> is false): no mask is invented for it.</param>
/// <param name="Label">0 = normal, 1 = anomalous.</param>
/// <param name="ClassName">The object or texture class (reference: <c>clsname</c>); metrics are grouped by it.</param>
/// <param name="DefectType">"good" for normal images, else the defect folder's name (MVTec-AD) or the image's own class (CIFAR-10).</param>
public sealed record ImageSample(string ImagePath, string? MaskPath, int Label, string ClassName, string DefectType)
{
    /// <summary>The label of normal images.</summary>
    public const int Normal = 0;

    /// <summary>The label of anomalous images.</summary>
    public const int Anomalous = 1;

    /// <summary>The defect type of normal images in the MVTec-AD layout.</summary>
    public const string Good = "good";

    /// <summary>True when <see cref="Label"/> is <see cref="Anomalous"/>.</summary>
    public bool IsAnomalous => Label == Anomalous;

    /// <summary>
    /// Whether the sample has pixel-level ground truth: a normal image (every pixel normal) or an anomalous
    /// image with a mask file. An anomalous image without a mask has an image-level label only: it counts for
    /// image metrics and never for pixel metrics or pixel thresholds.
    /// </summary>
    public bool HasPixelLabels => !IsAnomalous || MaskPath is not null;
}

/// <summary>What a data source does with an anomalous image that has no mask.</summary>
public enum MissingMaskPolicy
{
    /// <summary>It is bad input: an exception naming the image or mask folder (or, with <see cref="BadInputPolicy.Skip"/>, the image is left out).</summary>
    Throw,

    /// <summary>Keep it with its image-level label only (<see cref="ImageSample.HasPixelLabels"/> false): image metrics count it, pixel metrics and pixel thresholds never do.</summary>
    ImageLevelOnly,
}

/// <summary>A file or folder left out because it was bad input (policy <see cref="BadInputPolicy.Skip"/>).</summary>
/// <param name="Path">The file or folder.</param>
/// <param name="Reason">What was wrong with it.</param>
public sealed record SkippedFile(string Path, string Reason)
{
    /// <inheritdoc />
    public override string ToString() => $"{Path}: {Reason}";
}

/// <summary>What to do with bad input (missing or empty folders, corrupt images, masks without images, ...).</summary>
public enum BadInputPolicy
{
    /// <summary>Stop with an exception that names the file (the default).</summary>
    Throw,

    /// <summary>Leave the file out, log a warning and record it in a <see cref="SkippedFile"/> report.</summary>
    Skip,
}

/// <summary>Which part of a data set to read.</summary>
public enum DatasetSplit
{
    /// <summary>Training images (normal only).</summary>
    Train,

    /// <summary>Test images (normal and anomalous).</summary>
    Test,
}

/// <summary>Progress of a long data operation.</summary>
/// <param name="Stage">What is being done (for example "decode", "features", "generate").</param>
/// <param name="Completed">Items done so far.</param>
/// <param name="Total">Items in all.</param>
public sealed record DataProgress(string Stage, int Completed, int Total);
