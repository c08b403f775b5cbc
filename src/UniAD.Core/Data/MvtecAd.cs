using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace UniAD.Core.Data;

/// <summary>Which classes of an MVTec-AD-style folder to read, and what to do with bad input.</summary>
public sealed record MvtecOptions
{
    /// <summary>Class folders to read, or null for every folder under the root that has a <c>train</c> or <c>test</c> folder.</summary>
    public IReadOnlyList<string>? Classes { get; init; }

    /// <summary>What to do with missing folders, empty classes, masks without images and images without masks.</summary>
    public BadInputPolicy OnBadInput { get; init; } = BadInputPolicy.Throw;

    /// <summary>
    /// A defect type without a <c>ground_truth/&lt;defect&gt;</c> folder, or a defective image without its mask:
    /// bad input by default (<see cref="MissingMaskPolicy.Throw"/>, MVTec-AD always has masks), or
    /// <see cref="MissingMaskPolicy.ImageLevelOnly"/>: the images are kept with image-level labels only.
    /// </summary>
    public MissingMaskPolicy MissingMasks { get; init; } = MissingMaskPolicy.Throw;
}

/// <summary>
/// The MVTec-AD layout, for the real data set (all 15 classes or a subset) and for any folder laid out
/// the same way: <c>&lt;class&gt;/train/good/*</c>, <c>&lt;class&gt;/test/&lt;good|defect&gt;/*</c>,
/// <c>&lt;class&gt;/ground_truth/&lt;defect&gt;/&lt;name&gt;_mask.png</c>.
/// </summary>
public static class MvtecAd
{
    /// <summary>The 15 classes of MVTec-AD, in alphabetical order.</summary>
    public static IReadOnlyList<string> ClassNames { get; } = new[]
    {
        "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
        "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
    };

    /// <summary>
    /// Lists the training images (<c>train/good</c>, label 0) or the test images (<c>test/good</c> label 0;
    /// <c>test/&lt;defect&gt;</c> label 1 with its mask) of the chosen classes, class by class, files by name.
    /// With <see cref="MvtecOptions.MissingMasks"/> = <see cref="MissingMaskPolicy.ImageLevelOnly"/> a defective
    /// image without a mask is kept with its image-level label only (<see cref="ImageSample.HasPixelLabels"/>).
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The root does not exist; or (policy Throw) a class, <c>train/good</c> or <c>test</c> folder is missing;
    /// or (missing masks not allowed, policy Throw) a defect type has no <c>ground_truth/&lt;defect&gt;</c> folder (the message names it).</exception>
    /// <exception cref="FileNotFoundException">(Policy Throw) a defective test image has no mask.</exception>
    /// <exception cref="InvalidDataException">No image at all; or (policy Throw) an empty class folder or a mask without an image.</exception>
    public static ImageSource Open(string root, DatasetSplit split, MvtecOptions? options = null, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        options ??= new MvtecOptions();
        logger ??= NullLogger.Instance;
        if (!Enum.IsDefined(split))
        {
            throw new ArgumentException($"Unknown split {split}.", nameof(split));
        }

        root = Path.GetFullPath(root);
        if (!Directory.Exists(root))
        {
            throw new DirectoryNotFoundException($"The MVTec-AD root folder '{root}' does not exist.");
        }

        var bad = new BadInput(options.OnBadInput, logger);
        if (!Enum.IsDefined(options.MissingMasks))
        {
            throw new ArgumentException($"Unknown missing-mask policy {options.MissingMasks}.", nameof(options));
        }

        var classes = options.Classes ?? ImageSource.Folders(root)
            .Where(d => Directory.Exists(Path.Combine(d, "train")) || Directory.Exists(Path.Combine(d, "test")))
            .Select(Path.GetFileName)
            .ToList()!;
        if (classes.Count == 0)
        {
            throw new InvalidDataException($"'{root}' holds no class folder in the MVTec-AD layout (<class>/train/good, <class>/test/<defect>).");
        }

        var samples = new List<ImageSample>();
        foreach (var className in classes)
        {
            if (string.IsNullOrWhiteSpace(className) || className.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0)
            {
                throw new ArgumentException($"'{className}' is not a valid class folder name.", nameof(options));
            }

            var classDir = Path.Combine(root, className);
            if (!FolderLayout.RequireFolder(classDir, $"class '{className}'", bad))
            {
                continue;
            }

            int before = samples.Count;
            if (split == DatasetSplit.Train)
            {
                var good = Path.Combine(classDir, "train", ImageSample.Good);
                if (FolderLayout.RequireFolder(good, $"training ('{className}')", bad))
                {
                    FolderLayout.AddFolder(samples, good, null, masksRequired: false, className, ImageSample.Good, anomalous: false, bad);
                }
            }
            else
            {
                AddTest(samples, classDir, className, options.MissingMasks, bad, logger);
            }

            logger.LogDebug("MVTec-AD {Split} {Class}: {Count} images", split, className, samples.Count - before);
        }

        FolderLayout.RequireSamples(samples, root, bad);
        var source = new ImageSource(root, samples, bad.Skipped);
        logger.LogInformation("MVTec-AD {Split}: {Source}", split, source);
        return source;
    }

    private static void AddTest(List<ImageSample> samples, string classDir, string className, MissingMaskPolicy missingMasks, BadInput bad, ILogger logger)
    {
        var test = Path.Combine(classDir, "test");
        var groundTruth = Path.Combine(classDir, "ground_truth");
        if (!FolderLayout.RequireFolder(test, $"test ('{className}')", bad))
        {
            return;
        }

        var defects = ImageSource.Folders(test);
        if (defects.Count == 0)
        {
            bad.Report(test, "the test folder holds no good or defect folder", new InvalidDataException($"The test folder '{test}' holds no good or defect folder."));
        }

        foreach (var folder in defects)
        {
            var defect = Path.GetFileName(folder);
            bool anomalous = defect != ImageSample.Good;
            var maskFolder = anomalous ? Path.Combine(groundTruth, defect) : null;
            if (maskFolder is not null && !Directory.Exists(maskFolder))
            {
                if (missingMasks == MissingMaskPolicy.Throw)
                {
                    bad.Report(folder, $"the defect type has no mask folder '{maskFolder}'", new DirectoryNotFoundException(
                        $"The defect type '{defect}' of class '{className}' ('{folder}') has no mask folder '{maskFolder}'. Set MvtecOptions.MissingMasks = MissingMaskPolicy.ImageLevelOnly to use its images for image-level metrics only."));
                    continue;
                }

                logger.LogInformation("MVTec-AD {Class}/{Defect}: no mask folder '{Folder}'; its images have image-level labels only.", className, defect, maskFolder);
            }

            FolderLayout.AddFolder(samples, folder, maskFolder, masksRequired: missingMasks == MissingMaskPolicy.Throw, className, defect, anomalous, bad);
        }

        FolderLayout.ReportOrphanMaskFolders(groundTruth, defects.Select(Path.GetFileName)!, bad);
    }
}
