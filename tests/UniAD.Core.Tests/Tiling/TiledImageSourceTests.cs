using UniAD.Core.Data;
using UniAD.Core.Tiling;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Tiling;

public sealed class TiledImageSourceTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("uniad-tiles-").FullName;

    [Fact]
    public void Every_tile_is_a_sample_with_its_own_key_and_preprocesses_like_a_crop_of_the_whole_image()
    {
        var source = Source(("a.png", 100, 150), ("b.png", 64, 64));
        var options = new TilingOptions { Stride = new GridSize(48, 48) };
        var tiled = new TiledImageSource(source, options, new GridSize(64, 64));
        // a: 150 x 100 (h x w) -> rows 0, 48, 86 and columns 0, 36: 6 tiles; b: one tile.
        Assert.Equal(7, tiled.Samples.Count);
        Assert.Equal(2, tiled.ImagesTiled);
        Assert.Equal(7, tiled.Samples.Select(tiled.ContentKey).Distinct().Count());
        Assert.All(tiled.Samples, s => Assert.Null(s.MaskPath));
        Assert.EndsWith("a.png#tile@36,86", tiled.Samples[5].ImagePath);
        var (image, grid, tile) = tiled.TileOf(tiled.Samples[5]);
        Assert.Same(source.Samples[0], image);
        Assert.Equal(new TileRect(36, 86, 64, 64), tile);
        Assert.Equal(6, grid.Count);

        // The loader turns the tiles into exactly the tensors Tiler.Cut makes of the whole normalised image.
        var preprocess = new PreprocessOptions { InputSize = new GridSize(64, 64) };
        var loader = new ImageBatchLoader(tiled, new LoaderOptions { BatchSize = 4, LoadMasks = false, Preprocess = preprocess });
        using var scope = NewDisposeScope();
        var loaded = cat(loader.Batches().Select(b => b.Images).ToArray(), 0);
        var whole = ImagePreprocessor.ToTensor(ImageDecoder.Decode(source.Samples[0].ImagePath), preprocess with { InputSize = new GridSize(150, 100) });
        var cut = Tiler.Cut(whole, grid);
        Assert.True(loaded.narrow(0, 0, 6).equal(cut).all().item<bool>());
    }

    [Fact]
    public void Bad_images_are_refused_or_skipped_once()
    {
        var source = Source(("a.png", 80, 80), ("b.png", 80, 80));
        var broken = Path.Combine(root, "broken.png");
        File.WriteAllBytes(broken, new byte[] { 1, 2, 3 });
        var withBroken = new ImageSource(root, source.Samples.Append(new ImageSample(broken, null, 0, "part", "good")));
        var options = new TilingOptions();
        var error = Assert.Throws<ImageFileException>(() => new TiledImageSource(withBroken, options, new GridSize(64, 64)));
        Assert.Equal(broken, error.FilePath);

        var skipping = new TiledImageSource(withBroken, options, new GridSize(64, 64), onBadInput: BadInputPolicy.Skip);
        Assert.Equal(2 * 4, skipping.Samples.Count);
        Assert.Equal(broken, Assert.Single(skipping.Skipped).Path);
        Assert.Throws<ArgumentException>(() => skipping.ReadImage(withBroken.Samples[0], ImageDecoder.DefaultMaxPixels)); // not a tile
    }

    private ImageSource Source(params (string Name, int Width, int Height)[] files)
    {
        var samples = new List<ImageSample>();
        foreach (var (name, width, height) in files)
        {
            var pixels = new byte[width * height * 4];
            var random = new Random(name.GetHashCode(StringComparison.Ordinal));
            random.NextBytes(pixels);
            var path = Path.Combine(root, name);
            ImageWriter.WritePng(path, new RgbImage(width, height, pixels));
            samples.Add(new ImageSample(path, null, 0, "part", "good"));
        }

        return new ImageSource(root, samples);
    }

    public void Dispose() => Directory.Delete(root, recursive: true);
}
