using UniAD.Core.Data;
using static TorchSharp.torch;

namespace UniAD.Core.Tiling;

/// <summary>
/// Cutting images into tiles and stitching tile maps back, on tensors. The arithmetic is
/// <see cref="TileMaps"/>'s (UniAD.Core.Primitives), which the ONNX scorer uses too: tiles are plain crops of the
/// working-size image; a stitched map is, at every pixel, the weighted mean of the values the covering tiles
/// give it (accumulated in float64).
/// </summary>
public static class Tiler
{
    /// <summary>The weight of a tile's interior margin (<see cref="TilingOptions.Margin"/>) in <see cref="Stitch"/>, against 1 elsewhere.</summary>
    public const double MarginWeight = TileMaps.MarginWeight;

    /// <inheritdoc cref="TileMaps.WorkingImage"/>
    public static RgbImage WorkingImage(RgbImage image, TilingOptions options, GridSize tileSize, string name) => TileMaps.WorkingImage(image, options, tileSize, name);

    /// <inheritdoc cref="TileMaps.CheckedGrid"/>
    public static TileGrid CheckedGrid(GridSize imageSize, TilingOptions options, GridSize tileSize, string name) => TileMaps.CheckedGrid(imageSize, options, tileSize, name);

    /// <inheritdoc cref="TileMaps.Crop"/>
    public static RgbImage Crop(RgbImage image, TileRect tile) => TileMaps.Crop(image, tile);

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
        var m = maps.dim() == 4 && maps.shape[1] == 1 ? maps.squeeze(1) : maps;
        if (m.dim() != 3 || m.shape[0] != grid.Count || m.shape[1] != grid.TileSize.Height || m.shape[2] != grid.TileSize.Width)
        {
            throw new ArgumentException($"Expected {grid.Count} maps of {grid.TileSize.Height} x {grid.TileSize.Width}; got [{string.Join(", ", maps.shape)}].", nameof(maps));
        }

        using var cpu = m.to(float32).cpu().contiguous();
        var stitched = TileMaps.Stitch(cpu.data<float>().ToArray(), grid, margin);
        return tensor(stitched, new long[] { grid.ImageSize.Height, grid.ImageSize.Width }, device: CPU);
    }
}
