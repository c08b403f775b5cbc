using UniAD.Core.Data;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Data;

/// <summary>
/// The CIFAR-10 protocol on the real JPEG subset (<c>../shared/data/cifar10-jpeg-subset</c>: 300 training and
/// 150 test images per class). Without the shared folder the same tests run on a small generated JPEG folder
/// of the same layout (12 training and 6 test images per class), so they always test something real.
/// </summary>
public sealed class Cifar10Tests : IDisposable
{
    private readonly ITestOutputHelper output;
    private readonly TempFolder temp = new();
    private readonly string root;
    private readonly int trainPerClass;
    private readonly int testPerClass;

    public Cifar10Tests(ITestOutputHelper output)
    {
        this.output = output;
        var shared = Fixtures.SharedRoot is null ? null : Path.GetFullPath(Path.Combine(Fixtures.SharedRoot, "..", "data", "cifar10-jpeg-subset"));
        if (shared is not null && Directory.Exists(shared))
        {
            (root, trainPerClass, testPerClass) = (shared, 300, 150);
        }
        else
        {
            (root, trainPerClass, testPerClass) = (GenerateJpegFolder(temp.Folder("cifar"), 12, 6), 12, 6);
        }

        output.WriteLine($"CIFAR-10 JPEG folder: {root}");
    }

    public void Dispose() => temp.Dispose();

    [Fact]
    public void Reference_split_counts_and_labels()
    {
        var protocol = Cifar10.FromJpegFolder(root);
        Assert.Equal(new[] { 0, 1, 2, 3, 4 }, protocol.NormalClasses);
        Assert.Equal(5 * trainPerClass, protocol.Train.Samples.Count);
        Assert.All(protocol.Train.Samples, s =>
        {
            Assert.Equal(0, s.Label);
            Assert.Equal(Cifar10.GroupName, s.ClassName);
            Assert.Contains(s.DefectType, Cifar10.ClassNames.Take(5));
            Assert.Equal(Path.Combine(root, "train", s.DefectType, Path.GetFileName(s.ImagePath)), s.ImagePath);
        });

        // Test: the 5 normal classes' test images, then as many sampled from the 5 others (here: all of them).
        var test = protocol.Test.Samples;
        Assert.Equal(10 * testPerClass, test.Count);
        Assert.Equal(5 * testPerClass, test.Count(s => s.Label == 0));
        Assert.All(test.Take(5 * testPerClass), s => Assert.Contains(s.DefectType, Cifar10.ClassNames.Take(5)));
        Assert.All(test.Skip(5 * testPerClass), s =>
        {
            Assert.Equal(1, s.Label);
            Assert.Contains(s.DefectType, Cifar10.ClassNames.Skip(5));
        });
        Assert.Equal(test.Count, test.Select(s => s.ImagePath).Distinct().Count());
    }

    [Fact]
    public void Sampling_of_other_classes_is_seeded_and_balanced()
    {
        // Three normal classes: 3·n normal test images, 3·n sampled out of the 7·n others.
        var options = new Cifar10Options { NormalClasses = new[] { 1, 4, 8 }, Seed = 7 };
        var a = Cifar10.FromJpegFolder(root, options).Test.Samples;
        var b = Cifar10.FromJpegFolder(root, options).Test.Samples;
        var c = Cifar10.FromJpegFolder(root, options with { Seed = 8 }).Test.Samples;
        Assert.Equal(a, b);
        var anomalies = a.Where(s => s.IsAnomalous).ToList();
        Assert.Equal(3 * testPerClass, a.Count(s => !s.IsAnomalous));
        Assert.Equal(3 * testPerClass, anomalies.Count);
        Assert.Equal(anomalies.Count, anomalies.Select(s => s.ImagePath).Distinct().Count());
        Assert.DoesNotContain(anomalies, s => s.DefectType is "automobile" or "deer" or "ship");
        Assert.NotEqual(anomalies.Select(s => s.ImagePath), c.Where(s => s.IsAnomalous).Select(s => s.ImagePath));

        // Every other class is represented, roughly in proportion (expected n·3/7 each).
        var perClass = anomalies.GroupBy(s => s.DefectType).ToDictionary(g => g.Key, g => g.Count());
        output.WriteLine(string.Join(", ", perClass.Select(kv => $"{kv.Key} {kv.Value}")));
        Assert.Equal(7, perClass.Count);
    }

    [Fact]
    public void Presets_and_option_checks()
    {
        Assert.Equal(4, Cifar10.ReferenceSplits.Count);
        Assert.Equal(new[] { 0, 2, 4, 6, 8 }, Cifar10.ReferenceSplits[1]);
        Assert.Equal(new[] { 5, 6, 7, 8, 9 }, Cifar10.ReferenceSplits[3]);
        foreach (var split in Cifar10.ReferenceSplits)
        {
            var protocol = Cifar10.FromJpegFolder(root, new Cifar10Options { NormalClasses = split });
            Assert.Equal(split.Select(c => Cifar10.ClassNames[c]).ToHashSet(), protocol.Train.Samples.Select(s => s.DefectType).ToHashSet());
        }

        Assert.Throws<ArgumentException>(() => new Cifar10Options { NormalClasses = Array.Empty<int>() }.Validate());
        Assert.Throws<ArgumentException>(() => new Cifar10Options { NormalClasses = new[] { 1, 1 } }.Validate());
        Assert.Throws<ArgumentException>(() => new Cifar10Options { NormalClasses = new[] { 10 } }.Validate());
        Assert.Throws<ArgumentException>(() => new Cifar10Options { NormalClasses = Enumerable.Range(0, 10).ToArray() }.Validate());
    }

    [Fact]
    public void Jpeg_images_load_into_batches()
    {
        var protocol = Cifar10.FromJpegFolder(root);
        var loader = new ImageBatchLoader(protocol.Test, new LoaderOptions { BatchSize = 4, Preprocess = new PreprocessOptions { InputSize = new GridSize(64, 64) } });
        using var batch = loader.Batches().First();
        Assert.Equal(new long[] { 4, 3, 64, 64 }, batch.Images.shape);
        Assert.True(batch.Images.std().item<float>() > 0.1f, "decoded CIFAR images should not be flat");
        Assert.Equal(0f, batch.Masks!.sum().item<float>());
    }

    [Fact]
    public void Binary_batches_are_read_record_by_record()
    {
        var folder = temp.Folder("batches");
        var records = new List<(int Label, byte[] Pixels)>();
        for (int i = 0; i < 30; i++)
        {
            var pixels = Enumerable.Range(0, 3072).Select(p => (byte)((p * 7) + (i * 13))).ToArray();
            records.Add((i % 10, pixels));
        }

        File.WriteAllBytes(Path.Combine(folder, "data_batch_1.bin"), Batch(records.Take(20)));
        File.WriteAllBytes(Path.Combine(folder, "test_batch.bin"), Batch(records.Skip(20)));
        var protocol = Cifar10.FromBinaryBatches(folder, new Cifar10Options { NormalClasses = new[] { 0, 1 } });

        // Training: records 0, 1, 10, 11 (labels 0 and 1). Test: records 20, 21 normal, two of the other 8 sampled.
        Assert.Equal(new[] { "#0", "#1", "#10", "#11" }, protocol.Train.Samples.Select(s => s.ImagePath[s.ImagePath.LastIndexOf('#')..]));
        Assert.Equal(new[] { 0, 0, 1, 1 }, protocol.Test.Samples.Select(s => s.Label));
        Assert.Equal(new[] { "airplane", "automobile" }, protocol.Test.Samples.Take(2).Select(s => s.DefectType));

        // Pixels: 1024 red, 1024 green, 1024 blue bytes, row-major.
        var sample = protocol.Train.Samples[2];
        var image = protocol.Train.ReadImage(sample, ImageDecoder.DefaultMaxPixels);
        var expected = records[10].Pixels;
        Assert.Equal((32, 32), (image.Width, image.Height));
        Assert.Equal((expected[(5 * 32) + 3], expected[1024 + (5 * 32) + 3], expected[2048 + (5 * 32) + 3]), image[3, 5]);

        // Through the loader: 32 -> 224 (bilinear upscaling).
        var loader = new ImageBatchLoader(protocol.Train, new LoaderOptions { BatchSize = 4, LoadMasks = false });
        using var batch = Assert.Single(loader.Batches());
        Assert.Equal(new long[] { 4, 3, 224, 224 }, batch.Images.shape);
        Assert.Null(batch.Masks);
    }

    [Fact]
    public void Binary_batch_errors_name_the_file_and_record()
    {
        var folder = temp.Folder("bad-batches");
        var record = new byte[Cifar10.RecordBytes];
        File.WriteAllBytes(Path.Combine(folder, "test_batch.bin"), record);
        Assert.Throws<FileNotFoundException>(() => Cifar10.FromBinaryBatches(folder));

        var train = Path.Combine(folder, "data_batch_1.bin");
        File.WriteAllBytes(train, record.Concat(new byte[100]).ToArray());
        var truncated = Assert.Throws<InvalidDataException>(() => Cifar10.FromBinaryBatches(folder));
        Assert.Contains(train, truncated.Message, StringComparison.Ordinal);

        var badLabel = (byte[])record.Clone();
        badLabel[0] = 12;
        File.WriteAllBytes(train, record.Concat(badLabel).ToArray());
        var label = Assert.Throws<InvalidDataException>(() => Cifar10.FromBinaryBatches(folder, new Cifar10Options { NormalClasses = new[] { 0 } }));
        Assert.Contains("record 1", label.Message, StringComparison.Ordinal);
        var skipped = Cifar10.FromBinaryBatches(folder, new Cifar10Options { NormalClasses = new[] { 0 }, OnBadInput = BadInputPolicy.Skip });
        Assert.Single(skipped.Train.Samples);
        Assert.Equal($"{train}#1", Assert.Single(skipped.Train.Skipped).Path);
    }

    [Fact]
    public void Image_score_is_the_mean_of_the_map()
    {
        using var scope = NewDisposeScope();
        var values = new float[32];
        values[0] = 16; // first map: a single 16 among zeros, mean 1
        Array.Fill(values, 3f, 16, 16); // second map: all 3
        var maps = tensor(values, new long[] { 2, 1, 4, 4 });
        Assert.Equal(new[] { 1f, 3f }, Cifar10.ImageScores(maps).data<float>().ToArray());
    }

    private static byte[] Batch(IEnumerable<(int Label, byte[] Pixels)> records) =>
        records.SelectMany(r => new[] { (byte)r.Label }.Concat(r.Pixels)).ToArray();

    private static string GenerateJpegFolder(string folder, int train, int test)
    {
        foreach (var (split, count) in new[] { ("train", train), ("test", test) })
        {
            for (int c = 0; c < 10; c++)
            {
                var dir = Directory.CreateDirectory(Path.Combine(folder, split, Cifar10.ClassNames[c])).FullName;
                for (int i = 0; i < count; i++)
                {
                    TestImages.WriteJpeg(Path.Combine(dir, $"{i:D4}.jpg"), TestImages.Pattern(32, 32, (c * 100) + i));
                }
            }
        }

        return folder;
    }
}
