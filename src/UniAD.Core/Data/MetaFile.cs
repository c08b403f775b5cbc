using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using UniAD.Core.Files;

namespace UniAD.Core.Data;

/// <summary>Options of <see cref="MetaFile.Open"/>.</summary>
public sealed record MetaFileOptions
{
    /// <summary>What to do with malformed lines and with images or masks that do not exist.</summary>
    public BadInputPolicy OnBadInput { get; init; } = BadInputPolicy.Throw;

    /// <summary>
    /// A label-1 line without <c>maskname</c>: kept with its image-level label only by default
    /// (<see cref="MissingMaskPolicy.ImageLevelOnly"/>, as in the reference's CIFAR-10 meta files), or bad input
    /// (<see cref="MissingMaskPolicy.Throw"/>).
    /// </summary>
    public MissingMaskPolicy MissingMasks { get; init; } = MissingMaskPolicy.ImageLevelOnly;
}

/// <summary>
/// The reference's meta files (<c>train.json</c>, <c>test.json</c>): one JSON object per line, e.g.
/// <c>{"filename": "bottle/test/broken_large/002.png", "label": 1, "label_name": "defective",
/// "maskname": "bottle/ground_truth/broken_large/002_mask.png", "clsname": "bottle"}</c>, paths relative
/// to an image root. Training lines have label 0 and no <c>maskname</c>.
/// </summary>
public static class MetaFile
{
    /// <summary>
    /// Reads a meta file. <c>filename</c> and <c>label</c> (0 or 1) are required; <c>clsname</c> defaults to the
    /// first folder of <c>filename</c>; the defect type is "good" for label 0, else the image's folder name. A
    /// label-1 line without <c>maskname</c> has an image-level label only (<see cref="ImageSample.HasPixelLabels"/>).
    /// </summary>
    /// <exception cref="InvalidDataException">(<see cref="MetaFileOptions.MissingMasks"/> = Throw, policy Throw) a label-1 line has no mask; the message names the file and line.</exception>
    /// <exception cref="FileNotFoundException">The meta file does not exist; or (policy Throw) a listed image or mask does not.</exception>
    /// <exception cref="DirectoryNotFoundException">The image root does not exist.</exception>
    /// <exception cref="FormatException">(Policy Throw) a line is not a JSON object with the required keys; the message names the file and line.</exception>
    /// <exception cref="InvalidDataException">No usable line at all.</exception>
    public static ImageSource Open(string metaPath, string imageRoot, MetaFileOptions? options = null, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(metaPath);
        ArgumentException.ThrowIfNullOrEmpty(imageRoot);
        options ??= new MetaFileOptions();
        logger ??= NullLogger.Instance;
        metaPath = Path.GetFullPath(metaPath);
        imageRoot = Path.GetFullPath(imageRoot);
        if (!File.Exists(metaPath))
        {
            throw new FileNotFoundException($"The meta file '{metaPath}' does not exist.", metaPath);
        }

        if (!Directory.Exists(imageRoot))
        {
            throw new DirectoryNotFoundException($"The image root '{imageRoot}' of meta file '{metaPath}' does not exist.");
        }

        var bad = new BadInput(options.OnBadInput, logger);
        var samples = new List<ImageSample>();
        int lineNumber = 0;
        foreach (var line in File.ReadLines(metaPath))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            var where = $"{metaPath}:{lineNumber}";
            ImageSample sample;
            try
            {
                sample = ParseLine(line, imageRoot);
            }
            catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
            {
                var reason = $"not a valid meta line ({e.Message})";
                bad.Report(where, reason, new FormatException($"'{metaPath}' line {lineNumber}: {reason}: {Shorten(line)}", e));
                continue;
            }

            if (!File.Exists(sample.ImagePath))
            {
                bad.Report(sample.ImagePath, $"the image listed at line {lineNumber} does not exist", new FileNotFoundException($"'{metaPath}' line {lineNumber}: the image '{sample.ImagePath}' does not exist.", sample.ImagePath));
                continue;
            }

            if (!sample.HasPixelLabels && options.MissingMasks == MissingMaskPolicy.Throw)
            {
                bad.Report(where, "an anomalous image without 'maskname'", new InvalidDataException($"'{metaPath}' line {lineNumber}: the anomalous image '{sample.ImagePath}' has no 'maskname' (MetaFileOptions.MissingMasks = Throw)."));
                continue;
            }

            if (sample.MaskPath is { } mask && !File.Exists(mask))
            {
                bad.Report(mask, $"the mask listed at line {lineNumber} does not exist", new FileNotFoundException($"'{metaPath}' line {lineNumber}: the mask '{mask}' does not exist.", mask));
                continue;
            }

            samples.Add(sample);
        }

        FolderLayout.RequireSamples(samples, metaPath, bad);
        var source = new ImageSource(metaPath, samples, bad.Skipped);
        logger.LogInformation("Meta file: {Source}", source);
        return source;
    }

    /// <summary>
    /// Writes samples as a reference meta file, paths relative to <paramref name="imageRoot"/> with '/'
    /// separators, atomically (a temporary file in the same folder replaces the target).
    /// </summary>
    /// <exception cref="ArgumentException">A sample lies outside the image root.</exception>
    public static void Write(IEnumerable<ImageSample> samples, string imageRoot, string metaPath)
    {
        ArgumentNullException.ThrowIfNull(samples);
        ArgumentException.ThrowIfNullOrEmpty(imageRoot);
        ArgumentException.ThrowIfNullOrEmpty(metaPath);
        imageRoot = Path.GetFullPath(imageRoot);
        var text = new StringBuilder();
        foreach (var s in samples)
        {
            text.Append("{\"filename\": ").Append(Json(Relative(s.ImagePath, imageRoot)))
                .Append(", \"label\": ").Append(s.Label)
                .Append(", \"label_name\": ").Append(Json(s.IsAnomalous ? "defective" : ImageSample.Good));
            if (s.MaskPath is { } mask)
            {
                text.Append(", \"maskname\": ").Append(Json(Relative(mask, imageRoot)));
            }

            text.Append(", \"clsname\": ").Append(Json(s.ClassName)).Append("}\n");
        }

        AtomicFile.WriteAllText(metaPath, text.ToString());
    }

    private static ImageSample ParseLine(string line, string imageRoot)
    {
        using var doc = JsonDocument.Parse(line);
        var o = doc.RootElement;
        if (o.ValueKind != JsonValueKind.Object)
        {
            throw new FormatException($"expected a JSON object, got {o.ValueKind}");
        }

        var filename = RequiredString(o, "filename");
        if (!o.TryGetProperty("label", out var labelValue) || labelValue.ValueKind != JsonValueKind.Number || !labelValue.TryGetInt32(out int label) || label is not (0 or 1))
        {
            throw new FormatException("'label' must be 0 or 1");
        }

        string? maskname = o.TryGetProperty("maskname", out var m) && m.ValueKind != JsonValueKind.Null ? RequiredString(o, "maskname") : null;
        var parts = filename.Split('/', '\\', StringSplitOptions.RemoveEmptyEntries);
        string clsname = o.TryGetProperty("clsname", out var c) && c.ValueKind != JsonValueKind.Null ? RequiredString(o, "clsname") : parts[0];
        string defect = label == 0 ? ImageSample.Good : (parts.Length >= 2 ? parts[^2] : "defective");
        return new ImageSample(Resolve(imageRoot, filename), maskname is null ? null : Resolve(imageRoot, maskname), label, clsname, defect);
    }

    private static string RequiredString(JsonElement o, string key) =>
        o.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String && v.GetString() is { Length: > 0 } s
            ? s
            : throw new FormatException($"'{key}' must be a non-empty string");

    private static string Resolve(string root, string relative) =>
        Path.GetFullPath(Path.Combine(root, relative.Replace('/', Path.DirectorySeparatorChar).Replace('\\', Path.DirectorySeparatorChar)));

    private static string Relative(string path, string root)
    {
        var relative = Path.GetRelativePath(root, Path.GetFullPath(path));
        if (relative.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(relative))
        {
            throw new ArgumentException($"'{path}' lies outside the image root '{root}'.");
        }

        return relative.Replace(Path.DirectorySeparatorChar, '/');
    }

    private static string Json(string value) => JsonSerializer.Serialize(value);

    private static string Shorten(string line) => line.Length <= 200 ? line : line[..200] + "...";
}
