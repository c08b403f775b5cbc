using UniAD.Core.Data;

namespace UniAD.Core.Tests.Data;

public sealed class SyntheticDefectsTests
{
    [Fact]
    public void Same_seed_renders_the_same_pixels_and_another_seed_varies_them()
    {
        var a = SyntheticDefects.Render(SyntheticClass.Tile, SyntheticDefect.Spot, 48, seed: 3);
        var b = SyntheticDefects.Render(SyntheticClass.Tile, SyntheticDefect.Spot, 48, seed: 3);
        var c = SyntheticDefects.Render(SyntheticClass.Tile, SyntheticDefect.Spot, 48, seed: 4);
        Assert.True(a.Image.Pixels.SequenceEqual(b.Image.Pixels));
        Assert.Equal(a.Mask, b.Mask);
        Assert.False(a.Image.Pixels.SequenceEqual(c.Image.Pixels));
    }

    [Theory]
    [InlineData(SyntheticClass.Stripes)]
    [InlineData(SyntheticClass.Grain)]
    [InlineData(SyntheticClass.Disc)]
    [InlineData(SyntheticClass.Tile)]
    public void Every_anomaly_changes_exactly_the_masked_pixels(SyntheticClass kind)
    {
        foreach (var defect in Enum.GetValues<SyntheticDefect>())
        {
            for (long seed = 0; seed < 3; seed++)
            {
                var normal = SyntheticDefects.Render(kind, null, 64, seed);
                var (image, mask) = SyntheticDefects.Render(kind, defect, 64, seed);
                Assert.Null(normal.Mask);
                Assert.NotNull(mask);
                int inside = 0, changedInside = 0;
                for (int i = 0; i < mask!.Length; i++)
                {
                    bool changed = !image.Pixels.Slice(4 * i, 3).SequenceEqual(normal.Image.Pixels.Slice(4 * i, 3));
                    if (mask[i] == 0)
                    {
                        Assert.False(changed, $"{kind}/{defect} seed {seed}: pixel {i} changed outside the mask");
                    }
                    else
                    {
                        inside++;
                        changedInside += changed ? 1 : 0;
                    }
                }

                Assert.True(inside > 0, $"{kind}/{defect} seed {seed}: empty mask");
                Assert.True(changedInside >= inside / 2, $"{kind}/{defect} seed {seed}: only {changedInside} of {inside} masked pixels changed");
            }
        }
    }

    [Fact]
    public void Classes_look_different_and_normal_images_vary()
    {
        var means = Enum.GetValues<SyntheticClass>().Select(k => MeanColour(SyntheticDefects.Render(k, null, 64, 1).Image)).ToList();
        for (int i = 0; i < means.Count; i++)
        {
            for (int j = i + 1; j < means.Count; j++)
            {
                double distance = Math.Abs(means[i].R - means[j].R) + Math.Abs(means[i].G - means[j].G) + Math.Abs(means[i].B - means[j].B);
                Assert.True(distance > 20, $"classes {i} and {j} have similar mean colours ({distance:F1})");
            }
        }

        foreach (var kind in Enum.GetValues<SyntheticClass>())
        {
            var first = SyntheticDefects.Render(kind, null, 64, 10).Image;
            var second = SyntheticDefects.Render(kind, null, 64, 11).Image;
            Assert.False(first.Pixels.SequenceEqual(second.Pixels));
        }
    }

    [Fact]
    public void Generate_writes_the_mvtec_layout_and_refuses_a_used_folder()
    {
        using var temp = new TempFolder();
        var root = Path.Combine(temp.Path, "synthetic");
        var progress = new List<DataProgress>();
        var written = SyntheticDefects.Generate(root, new SyntheticDatasetOptions { ImageSize = 32, TrainPerClass = 3, TestGoodPerClass = 2, TestPerDefect = 1, Seed = 9 }, new SyncProgress(progress));
        Assert.Equal(new[] { "stripes", "grain", "disc", "tile" }, written.Classes);
        Assert.Equal(new[] { "scratch", "spot", "missing_part", "colour_change" }, written.DefectTypes);
        Assert.Equal(12, written.TrainImages);
        Assert.Equal(4 * (2 + 4), written.TestImages);
        Assert.Equal(written.TrainImages + written.TestImages, progress.Count);
        Assert.True(File.Exists(Path.Combine(root, "disc", "train", "good", "002.png")));
        Assert.True(File.Exists(Path.Combine(root, "tile", "ground_truth", "missing_part", "000_mask.png")));
        Assert.Empty(Directory.GetFiles(root, "*.tmp", SearchOption.AllDirectories));

        var mask = ImageDecoder.Decode(Path.Combine(root, "grain", "ground_truth", "spot", "000_mask.png"));
        Assert.All(Enumerable.Range(0, 32 * 32), i => Assert.Contains(mask[i % 32, i / 32].R, new byte[] { 0, 255 }));

        var again = Path.Combine(temp.Path, "again");
        SyntheticDefects.Generate(again, new SyntheticDatasetOptions { ImageSize = 32, TrainPerClass = 3, TestGoodPerClass = 2, TestPerDefect = 1, Seed = 9 });
        foreach (var file in Directory.GetFiles(root, "*.png", SearchOption.AllDirectories))
        {
            Assert.Equal(File.ReadAllBytes(file), File.ReadAllBytes(Path.Combine(again, Path.GetRelativePath(root, file))));
        }

        var error = Assert.Throws<IOException>(() => SyntheticDefects.Generate(root));
        Assert.Contains(root, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Options_are_validated()
    {
        Assert.Throws<ArgumentException>(() => new SyntheticDatasetOptions { ImageSize = 8 }.Validate());
        Assert.Throws<ArgumentException>(() => new SyntheticDatasetOptions { Classes = Array.Empty<SyntheticClass>() }.Validate());
        Assert.Throws<ArgumentException>(() => new SyntheticDatasetOptions { TrainPerClass = -1 }.Validate());
    }

    private static (double R, double G, double B) MeanColour(RgbImage image)
    {
        double r = 0, g = 0, b = 0;
        for (int y = 0; y < image.Height; y++)
        {
            for (int x = 0; x < image.Width; x++)
            {
                var p = image[x, y];
                (r, g, b) = (r + p.R, g + p.G, b + p.B);
            }
        }

        int n = image.Width * image.Height;
        return (r / n, g / n, b / n);
    }
}

/// <summary>An IProgress that records reports synchronously (Progress&lt;T&gt; posts them to the thread pool).</summary>
public sealed class SyncProgress(List<DataProgress> reports) : IProgress<DataProgress>
{
    public void Report(DataProgress value)
    {
        lock (reports)
        {
            reports.Add(value);
        }
    }
}
