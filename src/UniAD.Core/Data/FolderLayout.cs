namespace UniAD.Core.Data;

/// <summary>Folder scanning shared by the MVTec-AD layout and the generic folder source.</summary>
internal static class FolderLayout
{
    public const string MaskSuffix = "_mask";

    /// <summary>
    /// Adds the images of one folder (all normal, or all anomalous of one defect type) and pairs each
    /// anomalous image with <c>&lt;maskFolder&gt;/&lt;name&gt;_mask.&lt;ext&gt;</c>. Reports a missing mask (when
    /// required), a mask without an image, and a folder without images.
    /// </summary>
    public static void AddFolder(List<ImageSample> samples, string imageFolder, string? maskFolder, bool masksRequired, string className, string defectType, bool anomalous, BadInput bad)
    {
        var images = ImageSource.ImageFiles(imageFolder);
        var masks = maskFolder is not null && Directory.Exists(maskFolder) ? MasksByStem(maskFolder) : new Dictionary<string, string>(StringComparer.Ordinal);
        if (images.Count == 0)
        {
            bad.Report(imageFolder, "the folder holds no images (.png, .jpg, .jpeg, .bmp)", new InvalidDataException($"'{imageFolder}' holds no images (.png, .jpg, .jpeg, .bmp)."));
        }

        var stems = new HashSet<string>(StringComparer.Ordinal);
        foreach (var image in images)
        {
            var stem = Path.GetFileNameWithoutExtension(image);
            stems.Add(stem);
            string? mask = null;
            if (anomalous && !masks.TryGetValue(stem, out mask) && masksRequired)
            {
                var expected = Path.Combine(maskFolder ?? imageFolder, stem + MaskSuffix + ".png");
                bad.Report(image, $"the anomalous image has no mask (expected '{expected}')", new FileNotFoundException($"'{image}' has no mask: expected '{expected}'.", expected));
                continue;
            }

            samples.Add(new ImageSample(image, mask, anomalous ? ImageSample.Anomalous : ImageSample.Normal, className, defectType));
        }

        foreach (var (stem, mask) in masks)
        {
            if (!stems.Contains(stem))
            {
                bad.Report(mask, $"a mask without an image (no '{stem}.*' in '{imageFolder}')", new InvalidDataException($"'{mask}' is a mask without an image: '{imageFolder}' holds no '{stem}.*'."));
            }
        }
    }

    /// <summary>Mask folders whose defect folder does not exist: every mask in them is a mask without an image.</summary>
    public static void ReportOrphanMaskFolders(string groundTruth, IEnumerable<string> defectFolderNames, BadInput bad)
    {
        if (!Directory.Exists(groundTruth))
        {
            return;
        }

        var known = new HashSet<string>(defectFolderNames, StringComparer.Ordinal);
        foreach (var folder in ImageSource.Folders(groundTruth).Where(f => !known.Contains(Path.GetFileName(f))))
        {
            foreach (var mask in MasksByStem(folder).Values)
            {
                bad.Report(mask, $"a mask without an image (there is no image folder '{Path.GetFileName(folder)}')", new InvalidDataException($"'{mask}' is a mask without an image: there is no image folder for '{Path.GetFileName(folder)}'."));
            }
        }
    }

    /// <summary>Throws when a source ended up with no image at all: nothing could be trained or tested.</summary>
    public static void RequireSamples(List<ImageSample> samples, string root, BadInput bad)
    {
        if (samples.Count == 0)
        {
            var skipped = bad.Skipped;
            throw new InvalidDataException($"'{root}' yielded no images" + (skipped.Count > 0 ? $"; {skipped.Count} files or folders were skipped: {string.Join("; ", skipped.Take(5))}{(skipped.Count > 5 ? "; ..." : string.Empty)}" : "."));
        }
    }

    /// <summary>Throws (or reports) a missing folder; returns whether it exists.</summary>
    public static bool RequireFolder(string folder, string what, BadInput bad)
    {
        if (Directory.Exists(folder))
        {
            return true;
        }

        bad.Report(folder, $"the {what} folder does not exist", new DirectoryNotFoundException($"The {what} folder '{folder}' does not exist."));
        return false;
    }

    private static Dictionary<string, string> MasksByStem(string folder)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var file in ImageSource.ImageFiles(folder))
        {
            var stem = Path.GetFileNameWithoutExtension(file);
            if (stem.EndsWith(MaskSuffix, StringComparison.Ordinal))
            {
                result.TryAdd(stem[..^MaskSuffix.Length], file);
            }
        }

        return result;
    }
}
