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
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The root does not exist; or (policy Throw) a class, <c>train/good</c> or <c>test</c> folder is missing.</exception>
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
                AddTest(samples, classDir, className, bad);
            }

            logger.LogDebug("MVTec-AD {Split} {Class}: {Count} images", split, className, samples.Count - before);
        }

        FolderLayout.RequireSamples(samples, root, bad);
        var source = new ImageSource(root, samples, bad.Skipped);
        logger.LogInformation("MVTec-AD {Split}: {Source}", split, source);
        return source;
    }

    private static void AddTest(List<ImageSample> samples, string classDir, string className, BadInput bad)
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
            FolderLayout.AddFolder(samples, folder, anomalous ? Path.Combine(groundTruth, defect) : null, masksRequired: true, className, defect, anomalous, bad);
        }

        FolderLayout.ReportOrphanMaskFolders(groundTruth, defects.Select(Path.GetFileName)!, bad);
    }
}
