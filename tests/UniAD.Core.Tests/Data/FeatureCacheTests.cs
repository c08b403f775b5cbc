using UniAD.Core.Data;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Data;

public sealed class FeatureCacheTests : IDisposable
{
    private static readonly PreprocessOptions Size16 = new() { InputSize = new GridSize(16, 16) };
    private readonly TempFolder temp = new();
    private readonly ImageSource source;
    private int extractedImages;

    public FeatureCacheTests()
    {
        for (int i = 0; i < 9; i++)
        {
            TestImages.WritePng(temp.File("parts", "good", $"{i:D3}.png"), TestImages.Pattern(20, 20, i));
        }

        TestImages.WritePng(temp.File("parts", "defect", "000.png"), TestImages.Pattern(20, 20, 50));
        source = ImageFolder.Open(Path.Combine(temp.Path, "parts"));
    }

    public void Dispose() => temp.Dispose();

    [Fact]
    public void Memory_cache_runs_the_extractor_once_per_image_and_returns_its_features()
    {
        var cache = new FeatureCache(Extractor, "pool-v1", new FeatureCacheOptions { BatchSize = 4, Preprocess = Size16 });
        var report = cache.Populate(source);
        Assert.Equal((10, 0, 0, 10), (report.Total, report.InMemory, report.FromDisk, report.Computed));
        Assert.Equal(10, extractedImages);
        Assert.Equal(10, cache.Count);
        Assert.Equal(10L * 3 * 4 * 4 * sizeof(float), cache.MemoryBytes);

        for (int epoch = 0; epoch < 2; epoch++)
        {
            var batches = cache.Batches(source, batchSize: 4, shuffle: true, seed: 3, epoch: epoch).ToList();
            Assert.Equal(new[] { 4, 4, 2 }, batches.Select(b => b.Count));
            using var scope = NewDisposeScope();
            foreach (var batch in batches)
            {
                Assert.Equal(new long[] { batch.Count, 3, 4, 4 }, batch.Features.shape);
                for (int i = 0; i < batch.Count; i++)
                {
                    var direct = Pool(ImagePreprocessor.LoadImage(batch.Paths[i], Size16).unsqueeze(0))[0];
                    Assert.True(batch.Features[i].allclose(direct, rtol: 0, atol: 1e-6), $"features of {batch.Paths[i]}");
                    Assert.Equal(batch.Samples[i].Label, batch.Labels[i].item<long>());
                }

                batch.Dispose();
            }
        }

        Assert.Equal(10, extractedImages); // epochs never ran the extractor again
        var order0 = cache.Batches(source, 10, shuffle: true, seed: 3, epoch: 0).Single();
        var order1 = cache.Batches(source, 10, shuffle: true, seed: 3, epoch: 1).Single();
        Assert.NotEqual(order0.Paths, order1.Paths);
        order0.Dispose();
        order1.Dispose();
    }

    [Fact]
    public void Disk_cache_survives_a_new_cache_and_is_keyed_by_extractor_and_content()
    {
        var folder = Path.Combine(temp.Path, "cache");
        var options = new FeatureCacheOptions { Directory = folder, BatchSize = 3, Preprocess = Size16 };
        new FeatureCache(Extractor, "pool-v1", options).Populate(source);
        Assert.Equal(10, extractedImages);
        var first = new FeatureCache(Extractor, "pool-v1", options);
        Assert.Equal(10, Directory.GetFiles(first.Folder!, "*.f32").Length);
        Assert.Empty(Directory.GetFiles(folder, "*.tmp", SearchOption.AllDirectories));

        // A new cache with the same key reads everything from disk.
        var report = first.Populate(source);
        Assert.Equal((0, 10, 0), (report.InMemory, report.FromDisk, report.Computed));
        Assert.Equal(10, extractedImages);

        // Disk only (nothing kept in memory): epochs read the files.
        var diskOnly = new FeatureCache(Extractor, "pool-v1", options with { KeepInMemory = false });
        var fromDisk = diskOnly.Batches(source, 10).Single();
        Assert.Equal(0, diskOnly.Count);
        Assert.Equal(10, extractedImages);
        using (var scope = NewDisposeScope())
        {
            var direct = Pool(ImagePreprocessor.LoadImage(source.Samples[4].ImagePath, Size16).unsqueeze(0))[0];
            Assert.True(fromDisk.Features[4].allclose(direct, rtol: 0, atol: 1e-6));
        }

        fromDisk.Dispose();

        // Another key (a changed backbone) computes again, in its own folder.
        var other = new FeatureCache(Extractor, "pool-v2", options);
        Assert.NotEqual(first.Folder, other.Folder);
        Assert.Equal(10, other.Populate(source).Computed);
        Assert.Equal(20, extractedImages);

        // A changed image is recomputed, alone (a new source object: content keys are taken once per source).
        var changed = source.Samples[2].ImagePath;
        TestImages.WritePng(changed, TestImages.Pattern(20, 20, 99));
        File.SetLastWriteTimeUtc(changed, DateTime.UtcNow.AddMinutes(5));
        var reopened = ImageFolder.Open(Path.Combine(temp.Path, "parts"));
        var again = new FeatureCache(Extractor, "pool-v1", options).Populate(reopened);
        Assert.Equal((9, 1), (again.FromDisk, again.Computed));

        // Truncated files are recomputed, not trusted.
        foreach (var file in Directory.GetFiles(first.Folder!, "*.f32"))
        {
            File.WriteAllBytes(file, File.ReadAllBytes(file)[..60]);
        }

        var repaired = new FeatureCache(Extractor, "pool-v1", options).Populate(reopened);
        Assert.Equal((0, 10), (repaired.FromDisk, repaired.Computed));
    }

    [Fact]
    public void Bad_images_are_skipped_from_the_cache_and_extractor_output_is_checked()
    {
        File.WriteAllBytes(temp.File("parts", "good", "004b.png"), new byte[] { 1, 2, 3 });
        var withBad = ImageFolder.Open(Path.Combine(temp.Path, "parts"));
        var strict = new FeatureCache(Extractor, "pool", new FeatureCacheOptions { Preprocess = Size16 });
        Assert.Throws<ImageFileException>(() => strict.Populate(withBad));

        var lenient = new FeatureCache(Extractor, "pool", new FeatureCacheOptions { Preprocess = Size16, OnBadInput = BadInputPolicy.Skip });
        var report = lenient.Populate(withBad);
        Assert.Equal((11, 10, 1), (report.Total, report.Computed, report.Skipped.Count));
        var batches = lenient.Batches(withBad, 4).ToList();
        Assert.Equal(10, batches.Sum(b => b.Count));
        batches.ForEach(b => b.Dispose());
        Assert.EndsWith("004b.png", Assert.Single(lenient.Skipped).Path, StringComparison.Ordinal);

        var wrong = new FeatureCache(images => images.mean(new long[] { 1 }), "flat", new FeatureCacheOptions { Preprocess = Size16 });
        Assert.Contains("C x h x w", Assert.Throws<InvalidOperationException>(() => wrong.Populate(source)).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new FeatureCache(Extractor, "", null));
        Assert.Throws<ArgumentException>(() => new FeatureCacheOptions { KeepInMemory = false }.Validate());
    }

    private Tensor Extractor(Tensor images)
    {
        Interlocked.Add(ref extractedImages, (int)images.shape[0]);
        return Pool(images);
    }

    // A stand-in backbone: 4 x 4 average pooling (stride 4) of the 16 x 16 input: B x 3 x 4 x 4.
    private static Tensor Pool(Tensor images) => nn.functional.avg_pool2d(images, 4);
}
