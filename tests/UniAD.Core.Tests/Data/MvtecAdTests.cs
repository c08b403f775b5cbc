using UniAD.Core.Data;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Data;

/// <summary>The MVTec-AD layout and the reference's meta files, on generated folders.</summary>
public sealed class MvtecAdTests : IDisposable
{
    private static readonly SyntheticDatasetOptions Small = new()
    {
        Classes = new[] { SyntheticClass.Disc, SyntheticClass.Stripes },
        Defects = new[] { SyntheticDefect.Scratch, SyntheticDefect.MissingPart },
        ImageSize = 40,
        TrainPerClass = 3,
        TestGoodPerClass = 2,
        TestPerDefect = 2,
        Seed = 1,
    };

    private readonly TempFolder temp = new();
    private readonly string root;

    public MvtecAdTests()
    {
        root = Path.Combine(temp.Path, "mvtec");
        SyntheticDefects.Generate(root, Small);
    }

    public void Dispose() => temp.Dispose();

    [Fact]
    public void Train_split_lists_the_good_images_of_every_class()
    {
        var train = MvtecAd.Open(root, DatasetSplit.Train);
        Assert.Equal(6, train.Samples.Count);
        Assert.Equal(new[] { "disc", "stripes" }, train.ClassNames);
        Assert.All(train.Samples, s =>
        {
            Assert.Equal(0, s.Label);
            Assert.Null(s.MaskPath);
            Assert.Equal("good", s.DefectType);
            Assert.Equal(Path.Combine(root, s.ClassName, "train", "good", Path.GetFileName(s.ImagePath)), s.ImagePath);
        });
        Assert.Empty(train.Skipped);
    }

    [Fact]
    public void Test_split_pairs_defects_with_masks()
    {
        var test = MvtecAd.Open(root, DatasetSplit.Test);
        Assert.Equal(2 * (2 + 4), test.Samples.Count);
        var disc = test.Samples.Where(s => s.ClassName == "disc").ToList();
        Assert.Equal(new[] { "good", "good", "missing_part", "missing_part", "scratch", "scratch" }, disc.Select(s => s.DefectType));
        foreach (var s in test.Samples)
        {
            Assert.Equal(s.DefectType == "good" ? 0 : 1, s.Label);
            if (s.IsAnomalous)
            {
                var expected = Path.Combine(root, s.ClassName, "ground_truth", s.DefectType, Path.GetFileNameWithoutExtension(s.ImagePath) + "_mask.png");
                Assert.Equal(expected, s.MaskPath);
            }
            else
            {
                Assert.Null(s.MaskPath);
            }
        }
    }

    [Fact]
    public void A_subset_of_classes_and_the_standard_names()
    {
        var only = MvtecAd.Open(root, DatasetSplit.Test, new MvtecOptions { Classes = new[] { "stripes" } });
        Assert.Equal(new[] { "stripes" }, only.ClassNames);
        Assert.Equal(15, MvtecAd.ClassNames.Count);
        Assert.Contains("metal_nut", MvtecAd.ClassNames);
    }

    [Fact]
    public void Loaded_masks_and_labels_follow_the_reference_rules()
    {
        var test = MvtecAd.Open(root, DatasetSplit.Test, new MvtecOptions { Classes = new[] { "disc" } });
        var loader = new ImageBatchLoader(test, new LoaderOptions { BatchSize = 6, Preprocess = new PreprocessOptions { InputSize = new GridSize(40, 40) } });
        using var batch = Assert.Single(loader.Batches());
        var (images, masks, labels, classes, paths) = batch;
        Assert.Equal(new long[] { 6, 3, 40, 40 }, images.shape);
        Assert.Equal(new long[] { 6, 1, 40, 40 }, masks!.shape);
        Assert.Equal(new long[] { 0, 0, 1, 1, 1, 1 }, labels.data<long>().ToArray());
        Assert.All(classes, c => Assert.Equal("disc", c));
        Assert.Equal(test.Samples.Select(s => s.ImagePath), paths);
        using var scope = NewDisposeScope();
        for (int i = 0; i < 6; i++)
        {
            var sample = test.Samples[i];
            float anomalous = masks[i].sum().item<float>();
            if (sample.IsAnomalous)
            {
                // The mask file's anomalous pixels, exactly (same size: no resize).
                var expected = ImagePreprocessor.LoadMask(sample.MaskPath!, new PreprocessOptions { InputSize = new GridSize(40, 40) });
                Assert.Equal(expected.sum().item<float>(), anomalous);
                Assert.True(anomalous > 0);
            }
            else
            {
                Assert.Equal(0f, anomalous); // a good image has no mask: all zeros
            }
        }
    }

    [Fact]
    public void Meta_files_round_trip_and_read_the_reference_lines()
    {
        var test = MvtecAd.Open(root, DatasetSplit.Test);
        var meta = Path.Combine(temp.Path, "test.json");
        MetaFile.Write(test.Samples, root, meta);
        var lines = File.ReadAllLines(meta);
        Assert.Equal(test.Samples.Count, lines.Length);
        Assert.Equal("{\"filename\": \"disc/test/good/000.png\", \"label\": 0, \"label_name\": \"good\", \"clsname\": \"disc\"}", lines[0]);
        Assert.Contains(lines, l => l == "{\"filename\": \"disc/test/scratch/001.png\", \"label\": 1, \"label_name\": \"defective\", \"maskname\": \"disc/ground_truth/scratch/001_mask.png\", \"clsname\": \"disc\"}");

        var read = MetaFile.Open(meta, root);
        Assert.Equal(test.Samples, read.Samples);
    }

    [Fact]
    public void Meta_file_defaults_the_class_from_the_path_and_names_bad_lines()
    {
        var meta = Path.Combine(temp.Path, "train.json");
        File.WriteAllText(meta, "{\"filename\": \"disc/train/good/000.png\", \"label\": 0}\n\n{\"filename\": \"stripes/train/good/001.png\", \"label\": 0, \"label_name\": \"good\", \"clsname\": \"renamed\"}\n");
        var read = MetaFile.Open(meta, root);
        Assert.Equal(new[] { "disc", "renamed" }, read.Samples.Select(s => s.ClassName));
        Assert.All(read.Samples, s => Assert.Equal("good", s.DefectType));

        File.AppendAllText(meta, "{\"filename\": \"disc/train/good/001.png\", \"label\": 7}\n");
        var error = Assert.Throws<FormatException>(() => MetaFile.Open(meta, root));
        Assert.Contains("line 4", error.Message, StringComparison.Ordinal);
        Assert.Contains(meta, error.Message, StringComparison.Ordinal);

        var skipped = MetaFile.Open(meta, root, new MetaFileOptions { OnBadInput = BadInputPolicy.Skip });
        Assert.Equal(2, skipped.Samples.Count);
        Assert.Equal($"{meta}:4", Assert.Single(skipped.Skipped).Path);
    }

    [Fact]
    public void Meta_file_lines_without_a_mask_have_image_level_labels_unless_masks_are_required()
    {
        var meta = Path.Combine(temp.Path, "image-level.json");
        File.WriteAllText(meta, "{\"filename\": \"disc/test/scratch/000.png\", \"label\": 1, \"clsname\": \"disc\"}\n{\"filename\": \"disc/test/good/000.png\", \"label\": 0}\n");
        var read = MetaFile.Open(meta, root);
        Assert.Equal(new[] { false, true }, read.Samples.Select(s => s.HasPixelLabels));
        Assert.Null(read.Samples[0].MaskPath);

        var error = Assert.Throws<InvalidDataException>(() => MetaFile.Open(meta, root, new MetaFileOptions { MissingMasks = MissingMaskPolicy.Throw }));
        Assert.Contains($"'{meta}' line 1", error.Message, StringComparison.Ordinal);
        Assert.Contains("maskname", error.Message, StringComparison.Ordinal);
        var skipped = MetaFile.Open(meta, root, new MetaFileOptions { MissingMasks = MissingMaskPolicy.Throw, OnBadInput = BadInputPolicy.Skip });
        Assert.True(Assert.Single(skipped.Samples).HasPixelLabels);
        Assert.Equal($"{meta}:1", Assert.Single(skipped.Skipped).Path);
    }

    [Fact]
    public void Meta_file_reports_missing_images_and_masks()
    {
        var meta = Path.Combine(temp.Path, "missing.json");
        File.WriteAllText(meta, "{\"filename\": \"disc/test/scratch/000.png\", \"label\": 1, \"maskname\": \"disc/ground_truth/scratch/999_mask.png\", \"clsname\": \"disc\"}\n{\"filename\": \"disc/test/nothing.png\", \"label\": 0}\n{\"filename\": \"disc/test/good/000.png\", \"label\": 0}\n");
        var error = Assert.Throws<FileNotFoundException>(() => MetaFile.Open(meta, root));
        Assert.Contains("999_mask.png", error.Message, StringComparison.Ordinal);
        var skipped = MetaFile.Open(meta, root, new MetaFileOptions { OnBadInput = BadInputPolicy.Skip });
        Assert.Single(skipped.Samples);
        Assert.Equal(2, skipped.Skipped.Count);
        Assert.EndsWith("999_mask.png", skipped.Skipped[0].Path, StringComparison.Ordinal);
        Assert.EndsWith("nothing.png", skipped.Skipped[1].Path, StringComparison.Ordinal);
    }
}
