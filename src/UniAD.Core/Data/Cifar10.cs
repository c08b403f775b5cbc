using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using static TorchSharp.torch;

namespace UniAD.Core.Data;

/// <summary>The CIFAR-10 one-class-out protocol's choices.</summary>
public sealed record Cifar10Options
{
    /// <summary>The normal classes (indices 0..9); default {0, 1, 2, 3, 4}, the reference's first split.</summary>
    public IReadOnlyList<int> NormalClasses { get; init; } = Cifar10.ReferenceSplits[0];

    /// <summary>Seed of the sampling of anomalous test images (the reference's seed is 133).</summary>
    public long Seed { get; init; } = 133;

    /// <summary>What to do with missing or empty class folders, corrupt batch files and bad records.</summary>
    public BadInputPolicy OnBadInput { get; init; } = BadInputPolicy.Throw;

    /// <summary>Checks the normal classes.</summary>
    /// <exception cref="ArgumentException">No normal class, all ten, a duplicate or an index outside 0..9.</exception>
    public void Validate()
    {
        if (NormalClasses is null || NormalClasses.Count == 0 || NormalClasses.Count >= Cifar10.ClassNames.Count)
        {
            throw new ArgumentException($"{nameof(NormalClasses)} must name between 1 and 9 of the 10 classes, got [{string.Join(", ", NormalClasses ?? Array.Empty<int>())}].", nameof(NormalClasses));
        }

        if (NormalClasses.Any(c => c < 0 || c >= Cifar10.ClassNames.Count) || NormalClasses.Distinct().Count() != NormalClasses.Count)
        {
            throw new ArgumentException($"{nameof(NormalClasses)} must hold distinct indices in 0..9, got [{string.Join(", ", NormalClasses)}].", nameof(NormalClasses));
        }
    }
}

/// <summary>The protocol's two sources.</summary>
/// <param name="Train">The training images of the normal classes (label 0).</param>
/// <param name="Test">The normal classes' test images (label 0), then as many test images sampled from the other classes (label 1).</param>
/// <param name="NormalClasses">The normal classes, sorted.</param>
public sealed record Cifar10Protocol(IImageSource Train, IImageSource Test, IReadOnlyList<int> NormalClasses);

/// <summary>
/// CIFAR-10 under the reference's protocol: some classes are normal; training uses their training images;
/// the test set is their test images plus an equal number of test images sampled (seeded, without
/// replacement) from the other classes; the image score is the mean of the anomaly map
/// (<see cref="ImageScores"/>). Every sample's class name is <see cref="GroupName"/> (one AUROC over the whole
/// test set); its defect type is its CIFAR-10 class name. Reads the folder-of-JPEG layout
/// (<c>train|test/&lt;class name&gt;/*.jpg</c>) and the original binary batches.
/// </summary>
public static partial class Cifar10
{
    /// <summary>The class name shared by every CIFAR-10 sample, so metrics treat the test set as one group.</summary>
    public const string GroupName = "cifar10";

    /// <summary>Bytes per record of the binary format: 1 label byte, then 1024 red, 1024 green, 1024 blue bytes (32 x 32, row-major).</summary>
    public const int RecordBytes = 1 + (3 * 32 * 32);

    /// <summary>The classes in index order.</summary>
    public static IReadOnlyList<string> ClassNames { get; } = new[] { "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck" };

    /// <summary>The reference's four splits of normal classes: {0,1,2,3,4}, {0,2,4,6,8}, {1,3,5,7,9}, {5,6,7,8,9}.</summary>
    public static IReadOnlyList<IReadOnlyList<int>> ReferenceSplits { get; } = new IReadOnlyList<int>[]
    {
        new[] { 0, 1, 2, 3, 4 },
        new[] { 0, 2, 4, 6, 8 },
        new[] { 1, 3, 5, 7, 9 },
        new[] { 5, 6, 7, 8, 9 },
    };

    /// <summary>Reads <c>&lt;root&gt;/train/&lt;class&gt;/*</c> and <c>&lt;root&gt;/test/&lt;class&gt;/*</c> (class folders named as in <see cref="ClassNames"/>).</summary>
    /// <exception cref="DirectoryNotFoundException">The root does not exist; or (policy Throw) a needed class folder is missing.</exception>
    /// <exception cref="InvalidDataException">(Policy Throw) a class folder holds no image; or nothing is left.</exception>
    public static Cifar10Protocol FromJpegFolder(string root, Cifar10Options? options = null, ILogger? logger = null)
    {
        (root, options, logger) = Start(root, options, logger, "CIFAR-10 folder");
        var bad = new BadInput(options.OnBadInput, logger);
        var normal = options.NormalClasses.ToHashSet();
        var train = new List<(string Path, int Class)>();
        var test = new List<(string Path, int Class)>();
        for (int c = 0; c < ClassNames.Count; c++)
        {
            // Training images of anomalous classes are never used, so their folders may be absent.
            if (normal.Contains(c))
            {
                train.AddRange(ClassFiles(Path.Combine(root, "train", ClassNames[c]), bad).Select(f => (f, c)));
            }

            test.AddRange(ClassFiles(Path.Combine(root, "test", ClassNames[c]), bad).Select(f => (f, c)));
        }

        var (trainSamples, testSamples) = Apply(train, test, options, logger);
        var trainSource = new ImageSource(Path.Combine(root, "train"), trainSamples, bad.Skipped);
        var testSource = new ImageSource(Path.Combine(root, "test"), testSamples, bad.Skipped);
        return Finish(trainSource, testSource, options, logger);
    }

    /// <summary>
    /// Reads the original binary batches in <paramref name="folder"/>: every <c>data_batch_&lt;n&gt;.bin</c>
    /// present (training) and <c>test_batch.bin</c>. Sample paths are <c>&lt;file&gt;#&lt;record index&gt;</c>.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException"><c>test_batch.bin</c> or every training batch is missing.</exception>
    /// <exception cref="InvalidDataException">(Policy Throw) a file's length is not a whole number of records, or a label is above 9.</exception>
    public static Cifar10Protocol FromBinaryBatches(string folder, Cifar10Options? options = null, ILogger? logger = null)
    {
        (folder, options, logger) = Start(folder, options, logger, "CIFAR-10 batch folder");
        var trainFiles = Directory.GetFiles(folder, "data_batch_*.bin")
            .Select(f => (File: f, Match: TrainBatchName().Match(Path.GetFileName(f))))
            .Where(x => x.Match.Success)
            .OrderBy(x => int.Parse(x.Match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture))
            .Select(x => x.File)
            .ToList();
        if (trainFiles.Count == 0)
        {
            throw new FileNotFoundException($"'{folder}' holds no training batch (data_batch_1.bin ... data_batch_5.bin).", Path.Combine(folder, "data_batch_1.bin"));
        }

        var testFile = Path.Combine(folder, "test_batch.bin");
        if (!File.Exists(testFile))
        {
            throw new FileNotFoundException($"'{folder}' holds no test batch: '{testFile}' does not exist.", testFile);
        }

        var bad = new BadInput(options.OnBadInput, logger);
        var records = new Dictionary<string, (byte[] Data, int Offset)>(StringComparer.Ordinal);
        var train = trainFiles.SelectMany(f => ReadBatch(f, records, bad)).ToList();
        var test = ReadBatch(testFile, records, bad).ToList();
        var (trainSamples, testSamples) = Apply(train, test, options, logger);
        var trainSource = new Cifar10BinarySource(folder, trainSamples, records, bad.Skipped);
        var testSource = new Cifar10BinarySource(folder, testSamples, records, bad.Skipped);
        return Finish(trainSource, testSource, options, logger);
    }

    /// <summary>The protocol's image score: the mean of each anomaly map (B x ... → B).</summary>
    /// <exception cref="ArgumentException">The maps have fewer than 2 dimensions.</exception>
    public static Tensor ImageScores(Tensor anomalyMaps)
    {
        ArgumentNullException.ThrowIfNull(anomalyMaps);
        if (anomalyMaps.dim() < 2)
        {
            throw new ArgumentException($"Anomaly maps must be B x ..., got shape [{string.Join(", ", anomalyMaps.shape)}].", nameof(anomalyMaps));
        }

        return anomalyMaps.flatten(1).mean(new long[] { 1 });
    }

    /// <summary>The protocol on (path, class) lists: training images of normal classes; normal test images, then an equal number of sampled others.</summary>
    internal static (List<ImageSample> Train, List<ImageSample> Test) Apply(
        IReadOnlyList<(string Path, int Class)> train, IReadOnlyList<(string Path, int Class)> test, Cifar10Options options, ILogger logger)
    {
        var normal = options.NormalClasses.ToHashSet();
        var trainOut = train.Where(x => normal.Contains(x.Class)).Select(x => Sample(x, ImageSample.Normal)).ToList();
        var testNormal = test.Where(x => normal.Contains(x.Class)).ToList();
        var others = test.Where(x => !normal.Contains(x.Class)).ToList();
        int wanted = testNormal.Count;
        if (others.Count < wanted)
        {
            logger.LogWarning("CIFAR-10: only {Available} test images of the other classes for {Wanted} normal ones; using all of them", others.Count, wanted);
            wanted = others.Count;
        }

        var sampled = SeededRandom.For(options.Seed, 0xC1FA).Sample(others.Count, wanted).Select(i => others[i]);
        var testOut = testNormal.Select(x => Sample(x, ImageSample.Normal)).Concat(sampled.Select(x => Sample(x, ImageSample.Anomalous))).ToList();
        return (trainOut, testOut);
    }

    private static (string Folder, Cifar10Options Options, ILogger Logger) Start(string folder, Cifar10Options? options, ILogger? logger, string what)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        options ??= new Cifar10Options();
        options.Validate();
        folder = Path.GetFullPath(folder);
        return Directory.Exists(folder)
            ? (folder, options, logger ?? NullLogger.Instance)
            : throw new DirectoryNotFoundException($"The {what} '{folder}' does not exist.");
    }

    private static Cifar10Protocol Finish(IImageSource train, IImageSource test, Cifar10Options options, ILogger logger)
    {
        if (train.Samples.Count == 0 || test.Samples.Count == 0)
        {
            throw new InvalidDataException($"CIFAR-10 with normal classes [{string.Join(", ", options.NormalClasses)}] yielded {train.Samples.Count} training and {test.Samples.Count} test images; {train.Skipped.Count} files were skipped.");
        }

        logger.LogInformation("CIFAR-10 normal classes [{Classes}]: {Train} training images, {Test} test images ({Anomalous} anomalous)", string.Join(", ", options.NormalClasses), train.Samples.Count, test.Samples.Count, test.Samples.Count(s => s.IsAnomalous));
        return new Cifar10Protocol(train, test, options.NormalClasses.Order().ToList());
    }

    private static ImageSample Sample((string Path, int Class) item, int label) => new(item.Path, null, label, GroupName, ClassNames[item.Class]);

    private static List<string> ClassFiles(string folder, BadInput bad)
    {
        if (!FolderLayout.RequireFolder(folder, $"CIFAR-10 class '{Path.GetFileName(folder)}'", bad))
        {
            return new List<string>();
        }

        var files = ImageSource.ImageFiles(folder);
        if (files.Count == 0)
        {
            bad.Report(folder, "the class folder holds no images", new InvalidDataException($"The CIFAR-10 class folder '{folder}' holds no images."));
        }

        return files;
    }

    private static IEnumerable<(string Path, int Class)> ReadBatch(string file, Dictionary<string, (byte[] Data, int Offset)> records, BadInput bad)
    {
        var data = File.ReadAllBytes(file);
        if (data.Length == 0 || data.Length % RecordBytes != 0)
        {
            var reason = $"{data.Length} bytes is not a whole number of {RecordBytes}-byte records (truncated or not a CIFAR-10 batch)";
            bad.Report(file, reason, new InvalidDataException($"'{file}': {reason}."));
            yield break;
        }

        for (int i = 0, offset = 0; offset < data.Length; i++, offset += RecordBytes)
        {
            var path = $"{file}#{i}";
            int label = data[offset];
            if (label >= ClassNames.Count)
            {
                bad.Report(path, $"label {label} is not a CIFAR-10 class (0..9)", new InvalidDataException($"'{file}' record {i}: label {label} is not a CIFAR-10 class (0..9)."));
                continue;
            }

            records[path] = (data, offset);
            yield return (path, label);
        }
    }

    [GeneratedRegex(@"^data_batch_(\d+)\.bin$")]
    private static partial Regex TrainBatchName();
}

/// <summary>Records of CIFAR-10 binary batches, held in memory; sample paths are <c>&lt;file&gt;#&lt;record index&gt;</c>.</summary>
internal sealed class Cifar10BinarySource : IImageSource
{
    private readonly IReadOnlyDictionary<string, (byte[] Data, int Offset)> records;

    public Cifar10BinarySource(string name, IReadOnlyList<ImageSample> samples, IReadOnlyDictionary<string, (byte[] Data, int Offset)> records, IReadOnlyList<SkippedFile> skipped)
    {
        Name = name;
        Samples = samples;
        this.records = records;
        Skipped = skipped;
    }

    public string Name { get; }

    public IReadOnlyList<ImageSample> Samples { get; }

    public IReadOnlyList<SkippedFile> Skipped { get; }

    public RgbImage ReadImage(ImageSample sample, long maxPixels)
    {
        if (!records.TryGetValue(sample.ImagePath, out var record))
        {
            throw new ImageFileException(sample.ImagePath, "no such CIFAR-10 record in the batches that were read.");
        }

        const int plane = 32 * 32;
        var pixels = new byte[plane * 4];
        var data = record.Data.AsSpan(record.Offset + 1, 3 * plane);
        for (int i = 0; i < plane; i++)
        {
            pixels[(4 * i) + 0] = data[i];
            pixels[(4 * i) + 1] = data[plane + i];
            pixels[(4 * i) + 2] = data[(2 * plane) + i];
            pixels[(4 * i) + 3] = 255;
        }

        return new RgbImage(32, 32, pixels);
    }

    public string ContentKey(ImageSample sample)
    {
        int hash = sample.ImagePath.LastIndexOf('#');
        return ImageSource.FileContentKey(sample.ImagePath[..hash]) + sample.ImagePath[hash..];
    }
}
