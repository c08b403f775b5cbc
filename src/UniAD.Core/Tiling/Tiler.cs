using UniAD.Core.Data;
using static TorchSharp.torch;

namespace UniAD.Core.Tiling;

/// <summary>
/// Cutting images into tiles and stitching tile maps back. Tiles are plain crops of the working-size
/// image; a stitched map is, at every pixel, the mean of the values the covering tiles give it (sum map
/// divided by count map, accumulated in float64).
/// </summary>
public static class Tiler
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

    /// <summary>Cuts a C x H x W tensor (H x W the grid's image size) into its tiles: N x C x h x w, row-major.</summary>
    /// <exception cref="ArgumentException">The tensor does not have the grid's image size.</exception>
    public static Tensor Cut(Tensor image, TileGrid grid)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(grid);
        if (image.dim() != 3 || image.shape[1] != grid.ImageSize.Height || image.shape[2] != grid.ImageSize.Width)
        {
            throw new ArgumentException($"Expected C x {grid.ImageSize.Height} x {grid.ImageSize.Width}; got [{string.Join(", ", image.shape)}].", nameof(image));
        }

        using var scope = NewDisposeScope();
        var tiles = grid.Tiles.Select(t => image.narrow(1, t.Y, t.Height).narrow(2, t.X, t.Width)).ToArray();
        return stack(tiles).MoveToOuterDisposeScope();
    }

    /// <summary>The weight of a tile's interior margin (<see cref="TilingOptions.Margin"/>) in <see cref="Stitch"/>, against 1 elsewhere.</summary>
    public const double MarginWeight = 1e-3;

    /// <summary>
    /// Stitches tile maps (N x h x w or N x 1 x h x w, row-major as <see cref="TileGrid.Tiles"/>) into one
    /// H x W float32 map of the grid's image size; where tiles overlap their values are averaged, each tile's
    /// pixels within <paramref name="margin"/> of a border that lies inside the image weighted
    /// <see cref="MarginWeight"/> and all others 1 (margin 0: the plain mean). A pixel that only margins cover
    /// gets their mean.
    /// </summary>
    /// <exception cref="ArgumentException">The maps do not match the grid, or the margin is negative or not below half a tile.</exception>
    public static Tensor Stitch(Tensor maps, TileGrid grid, int margin = 0)
    {
        ArgumentNullException.ThrowIfNull(maps);
        ArgumentNullException.ThrowIfNull(grid);
        if (margin < 0 || 2 * margin >= Math.Min(grid.TileSize.Height, grid.TileSize.Width))
        {
            throw new ArgumentException($"margin = {margin} must lie in 0..{(Math.Min(grid.TileSize.Height, grid.TileSize.Width) - 1) / 2} for tiles of {grid.TileSize}.", nameof(margin));
        }

        using var scope = NewDisposeScope();
        var m = maps.dim() == 4 && maps.shape[1] == 1 ? maps.squeeze(1) : maps;
        if (m.dim() != 3 || m.shape[0] != grid.Count || m.shape[1] != grid.TileSize.Height || m.shape[2] != grid.TileSize.Width)
        {
            throw new ArgumentException($"Expected {grid.Count} maps of {grid.TileSize.Height} x {grid.TileSize.Width}; got [{string.Join(", ", maps.shape)}].", nameof(maps));
        }

        m = m.to(float64);
        var sum = zeros(new long[] { grid.ImageSize.Height, grid.ImageSize.Width }, float64, m.device);
        var weights = zeros(new long[] { grid.ImageSize.Height, grid.ImageSize.Width }, float64, m.device);
        int i = 0;
        foreach (var t in grid.Tiles)
        {
            using var tileScope = NewDisposeScope();
            var w = margin == 0
                ? ones(new long[] { t.Height, t.Width }, float64, m.device)
                : outer(AxisWeights(t.Height, margin, t.Y > 0, t.Y + t.Height < grid.ImageSize.Height, m.device), AxisWeights(t.Width, margin, t.X > 0, t.X + t.Width < grid.ImageSize.Width, m.device));
            sum.narrow(0, t.Y, t.Height).narrow(1, t.X, t.Width).PlusInPlace(m[i++] * w);
            weights.narrow(0, t.Y, t.Height).narrow(1, t.X, t.Width).PlusInPlace(w);
        }

        return sum.div_(weights).to(float32).MoveToOuterDisposeScope();
    }

    /// <summary>1 along a tile's side, <see cref="MarginWeight"/> within <paramref name="margin"/> of an end that lies inside the image.</summary>
    private static Tensor AxisWeights(int length, int margin, bool startInside, bool endInside, Device device)
    {
        var w = new double[length];
        for (int p = 0; p < length; p++)
        {
            w[p] = (startInside && p < margin) || (endInside && p >= length - margin) ? MarginWeight : 1.0;
        }

        return tensor(w, ScalarType.Float64, device);
    }
}
