using UniAD.Core.Data;

namespace UniAD.Core.Tests.Data;

public sealed class ImageFolderTests : IDisposable
{
    private readonly TempFolder temp = new();

    public void Dispose() => temp.Dispose();

    [Fact]
    public void Good_and_defect_folders_with_optional_masks()
    {
        var root = temp.Folder("bracket");
        for (int i = 0; i < 5; i++)
        {
            TestImages.WritePng(temp.File("bracket", "good", $"g{i}.png"), TestImages.Pattern(12, 12, i));
        }

        TestImages.WriteJpeg(temp.File("bracket", "defect_bent", "b0.jpg"), TestImages.Pattern(12, 12, 7));
        TestImages.WritePng(temp.File("bracket", "Defects", "c0.png"), TestImages.Pattern(12, 12, 8));
        TestImages.WriteMask(temp.File("bracket", "ground_truth", "defect_bent", "b0_mask.png"), 12, 12, (x, _) => x < 3);
        File.WriteAllText(temp.File("bracket", "good", "notes.txt"), "not an image");
        temp.Folder("bracket", "unrelated");

        var source = ImageFolder.Open(root);
        Assert.Equal(7, source.Samples.Count);
        Assert.Equal(new[] { "bracket" }, source.ClassNames);
        Assert.Equal(new[] { "Defects", "defect_bent" }, source.Samples.Where(s => s.IsAnomalous).Select(s => s.DefectType).Order(StringComparer.Ordinal));
        Assert.Equal(Path.Combine(root, "ground_truth", "defect_bent", "b0_mask.png"), source.Samples.Single(s => s.DefectType == "defect_bent").MaskPath);
        var unmasked = source.Samples.Single(s => s.DefectType == "Defects");
        Assert.Null(unmasked.MaskPath);
        Assert.False(unmasked.HasPixelLabels);
        Assert.Equal(1, source.Samples.Count(s => !s.HasPixelLabels));

        // No mask is invented for it: its mask row is zeros and marked as not ground truth.
        var loader = new ImageBatchLoader(new ImageSource("one", new[] { unmasked }), new LoaderOptions { Preprocess = new PreprocessOptions { InputSize = new UniAD.Core.GridSize(12, 12) } });
        using (var batch = loader.Batches().Single())
        {
            Assert.False(Assert.Single(batch.HasMask));
            Assert.Equal(0f, batch.Masks!.sum().item<float>());
        }

        var error = Assert.Throws<FileNotFoundException>(() => ImageFolder.Open(root, new ImageFolderOptions { MissingMasks = MissingMaskPolicy.Throw }));
        Assert.Contains(Path.Combine(root, "Defects", "c0.png"), error.Message, StringComparison.Ordinal);
        Assert.Equal("widget", ImageFolder.Open(root, new ImageFolderOptions { ClassName = "widget" }).ClassNames.Single());

        var (train, test) = ImageFolder.SplitNormal(source, 0.6, seed: 4);
        Assert.Equal(3, train.Samples.Count);
        Assert.All(train.Samples, s => Assert.False(s.IsAnomalous));
        Assert.Equal(4, test.Samples.Count);
        Assert.Empty(train.Samples.Intersect(test.Samples));
        Assert.Equal(train.Samples, ImageFolder.SplitNormal(source, 0.6, seed: 4).Train.Samples);
        Assert.Throws<ArgumentException>(() => ImageFolder.SplitNormal(source, 1.0, seed: 4));
    }

    [Fact]
    public void Missing_good_folder_is_named()
    {
        var root = temp.Folder("nogood");
        TestImages.WritePng(temp.File("nogood", "defect", "0.png"), TestImages.Pattern(8, 8));
        var error = Assert.Throws<DirectoryNotFoundException>(() => ImageFolder.Open(root));
        Assert.Contains(Path.Combine(root, "good"), error.Message, StringComparison.Ordinal);
        var skipped = ImageFolder.Open(root, new ImageFolderOptions { OnBadInput = BadInputPolicy.Skip });
        Assert.Single(skipped.Samples);
        Assert.Equal(Path.Combine(root, "good"), Assert.Single(skipped.Skipped).Path);
    }
}
