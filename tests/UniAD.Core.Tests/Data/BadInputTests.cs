using UniAD.Core.Data;

namespace UniAD.Core.Tests.Data;

/// <summary>
/// Every kind of bad input the issue lists, made as real files: with the default policy an exception
/// names the file; with <see cref="BadInputPolicy.Skip"/> the file is left out and reported, and nothing
/// else is lost.
/// </summary>
public sealed class BadInputTests : IDisposable
{
    private static readonly LoaderOptions Loader = new() { BatchSize = 2, Preprocess = new PreprocessOptions { InputSize = new GridSize(16, 16) } };
    private readonly TempFolder temp = new();

    public void Dispose() => temp.Dispose();

    public static TheoryData<string> BadImages => new() { "corrupt", "truncated", "empty", "bomb" };

    [Fact]
    public void Missing_root_folder_is_named()
    {
        var missing = Path.Combine(temp.Path, "no-such-folder");
        Assert.Contains(missing, Assert.Throws<DirectoryNotFoundException>(() => MvtecAd.Open(missing, DatasetSplit.Train)).Message, StringComparison.Ordinal);
        Assert.Contains(missing, Assert.Throws<DirectoryNotFoundException>(() => ImageFolder.Open(missing)).Message, StringComparison.Ordinal);
        Assert.Contains(missing, Assert.Throws<DirectoryNotFoundException>(() => Cifar10.FromJpegFolder(missing)).Message, StringComparison.Ordinal);
        Assert.Contains(missing, Assert.Throws<DirectoryNotFoundException>(() => Cifar10.FromBinaryBatches(missing)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_class_folder_throws_or_is_skipped()
    {
        var root = MvtecRoot(("good_class", 2));
        var missing = Path.Combine(root, "absent");
        var options = new MvtecOptions { Classes = new[] { "good_class", "absent" } };
        Assert.Contains(missing, Assert.Throws<DirectoryNotFoundException>(() => MvtecAd.Open(root, DatasetSplit.Train, options)).Message, StringComparison.Ordinal);

        var source = MvtecAd.Open(root, DatasetSplit.Train, options with { OnBadInput = BadInputPolicy.Skip });
        Assert.Equal(2, source.Samples.Count);
        Assert.Equal(missing, Assert.Single(source.Skipped).Path);
    }

    [Fact]
    public void Empty_class_throws_or_is_skipped()
    {
        var root = MvtecRoot(("full", 2), ("empty", 0));
        var emptyFolder = Path.Combine(root, "empty", "train", "good");
        var error = Assert.Throws<InvalidDataException>(() => MvtecAd.Open(root, DatasetSplit.Train));
        Assert.Contains(emptyFolder, error.Message, StringComparison.Ordinal);

        var source = MvtecAd.Open(root, DatasetSplit.Train, new MvtecOptions { OnBadInput = BadInputPolicy.Skip });
        Assert.Equal(new[] { "full" }, source.ClassNames);
        Assert.Equal(emptyFolder, Assert.Single(source.Skipped).Path);

        // Nothing left at all is always an error, whatever the policy.
        var onlyEmpty = MvtecRoot(("empty", 0));
        Assert.Throws<InvalidDataException>(() => MvtecAd.Open(onlyEmpty, DatasetSplit.Train, new MvtecOptions { OnBadInput = BadInputPolicy.Skip }));
    }

    [Theory]
    [MemberData(nameof(BadImages))]
    public void Bad_image_file_throws_naming_it_or_is_skipped(string kind)
    {
        var root = temp.Folder("folder-" + kind);
        var good = Directory.CreateDirectory(Path.Combine(root, "good")).FullName;
        for (int i = 0; i < 3; i++)
        {
            TestImages.WritePng(Path.Combine(good, $"{i:D3}.png"), TestImages.Pattern(20, 20, i));
        }

        var bad = Path.Combine(good, "001b.png"); // sorts between 001 and 002
        File.WriteAllBytes(bad, kind switch
        {
            "corrupt" => Enumerable.Range(0, 500).Select(i => (byte)(i * 31)).ToArray(),
            "truncated" => File.ReadAllBytes(TestImages.WritePng(temp.File("whole.png"), TestImages.Pattern(64, 64, 5))).AsSpan(0, 400).ToArray(),
            "empty" => Array.Empty<byte>(),
            _ => TestImages.PngHeaderClaiming(20_000, 20_000),
        });
        string expectedReason = kind switch
        {
            "corrupt" => "not a readable image",
            "truncated" => "truncated",
            "empty" => "empty (0 bytes)",
            _ => "decompression bomb",
        };

        var source = ImageFolder.Open(root);
        Assert.Equal(4, source.Samples.Count);
        var error = Assert.Throws<ImageFileException>(() => new ImageBatchLoader(source, Loader).Batches().Select(b => { b.Dispose(); return 0; }).ToList());
        Assert.Equal(bad, error.FilePath);
        Assert.Contains(bad, error.Message, StringComparison.Ordinal);
        Assert.Contains(expectedReason, error.Message, StringComparison.Ordinal);

        var loader = new ImageBatchLoader(source, Loader with { OnBadInput = BadInputPolicy.Skip });
        for (int epoch = 0; epoch < 2; epoch++)
        {
            var batches = loader.Batches(epoch).ToList();
            Assert.Equal(new[] { 2, 1 }, batches.Select(b => b.Count));
            Assert.DoesNotContain(bad, batches.SelectMany(b => b.Paths));
            batches.ForEach(b => b.Dispose());
        }

        var skipped = Assert.Single(loader.Skipped); // reported once, not once per epoch
        Assert.Equal(bad, skipped.Path);
        Assert.Contains(expectedReason, skipped.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Decompression_bomb_is_refused_before_decoding_and_the_limit_is_an_option()
    {
        var path = temp.File("bomb.png");
        File.WriteAllBytes(path, TestImages.PngHeaderClaiming(20_000, 20_000));
        var error = Assert.Throws<ImageFileException>(() => ImageDecoder.Decode(path));
        Assert.Contains("20000 x 20000", error.Message, StringComparison.Ordinal);
        Assert.Contains(nameof(PreprocessOptions.MaxImagePixels), error.Message, StringComparison.Ordinal);

        var small = TestImages.WritePng(temp.File("small.png"), TestImages.Pattern(30, 30));
        Assert.Throws<ImageFileException>(() => ImageDecoder.Decode(small, maxPixels: 899));
        Assert.Equal(30, ImageDecoder.Decode(small, maxPixels: 900).Width);
    }

    [Fact]
    public void Mask_whose_size_differs_from_its_image_names_both()
    {
        var root = temp.Folder("mismatch");
        var image = TestImages.WritePng(temp.File("mismatch", "defect_scratch", "000.png"), TestImages.Pattern(20, 20));
        var mask = TestImages.WriteMask(temp.File("mismatch", "ground_truth", "defect_scratch", "000_mask.png"), 20, 21, (x, _) => x > 10);
        TestImages.WritePng(temp.File("mismatch", "good", "000.png"), TestImages.Pattern(20, 20, 1));
        var source = ImageFolder.Open(root);
        var error = Assert.Throws<ImageFileException>(() => new ImageBatchLoader(source, Loader).Batches().Select(b => { b.Dispose(); return 0; }).ToList());
        Assert.Equal(mask, error.FilePath);
        Assert.Contains(image, error.Message, StringComparison.Ordinal);
        Assert.Contains("20 x 21", error.Message, StringComparison.Ordinal);

        var loader = new ImageBatchLoader(source, Loader with { OnBadInput = BadInputPolicy.Skip });
        var batches = loader.Batches().ToList();
        Assert.Equal(1, batches.Sum(b => b.Count));
        batches.ForEach(b => b.Dispose());
        Assert.Equal(mask, Assert.Single(loader.Skipped).Path);
    }

    [Fact]
    public void Mask_without_an_image_throws_or_is_skipped()
    {
        var root = MvtecRoot(("widget", 1));
        TestImages.WritePng(temp.File(root, "widget", "test", "crack", "000.png"), TestImages.Pattern(16, 16));
        TestImages.WriteMask(temp.File(root, "widget", "ground_truth", "crack", "000_mask.png"), 16, 16, (x, y) => x == y);
        var orphan = TestImages.WriteMask(temp.File(root, "widget", "ground_truth", "crack", "007_mask.png"), 16, 16, (x, y) => x == y);
        var orphanFolder = TestImages.WriteMask(temp.File(root, "widget", "ground_truth", "dent", "000_mask.png"), 16, 16, (x, y) => x == y);

        var error = Assert.Throws<InvalidDataException>(() => MvtecAd.Open(root, DatasetSplit.Test));
        Assert.Contains(orphan, error.Message, StringComparison.Ordinal);

        var source = MvtecAd.Open(root, DatasetSplit.Test, new MvtecOptions { OnBadInput = BadInputPolicy.Skip });
        Assert.Equal(new[] { "crack" }, source.Samples.Select(s => s.DefectType).Distinct());
        Assert.Equal(new[] { orphan, orphanFolder }, source.Skipped.Select(s => s.Path));
        Assert.All(source.Skipped, s => Assert.Contains("mask without an image", s.Reason, StringComparison.Ordinal));
    }

    [Fact]
    public void Defective_test_image_without_its_mask_is_named()
    {
        // The defect type has a ground_truth folder, but this image's mask is missing.
        var root = MvtecRoot(("widget", 1));
        var image = TestImages.WritePng(temp.File(root, "widget", "test", "crack", "000.png"), TestImages.Pattern(16, 16));
        TestImages.WritePng(temp.File(root, "widget", "test", "crack", "001.png"), TestImages.Pattern(16, 16, 1));
        TestImages.WritePng(temp.File(root, "widget", "ground_truth", "crack", "001_mask.png"), TestImages.Pattern(16, 16, 2));
        TestImages.WritePng(temp.File(root, "widget", "test", "good", "000.png"), TestImages.Pattern(16, 16, 3));
        var error = Assert.Throws<FileNotFoundException>(() => MvtecAd.Open(root, DatasetSplit.Test));
        Assert.Contains(image, error.Message, StringComparison.Ordinal);
        Assert.Contains("000_mask.png", error.Message, StringComparison.Ordinal);

        var source = MvtecAd.Open(root, DatasetSplit.Test, new MvtecOptions { OnBadInput = BadInputPolicy.Skip });
        Assert.Equal(new[] { "001.png", "000.png" }, source.Samples.Select(s => Path.GetFileName(s.ImagePath)));
        Assert.Equal(image, Assert.Single(source.Skipped).Path);

        // Allowed: the image is kept with its image-level label only.
        var allowed = MvtecAd.Open(root, DatasetSplit.Test, new MvtecOptions { MissingMasks = MissingMaskPolicy.ImageLevelOnly });
        Assert.Equal(3, allowed.Samples.Count);
        var unmasked = Assert.Single(allowed.Samples, s => !s.HasPixelLabels);
        Assert.Equal(image, unmasked.ImagePath);
        Assert.Null(unmasked.MaskPath);
    }

    [Fact]
    public void Defect_type_without_a_ground_truth_folder_is_named_unless_image_level_labels_are_allowed()
    {
        var root = MvtecRoot(("widget", 1));
        var crack = temp.Folder(root, "widget", "test", "crack");
        TestImages.WritePng(Path.Combine(crack, "000.png"), TestImages.Pattern(16, 16));
        TestImages.WritePng(Path.Combine(crack, "001.png"), TestImages.Pattern(16, 16, 1));
        TestImages.WritePng(temp.File(root, "widget", "test", "good", "000.png"), TestImages.Pattern(16, 16, 3));
        var error = Assert.Throws<DirectoryNotFoundException>(() => MvtecAd.Open(root, DatasetSplit.Test));
        Assert.Contains(crack, error.Message, StringComparison.Ordinal);
        Assert.Contains(Path.Combine(root, "widget", "ground_truth", "crack"), error.Message, StringComparison.Ordinal);
        Assert.Contains(nameof(MissingMaskPolicy.ImageLevelOnly), error.Message, StringComparison.Ordinal);

        var skipped = MvtecAd.Open(root, DatasetSplit.Test, new MvtecOptions { OnBadInput = BadInputPolicy.Skip });
        Assert.Equal("good", Assert.Single(skipped.Samples).DefectType);
        Assert.Equal(crack, Assert.Single(skipped.Skipped).Path);

        var allowed = MvtecAd.Open(root, DatasetSplit.Test, new MvtecOptions { MissingMasks = MissingMaskPolicy.ImageLevelOnly });
        Assert.Equal(2, allowed.Samples.Count(s => s.IsAnomalous && !s.HasPixelLabels && s.MaskPath is null));
        Assert.True(Assert.Single(allowed.Samples, s => !s.IsAnomalous).HasPixelLabels);
    }

    private string MvtecRoot(params (string Class, int Images)[] classes)
    {
        var root = temp.Folder("mvtec-" + Guid.NewGuid().ToString("N")[..8]);
        foreach (var (name, count) in classes)
        {
            var folder = temp.Folder(root, name, "train", "good");
            for (int i = 0; i < count; i++)
            {
                TestImages.WritePng(Path.Combine(folder, $"{i:D3}.png"), TestImages.Pattern(16, 16, i));
            }
        }

        return root;
    }
}
