using UniAD.Core.Data;
using UniAD.Core.Tiling;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Tiling;

public sealed class TilerTests
{
    [Fact]
    public void Constant_tile_maps_stitch_to_the_constant_exactly()
    {
        using var scope = NewDisposeScope();
        var grid = TileGrid.Create(new GridSize(70, 45), new GridSize(16, 16), new GridSize(5, 7));
        var maps = full(new long[] { grid.Count, 16, 16 }, 0.1f, float32);
        var stitched = Tiler.Stitch(maps, grid);
        Assert.Equal(new long[] { 70, 45 }, stitched.shape);
        Assert.Equal(float32, stitched.dtype);
        Assert.All(stitched.data<float>().ToArray(), v => Assert.Equal(0.1f, v)); // up to 3 x 4 overlaps averaged in float64: no drift
    }

    [Fact]
    public void Overlaps_are_averaged()
    {
        // 3 x 3 image, 2 x 2 tiles every pixel: tiles (row-major) of constant 1, 2, 3 and 4.
        using var scope = NewDisposeScope();
        var grid = TileGrid.Create(new GridSize(3, 3), new GridSize(2, 2), new GridSize(1, 1));
        Assert.Equal(4, grid.Count);
        var maps = stack(new[] { 1f, 2f, 3f, 4f }.Select(v => full(new long[] { 1, 2, 2 }, v, float32)).ToArray()); // N x 1 x h x w is accepted too
        var stitched = Tiler.Stitch(maps, grid).data<float>().ToArray();
        Assert.Equal(new[]
        {
            1f, 1.5f, 2f,      // top row: tile 1 alone, tiles 1 + 2, tile 2 alone
            2f, 2.5f, 3f,      // middle row: 1 + 3, all four, 2 + 4
            3f, 3.5f, 4f,
        }, stitched);
    }

    [Fact]
    public void Interior_margins_give_way_to_the_neighbouring_tile()
    {
        // A 4 x 6 image, 4 x 4 tiles every 2 columns: tile 0 covers columns 0-3 (constant 1), tile 1 columns 2-5
        // (constant 3). With margin 1, tile 0's column 3 and tile 1's column 2 lie on interior borders; the rows
        // and the image's own left and right borders are not interior.
        using var scope = NewDisposeScope();
        var grid = TileGrid.Create(new GridSize(4, 6), new GridSize(4, 4), new GridSize(4, 2));
        Assert.Equal(2, grid.Count);
        var maps = stack(new[] { full(new long[] { 4, 4 }, 1f, float32), full(new long[] { 4, 4 }, 3f, float32) });
        const double eps = Tiler.MarginWeight;
        var expectedRow = new[] { 1.0, 1.0, (1 + (3 * eps)) / (1 + eps), (eps + 3) / (1 + eps), 3.0, 3.0 };
        var stitched = Tiler.Stitch(maps, grid, margin: 1).data<float>().ToArray();
        for (int y = 0; y < 4; y++)
        {
            for (int x = 0; x < 6; x++)
            {
                Assert.Equal(expectedRow[x], stitched[(y * 6) + x], 1e-5);
            }
        }

        // Margin 0 is the plain mean; a margin of half a tile or more is refused, naming the value.
        Assert.Equal(new[] { 1f, 1f, 2f, 2f, 3f, 3f }, Tiler.Stitch(maps, grid).data<float>().ToArray().Take(6));
        Assert.Contains("margin = 2", Assert.Throws<ArgumentException>(() => Tiler.Stitch(maps, grid, margin: 2)).Message);
        Assert.Contains("Margin = 2", Assert.Throws<ArgumentException>(() => new TilingOptions { Margin = 2 }.Validate(new GridSize(4, 4))).Message);
        Assert.Contains("Margin = -1", Assert.Throws<ArgumentException>(() => new TilingOptions { Margin = -1 }.Validate(new GridSize(4, 4))).Message);
    }

    [Fact]
    public void Stitching_is_the_exact_inverse_of_cutting()
    {
        using var scope = NewDisposeScope();
        var size = new GridSize(37, 50);
        var positions = arange(size.Count, float32).reshape(1, size.Height, size.Width); // value = y * 50 + x
        foreach (var placement in Enum.GetValues<TilePlacement>())
        {
            var grid = TileGrid.Create(size, new GridSize(16, 16), new GridSize(11, 7), placement);
            var tiles = Tiler.Cut(positions, grid);
            Assert.Equal(new long[] { grid.Count, 1, 16, 16 }, tiles.shape);
            Assert.Equal(grid[5].Y * 50f + grid[5].X, tiles[5, 0, 0, 0].item<float>());
            var stitched = Tiler.Stitch(tiles, grid);
            Assert.True(stitched.equal(positions[0]).all().item<bool>(), $"{placement}: stitched map differs from the original");
        }
    }

    [Fact]
    public void Crop_copies_the_tile_pixels()
    {
        var pixels = new byte[7 * 5 * 4];
        for (int i = 0; i < pixels.Length; i++)
        {
            pixels[i] = (byte)i;
        }

        var image = new RgbImage(7, 5, pixels);
        var tile = Tiler.Crop(image, new TileRect(2, 1, 4, 3));
        Assert.Equal((4, 3), (tile.Width, tile.Height));
        for (int y = 0; y < 3; y++)
        {
            for (int x = 0; x < 4; x++)
            {
                Assert.Equal(image[x + 2, y + 1], tile[x, y]);
            }
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => Tiler.Crop(image, new TileRect(4, 0, 4, 3)));
    }

    [Fact]
    public void Working_image_is_resized_with_the_PIL_filter_and_limits_are_enforced()
    {
        var image = new RgbImage(50, 125, Enumerable.Range(0, 50 * 125 * 4).Select(i => (byte)(i * 7)).ToArray());
        var tile = new GridSize(16, 16);
        var resized = Tiler.WorkingImage(image, new TilingOptions { ResizeWidth = 20 }, tile, "part.png");
        Assert.Equal((20, 50), (resized.Width, resized.Height));
        var pil = ImagePreprocessor.Resize(image, 20, 50);
        Assert.True(resized.Pixels.SequenceEqual(pil.Pixels));
        Assert.Same(image, Tiler.WorkingImage(image, new TilingOptions(), tile, "part.png")); // no resize: the image itself

        var tooMany = Assert.Throws<ImageFileException>(() => Tiler.WorkingImage(image, new TilingOptions { Stride = new GridSize(1, 1), MaxTilesPerImage = 1000 }, tile, "part.png"));
        Assert.Equal("part.png", tooMany.FilePath);
        Assert.Contains("MaxTilesPerImage = 1000", tooMany.Message);
        var tooLarge = Assert.Throws<ImageFileException>(() => Tiler.WorkingImage(image, new TilingOptions { MaxPixels = 5000 }, tile, "part.png"));
        Assert.Contains("MaxPixels = 5000", tooLarge.Message);
    }

    [Fact]
    public void Stitch_refuses_maps_that_do_not_fit_the_grid()
    {
        using var scope = NewDisposeScope();
        var grid = TileGrid.Create(new GridSize(32, 32), new GridSize(16, 16), new GridSize(16, 16));
        Assert.Throws<ArgumentException>(() => Tiler.Stitch(zeros(3, 16, 16), grid));
        Assert.Throws<ArgumentException>(() => Tiler.Stitch(zeros(4, 16, 15), grid));
        Assert.Throws<ArgumentException>(() => Tiler.Cut(zeros(3, 32, 31), grid));
    }
}
