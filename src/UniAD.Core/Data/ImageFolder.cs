using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace UniAD.Core.Data;

/// <summary>Options of <see cref="ImageFolder.Open"/>.</summary>
public sealed record ImageFolderOptions
{
    /// <summary>The class name of every image, or null for the root folder's name.</summary>
    public string? ClassName { get; init; }

    /// <summary>What to do with a missing <c>good</c> folder, empty folders and masks without images.</summary>
    public BadInputPolicy OnBadInput { get; init; } = BadInputPolicy.Throw;

    /// <summary>
    /// A defective image without a mask: kept with its image-level label only by default
    /// (<see cref="MissingMaskPolicy.ImageLevelOnly"/>; masks are optional in this layout), or bad input
    /// (<see cref="MissingMaskPolicy.Throw"/>).
    /// </summary>
    public MissingMaskPolicy MissingMasks { get; init; } = MissingMaskPolicy.ImageLevelOnly;
}

/// <summary>
/// A generic folder for users without the MVTec-AD layout: <c>good/</c> holds normal images (label 0),
/// every folder whose name starts with <c>defect</c> holds anomalous ones (label 1, defect type = the
/// folder's name). Masks are optional, at <c>ground_truth/&lt;defect folder&gt;/&lt;name&gt;_mask.png</c>;
/// an anomalous image without one has an image-level label only (<see cref="ImageSample.HasPixelLabels"/>
/// is false, no mask is invented): it counts for image metrics, never for pixel metrics.
/// </summary>
public static class ImageFolder
{
    /// <summary>The folder holding normal images.</summary>
    public const string GoodFolder = "good";

    /// <summary>Folders whose names start with this (case-insensitive) hold anomalous images.</summary>
    public const string DefectPrefix = "defect";

    /// <summary>Lists the images: the normal ones first, then each defect folder's, files by name.</summary>
    /// <exception cref="DirectoryNotFoundException">The root does not exist; or (policy Throw) it has no <c>good</c> folder.</exception>
    /// <exception cref="InvalidDataException">No image at all; or (policy Throw) an empty folder or a mask without an image.</exception>
    /// <exception cref="FileNotFoundException">(<see cref="ImageFolderOptions.MissingMasks"/> = Throw, policy Throw) a defective image has no mask.</exception>
    public static ImageSource Open(string root, ImageFolderOptions? options = null, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        options ??= new ImageFolderOptions();
        logger ??= NullLogger.Instance;
        root = Path.GetFullPath(root);
        if (!Directory.Exists(root))
        {
            throw new DirectoryNotFoundException($"The image folder '{root}' does not exist.");
        }

        var bad = new BadInput(options.OnBadInput, logger);
        var className = options.ClassName ?? Path.GetFileName(root.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar));
        var samples = new List<ImageSample>();
        var good = Path.Combine(root, GoodFolder);
        if (FolderLayout.RequireFolder(good, "normal-image ('good')", bad))
        {
            FolderLayout.AddFolder(samples, good, null, masksRequired: false, className, ImageSample.Good, anomalous: false, bad);
        }

        var groundTruth = Path.Combine(root, "ground_truth");
        var defects = ImageSource.Folders(root).Where(d => Path.GetFileName(d).StartsWith(DefectPrefix, StringComparison.OrdinalIgnoreCase)).ToList();
        foreach (var folder in defects)
        {
            var defect = Path.GetFileName(folder);
            FolderLayout.AddFolder(samples, folder, Path.Combine(groundTruth, defect), masksRequired: options.MissingMasks == MissingMaskPolicy.Throw, className, defect, anomalous: true, bad);
        }

        FolderLayout.ReportOrphanMaskFolders(groundTruth, defects.Select(Path.GetFileName)!, bad);
        FolderLayout.RequireSamples(samples, root, bad);
        var source = new ImageSource(root, samples, bad.Skipped);
        logger.LogInformation("Image folder: {Source}", source);
        return source;
    }

    /// <summary>
    /// Splits a source for training and testing: a seeded random <paramref name="trainFraction"/> of the
    /// normal images (rounded) trains; the other normal images and every anomalous image test.
    /// </summary>
    /// <exception cref="ArgumentException">The fraction is not inside (0, 1), or it leaves no training image.</exception>
    public static (ImageSource Train, ImageSource Test) SplitNormal(ImageSource source, double trainFraction, long seed)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (!(trainFraction > 0 && trainFraction < 1))
        {
            throw new ArgumentException($"trainFraction = {trainFraction} must lie strictly between 0 and 1.", nameof(trainFraction));
        }

        var normal = source.Samples.Where(s => !s.IsAnomalous).ToList();
        int count = (int)Math.Round(trainFraction * normal.Count, MidpointRounding.AwayFromZero);
        if (count == 0)
        {
            throw new ArgumentException($"trainFraction = {trainFraction} of {normal.Count} normal images leaves none for training.", nameof(trainFraction));
        }

        var chosen = SeededRandom.For(seed, 0x5011).Sample(normal.Count, count).Select(i => normal[i]).ToHashSet();
        var train = new ImageSource(source.Name, normal.Where(chosen.Contains), source.Skipped);
        var test = new ImageSource(source.Name, source.Samples.Where(s => !chosen.Contains(s)), source.Skipped);
        return (train, test);
    }
}
