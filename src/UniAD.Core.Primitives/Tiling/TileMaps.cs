using UniAD.Core.Data;

namespace UniAD.Core.Tiling;

/// <summary>
/// Tiling without tensors, shared by UniAD.Core and UniAD.Onnx: the working image, its checked tile grid, crops,
/// and the stitching of tile maps back into one map (each pixel the weighted mean of the tiles covering it,
/// accumulated in float64 in tile order, so both runtimes stitch bit for bit alike).
/// </summary>
public static class TileMaps
{
    /// <summary>
    /// The image at its working size (<see cref="TilingOptions.WorkingSize"/>): resized with PIL's exact
    /// BILINEAR filter (the resize untiled preprocessing uses), or the image itself when the size does not change.
    /// </summary>
    /// <exception cref="ImageFileException">The working size exceeds <see cref="TilingOptions.MaxPixels"/> or needs more than <see cref="TilingOptions.MaxTilesPerImage"/> tiles; the message names <paramref name="name"/>.</exception>
    public static RgbImage WorkingImage(RgbImage image, TilingOptions options, GridSize tileSize, string name)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(options);
        var grid = CheckedGrid(new GridSize(image.Height, image.Width), options, tileSize, name);
        return PilResize.Bilinear(image, grid.ImageSize.Width, grid.ImageSize.Height);
    }

    /// <summary>The grid of an image of <paramref name="imageSize"/>, checked against the options' pixel and tile limits.</summary>
    /// <exception cref="ImageFileException">The working image or its number of tiles is too large; the message names <paramref name="name"/>.</exception>
    public static TileGrid CheckedGrid(GridSize imageSize, TilingOptions options, GridSize tileSize, string name)
    {
        ArgumentNullException.ThrowIfNull(options);
        var working = options.WorkingSize(imageSize, tileSize);
        if ((long)working.Height * working.Width > options.MaxPixels)
        {
            throw new ImageFileException(name, $"tiling it needs a {working.Width} x {working.Height} image, more than MaxPixels = {options.MaxPixels} pixels.");
        }

        var grid = TileGrid.Create(working, tileSize, options.StrideFor(tileSize), options.Placement);
        if (grid.Count > options.MaxTilesPerImage)
        {
            throw new ImageFileException(name, $"tiling it needs {grid.Count} tiles, more than MaxTilesPerImage = {options.MaxTilesPerImage}.");
        }

        return grid;
    }

    /// <summary>A copy of the pixels of <paramref name="tile"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The tile does not lie inside the image.</exception>
    public static RgbImage Crop(RgbImage image, TileRect tile)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (tile.Width <= 0 || tile.Height <= 0 || tile.X < 0 || tile.Y < 0 || tile.X + tile.Width > image.Width || tile.Y + tile.Height > image.Height)
        {
            throw new ArgumentOutOfRangeException(nameof(tile), $"The tile {tile} does not lie inside the {image.Width} x {image.Height} image.");
        }

        var source = image.Buffer;
        var target = new byte[tile.Width * tile.Height * 4];
        int row = tile.Width * 4;
        for (int y = 0; y < tile.Height; y++)
        {
            Array.Copy(source, (((tile.Y + y) * image.Width) + tile.X) * 4, target, y * row, row);
        }

        return new RgbImage(tile.Width, tile.Height, target);
    }

    /// <summary>The weight of a tile's interior margin (<see cref="TilingOptions.Margin"/>) in <see cref="Stitch"/>, against 1 elsewhere.</summary>
    public const double MarginWeight = 1e-3;

    /// <summary>
    /// Stitches tile maps (N x h x w values, row-major, tiles in the order of <see cref="TileGrid.Tiles"/>) into one
    /// H x W float32 map (row-major) of the grid's image size; where tiles overlap their values are averaged, each tile's
    /// pixels within <paramref name="margin"/> of a border that lies inside the image weighted
    /// <see cref="MarginWeight"/> and all others 1 (margin 0: the plain mean). A pixel that only margins cover
    /// gets their mean.
    /// </summary>
    /// <exception cref="ArgumentException">The maps do not match the grid, or the margin is negative or not below half a tile.</exception>
    public static float[] Stitch(ReadOnlySpan<float> maps, TileGrid grid, int margin = 0)
    {
        ArgumentNullException.ThrowIfNull(grid);
        int th = grid.TileSize.Height, tw = grid.TileSize.Width, H = grid.ImageSize.Height, W = grid.ImageSize.Width;
        if (margin < 0 || 2 * margin >= Math.Min(th, tw))
        {
            throw new ArgumentException($"margin = {margin} must lie in 0..{(Math.Min(th, tw) - 1) / 2} for tiles of {grid.TileSize}.", nameof(margin));
        }

        if (maps.Length != (long)grid.Count * th * tw)
        {
            throw new ArgumentException($"Expected {grid.Count} maps of {th} x {tw} ({(long)grid.Count * th * tw} values); got {maps.Length}.", nameof(maps));
        }

        var sum = new double[(long)H * W];
        var weights = new double[sum.Length];
        int i = 0;
        foreach (var t in grid.Tiles)
        {
            var wy = AxisWeights(t.Height, margin, t.Y > 0, t.Y + t.Height < H);
            var wx = AxisWeights(t.Width, margin, t.X > 0, t.X + t.Width < W);
            var tile = maps.Slice(i++ * th * tw, th * tw);
            for (int y = 0; y < t.Height; y++)
            {
                int row = ((t.Y + y) * W) + t.X;
                for (int x = 0; x < t.Width; x++)
                {
                    double w = wy[y] * wx[x];
                    sum[row + x] += tile[(y * tw) + x] * w;
                    weights[row + x] += w;
                }
            }
        }

        var result = new float[sum.Length];
        for (int p = 0; p < result.Length; p++)
        {
            result[p] = (float)(sum[p] / weights[p]);
        }

        return result;
    }

    /// <summary>1 along a tile's side, <see cref="MarginWeight"/> within <paramref name="margin"/> of an end that lies inside the image.</summary>
    private static double[] AxisWeights(int length, int margin, bool startInside, bool endInside)
    {
        var w = new double[length];
        for (int p = 0; p < length; p++)
        {
            w[p] = margin > 0 && ((startInside && p < margin) || (endInside && p >= length - margin)) ? MarginWeight : 1.0;
        }

        return w;
    }
}
