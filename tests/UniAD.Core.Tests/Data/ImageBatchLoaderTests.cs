using UniAD.Core.Data;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Data;

public sealed class ImageBatchLoaderTests : IDisposable
{
    private static readonly PreprocessOptions Size24 = new() { InputSize = new GridSize(24, 24) };
    private readonly TempFolder temp = new();
    private readonly ImageSource source;

    public ImageBatchLoaderTests()
    {
        var root = temp.Folder("items");
        for (int i = 0; i < 7; i++)
        {
            TestImages.WritePng(temp.File("items", "good", $"{i:D3}.png"), TestImages.Pattern(30 + i, 28, i));
        }

        for (int i = 0; i < 3; i++)
        {
            TestImages.WritePng(temp.File("items", "defect_dent", $"{i:D3}.png"), TestImages.Pattern(30, 30, 10 + i));
        }

        TestImages.WriteMask(temp.File("items", "ground_truth", "defect_dent", "000_mask.png"), 30, 30, (x, y) => x < 10 && y < 5);
        source = ImageFolder.Open(root);
    }

    public void Dispose() => temp.Dispose();

    [Fact]
    public void Batches_carry_images_masks_labels_classes_and_paths_in_order()
    {
        var loader = new ImageBatchLoader(source, new LoaderOptions { BatchSize = 4, Preprocess = Size24 });
        var batches = loader.Batches().ToList();
        try
        {
            Assert.Equal(new[] { 4, 4, 2 }, batches.Select(b => b.Count));
            Assert.Equal(source.Samples.Select(s => s.ImagePath), batches.SelectMany(b => b.Paths));
            Assert.All(batches.SelectMany(b => b.ClassNames), c => Assert.Equal("items", c));
            Assert.Equal(new long[] { 0, 0, 0, 0, 0, 0, 0, 1, 1, 1 }, batches.SelectMany(b => b.Labels.data<long>().ToArray()));
            var last = batches[2];
            Assert.Equal(new long[] { 2, 3, 24, 24 }, last.Images.shape);
            Assert.Equal(new long[] { 2, 1, 24, 24 }, last.Masks!.shape);

            // Each image is exactly the single-image preprocessing of its file.
            using var scope = NewDisposeScope();
            for (int i = 0; i < batches[1].Count; i++)
            {
                var alone = ImagePreprocessor.LoadImage(batches[1].Paths[i], Size24);
                Assert.True(batches[1].Images[i].equal(alone).all().item<bool>());
            }

            // defect_dent/000 has a mask (10 x 5 of 30 x 30, nearest to 24 x 24: 8 x 4 = 32 pixels);
            // defect_dent/001 has none: no mask is invented (the reference made it all anomalous); its row is
            // zeros and marked as not ground truth. Good images: all zeros, ground truth.
            var dentMask = batches[1].Masks![3].sum().item<float>();
            Assert.Equal(32f, dentMask);
            Assert.True(batches[1].HasMask[3]);
            Assert.False(last.Samples[0].HasPixelLabels);
            Assert.False(last.HasMask[0]);
            Assert.Equal(0f, last.Masks[0].sum().item<float>());
            Assert.Equal(0f, batches[0].Masks!.sum().item<float>());
            Assert.All(batches[0].HasMask, Assert.True);
        }
        finally
        {
            batches.ForEach(b => b.Dispose());
        }
    }

    [Fact]
    public void Shuffle_is_seeded_per_epoch_and_independent_of_parallelism_and_prefetch()
    {
        var options = new LoaderOptions { BatchSize = 3, Shuffle = true, Seed = 5, Preprocess = Size24 };
        var order0 = Paths(new ImageBatchLoader(source, options), 0);
        var order1 = Paths(new ImageBatchLoader(source, options), 1);
        Assert.Equal(order0, Paths(new ImageBatchLoader(source, options), 0));
        Assert.NotEqual(order0, order1);
        Assert.Equal(source.Samples.Select(s => s.ImagePath).Order(), order0.Order());
        Assert.NotEqual(order0, Paths(new ImageBatchLoader(source, options with { Seed = 6 }), 0));

        var sequential = Tensors(new ImageBatchLoader(source, options with { MaxDegreeOfParallelism = 1, Prefetch = false }), 1);
        var parallel = Tensors(new ImageBatchLoader(source, options with { MaxDegreeOfParallelism = 4, Prefetch = true }), 1);
        Assert.Equal(sequential, parallel);
    }

    [Fact]
    public void Drop_last_and_progress()
    {
        var reports = new List<DataProgress>();
        var loader = new ImageBatchLoader(source, new LoaderOptions { BatchSize = 4, DropLast = true, Preprocess = Size24 });
        var batches = loader.Batches(progress: new SyncProgress(reports)).ToList();
        Assert.Equal(new[] { 4, 4 }, batches.Select(b => b.Count));
        batches.ForEach(b => b.Dispose());
        Assert.Equal(new[] { 4, 8 }, reports.Select(r => r.Completed));
        Assert.All(reports, r => Assert.Equal(10, r.Total));
    }

    [Fact]
    public void Augmentations_are_off_by_default_seeded_and_move_image_and_mask_together()
    {
        var dent = new ImageSource("dent", source.Samples.Where(s => s.MaskPath is not null));
        var plain = Tensors(new ImageBatchLoader(dent, new LoaderOptions { Preprocess = Size24 }), 0);
        var geometry = new AugmentationOptions { HorizontalFlip = true, VerticalFlip = true, Rotate90 = true };
        var options = new LoaderOptions { Preprocess = Size24, Augmentation = geometry, Seed = 1 };
        Assert.Equal(Tensors(new ImageBatchLoader(dent, options), 3), Tensors(new ImageBatchLoader(dent, options), 3));

        // Over a few epochs the draws differ; each time the mask's anomalous corner moves with the image.
        using var scope = NewDisposeScope();
        var seen = new HashSet<string>();
        var baseImage = ImagePreprocessor.LoadImage(dent.Samples[0].ImagePath, Size24);
        var baseMask = ImagePreprocessor.LoadMask(dent.Samples[0].MaskPath!, Size24);
        for (int epoch = 0; epoch < 12; epoch++)
        {
            using var batch = new ImageBatchLoader(dent, options).Batches(epoch).Single();
            var image = batch.Images[0];
            var mask = batch.Masks![0];
            var match = Candidates(baseImage, baseMask).First(c => c.Image.equal(image).all().item<bool>());
            Assert.True(match.Mask.equal(mask).all().item<bool>(), $"epoch {epoch}: the mask did not follow the image ({match.Name})");
            seen.Add(match.Name);
        }

        Assert.True(seen.Count >= 3, $"only {string.Join(", ", seen)} in 12 epochs");
        Assert.Equal(plain, Tensors(new ImageBatchLoader(dent, new LoaderOptions { Preprocess = Size24, Seed = 1 }), 3));
    }

    [Fact]
    public void Colour_jitter_changes_colours_within_range_and_is_seeded()
    {
        var options = new LoaderOptions
        {
            Preprocess = Size24,
            Augmentation = new AugmentationOptions { ColorJitter = new ColorJitterOptions { Brightness = 0.4, Contrast = 0.4, Saturation = 0.4, Hue = 0.1 } },
        };
        var plain = Tensors(new ImageBatchLoader(source, options with { Augmentation = AugmentationOptions.None }), 0);
        var jittered = Tensors(new ImageBatchLoader(source, options), 0);
        Assert.Equal(jittered, Tensors(new ImageBatchLoader(source, options), 0));
        Assert.NotEqual(plain, jittered);

        // Values stay those of [0, 1] images after normalisation.
        float low = (0f - 0.485f) / 0.229f, high = (1f - 0.406f) / 0.225f;
        Assert.All(jittered, v => Assert.InRange(v, low - 1e-4f, high + 1e-4f));
        Assert.Throws<ArgumentException>(() => new ColorJitterOptions { Hue = 0.7 }.Validate());
    }

    [Fact]
    public void Options_are_validated_with_clear_messages()
    {
        Assert.Contains("BatchSize", Assert.Throws<ArgumentException>(() => new ImageBatchLoader(source, new LoaderOptions { BatchSize = 0 })).Message, StringComparison.Ordinal);
        Assert.Contains("square", Assert.Throws<ArgumentException>(() => new ImageBatchLoader(source, new LoaderOptions
        {
            Preprocess = new PreprocessOptions { InputSize = new GridSize(24, 32) },
            Augmentation = new AugmentationOptions { Rotate90 = true },
        })).Message, StringComparison.Ordinal);
        Assert.Contains("Std", Assert.Throws<ArgumentException>(() => new PreprocessOptions { Std = new[] { 1.0, 0.0, 1.0 } }.Validate()).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new PreprocessOptions { Mean = new[] { 0.5 } }.Validate());
    }

    [Fact]
    public void Cancellation_stops_the_epoch()
    {
        using var cts = new CancellationTokenSource();
        var loader = new ImageBatchLoader(source, new LoaderOptions { BatchSize = 2, Preprocess = Size24 });
        var count = 0;
        Assert.ThrowsAny<OperationCanceledException>(() =>
        {
            foreach (var batch in loader.Batches(cancellationToken: cts.Token))
            {
                batch.Dispose();
                count++;
                cts.Cancel();
            }
        });
        Assert.True(count <= 2);
    }

    [Fact]
    public void Batches_own_their_tensors()
    {
        var loader = new ImageBatchLoader(source, new LoaderOptions { BatchSize = 5, Preprocess = Size24 });
        ImageBatch first;
        using (var scope = NewDisposeScope())
        {
            first = loader.Batches().First();
        }

        // The caller's scope did not take the batch's tensors: they are alive until the batch is disposed.
        Assert.False(first.Images.IsInvalid);
        Assert.Equal(5, first.Images.shape[0]);
        first.Dispose();
        Assert.True(first.Images.IsInvalid);
    }

    private static List<string> Paths(ImageBatchLoader loader, int epoch)
    {
        var batches = loader.Batches(epoch).ToList();
        var paths = batches.SelectMany(b => b.Paths).ToList();
        batches.ForEach(b => b.Dispose());
        return paths;
    }

    private static List<float> Tensors(ImageBatchLoader loader, int epoch)
    {
        var values = new List<float>();
        foreach (var batch in loader.Batches(epoch))
        {
            values.AddRange(batch.Images.data<float>().ToArray());
            if (batch.Masks is not null)
            {
                values.AddRange(batch.Masks.data<float>().ToArray());
            }

            batch.Dispose();
        }

        return values;
    }

    // The eight flips and quarter turns of an image and its mask, named.
    private static IEnumerable<(string Name, Tensor Image, Tensor Mask)> Candidates(Tensor image, Tensor mask)
    {
        foreach (var flipX in new[] { false, true })
        {
            foreach (var flipY in new[] { false, true })
            {
                for (int turns = 0; turns < 4; turns++)
                {
                    yield return ($"flipX {flipX} flipY {flipY} turns {turns}", Apply(image, flipX, flipY, turns), Apply(mask, flipX, flipY, turns));
                }
            }
        }
    }

    private static Tensor Apply(Tensor t, bool flipX, bool flipY, int turns)
    {
        if (flipX)
        {
            t = t.flip(2);
        }

        if (flipY)
        {
            t = t.flip(1);
        }

        return turns == 0 ? t : t.rot90(turns, (1, 2));
    }
}
