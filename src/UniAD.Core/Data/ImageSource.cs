using System.Globalization;
using Microsoft.Extensions.Logging;

namespace UniAD.Core.Data;

/// <summary>A list of images to load: what every data source (MVTec-AD, meta files, CIFAR-10, folders) provides.</summary>
public interface IImageSource
{
    /// <summary>A short description for logs and messages (usually the root folder).</summary>
    string Name { get; }

    /// <summary>The images, in a fixed order.</summary>
    IReadOnlyList<ImageSample> Samples { get; }

    /// <summary>Files and folders left out as bad input while the source was read (policy <see cref="BadInputPolicy.Skip"/>).</summary>
    IReadOnlyList<SkippedFile> Skipped => Array.Empty<SkippedFile>();

    /// <summary>Decodes a sample's image; the default reads <see cref="ImageSample.ImagePath"/> with <see cref="ImageDecoder"/>.</summary>
    /// <exception cref="ImageFileException">The image cannot be decoded.</exception>
    /// <exception cref="FileNotFoundException">The file is gone.</exception>
    RgbImage ReadImage(ImageSample sample, long maxPixels) => ImageDecoder.Decode(sample.ImagePath, maxPixels);

    /// <summary>
    /// A text that changes whenever the sample's pixels may have changed (used to key cached features);
    /// the default combines the file's full path, length and time of last write.
    /// </summary>
    string ContentKey(ImageSample sample) => ImageSource.FileContentKey(sample.ImagePath);
}

/// <summary>A fixed list of image files; the sources in this namespace return it.</summary>
public sealed class ImageSource : IImageSource
{
    /// <summary>The file extensions read as images (case-insensitive).</summary>
    public static IReadOnlyList<string> ImageExtensions { get; } = new[] { ".png", ".jpg", ".jpeg", ".bmp" };

    /// <summary>Creates a source from samples (kept in the given order) and an optional skip report.</summary>
    /// <exception cref="ArgumentException">A sample has an empty path or class name, or a label other than 0 or 1.</exception>
    public ImageSource(string name, IEnumerable<ImageSample> samples, IEnumerable<SkippedFile>? skipped = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(samples);
        Name = name;
        Samples = samples.ToList();
        foreach (var s in Samples)
        {
            if (string.IsNullOrEmpty(s.ImagePath) || string.IsNullOrEmpty(s.ClassName) || s.Label is not (ImageSample.Normal or ImageSample.Anomalous))
            {
                throw new ArgumentException($"Invalid sample in '{name}': {s} (needs an image path, a class name and label 0 or 1).", nameof(samples));
            }
        }

        Skipped = skipped?.ToList() ?? new List<SkippedFile>();
        ClassNames = Samples.Select(s => s.ClassName).Distinct(StringComparer.Ordinal).ToList();
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public IReadOnlyList<ImageSample> Samples { get; }

    /// <inheritdoc />
    public IReadOnlyList<SkippedFile> Skipped { get; }

    /// <summary>The distinct class names, in order of first appearance.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>The samples that satisfy <paramref name="predicate"/>, with the same skip report.</summary>
    public ImageSource Where(Func<ImageSample, bool> predicate)
    {
        ArgumentNullException.ThrowIfNull(predicate);
        return new ImageSource(Name, Samples.Where(predicate), Skipped);
    }

    /// <summary>The default content key of a file: full path, length and last write time (or "missing").</summary>
    public static string FileContentKey(string path)
    {
        var info = new FileInfo(path);
        return info.Exists
            ? string.Create(CultureInfo.InvariantCulture, $"{info.FullName}|{info.Length}|{info.LastWriteTimeUtc.Ticks}")
            : $"{Path.GetFullPath(path)}|missing";
    }

    /// <inheritdoc />
    public override string ToString()
    {
        int anomalous = Samples.Count(s => s.IsAnomalous);
        return $"{Name}: {Samples.Count} images ({Samples.Count - anomalous} normal, {anomalous} anomalous) in {ClassNames.Count} classes" +
               (Skipped.Count > 0 ? $", {Skipped.Count} skipped" : string.Empty);
    }

    /// <summary>The image files directly inside <paramref name="folder"/>, by ordinal name; hidden files are ignored.</summary>
    internal static List<string> ImageFiles(string folder) =>
        Directory.EnumerateFiles(folder)
            .Where(f => !Path.GetFileName(f).StartsWith('.') && ImageExtensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase))
            .OrderBy(f => f, StringComparer.Ordinal)
            .ToList();

    /// <summary>The subfolders of <paramref name="folder"/>, by ordinal name; hidden folders are ignored.</summary>
    internal static List<string> Folders(string folder) =>
        Directory.EnumerateDirectories(folder)
            .Where(d => !Path.GetFileName(d).StartsWith('.'))
            .OrderBy(d => d, StringComparer.Ordinal)
            .ToList();
}

/// <summary>Applies a <see cref="BadInputPolicy"/>: throws, or records and logs. Thread-safe.</summary>
internal sealed class BadInput
{
    private readonly List<SkippedFile> skipped = new();
    private readonly ILogger logger;

    public BadInput(BadInputPolicy policy, ILogger logger)
    {
        if (!Enum.IsDefined(policy))
        {
            throw new ArgumentException($"Unknown bad-input policy {policy}.", nameof(policy));
        }

        Policy = policy;
        this.logger = logger;
    }

    public BadInputPolicy Policy { get; }

    public IReadOnlyList<SkippedFile> Skipped
    {
        get
        {
            lock (skipped)
            {
                return skipped.ToList();
            }
        }
    }

    /// <summary>Throws <paramref name="error"/> under <see cref="BadInputPolicy.Throw"/>; otherwise records the path and reason.</summary>
    public void Report(string path, string reason, Exception error)
    {
        if (Policy == BadInputPolicy.Throw)
        {
            throw error;
        }

        Record(new SkippedFile(path, reason));
    }

    /// <summary>Records (and logs) a file skipped elsewhere.</summary>
    public void Record(SkippedFile file)
    {
        logger.LogWarning("Skipping {Path}: {Reason}", file.Path, file.Reason);
        lock (skipped)
        {
            skipped.Add(file);
        }
    }

    /// <summary>Whether an exception thrown while reading a sample is bad input (as opposed to a bug or a cancellation).</summary>
    public static bool IsBadInput(Exception e) => e is ImageFileException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException or IOException or UnauthorizedAccessException;

    /// <summary>The reason to record for a bad-input exception.</summary>
    public static string Reason(Exception e) => e is ImageFileException f ? f.Reason : e.Message;
}
