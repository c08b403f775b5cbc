namespace UniAD.Core.Tiling;

/// <summary>One tile: a rectangle of the (working-size) image.</summary>
/// <param name="X">Left column.</param>
/// <param name="Y">Top row.</param>
/// <param name="Width">Columns.</param>
/// <param name="Height">Rows.</param>
public readonly record struct TileRect(int X, int Y, int Width, int Height)
{
    /// <inheritdoc />
    public override string ToString() => $"{Width}x{Height}@{X},{Y}";
}

/// <summary>
/// The tiles that cover an image: a row-major grid of equal rectangles, every <see cref="TilingOptions.Stride"/>
/// apart, the last row and column placed as <see cref="TilePlacement"/> says so that every pixel is covered.
/// </summary>
/// <param name="ImageSize">The size of the image being tiled (after any resize).</param>
/// <param name="TileSize">The size of every tile.</param>
/// <param name="RowOffsets">The top row of each tile row, increasing; the last equals height − tile height.</param>
/// <param name="ColumnOffsets">The left column of each tile column, increasing; the last equals width − tile width.</param>
public sealed record TileGrid(GridSize ImageSize, GridSize TileSize, IReadOnlyList<int> RowOffsets, IReadOnlyList<int> ColumnOffsets)
{
    /// <summary>Number of tiles.</summary>
    public int Count => RowOffsets.Count * ColumnOffsets.Count;

    /// <summary>The tiles, row by row.</summary>
    public IEnumerable<TileRect> Tiles =>
        RowOffsets.SelectMany(y => ColumnOffsets.Select(x => new TileRect(x, y, TileSize.Width, TileSize.Height)));

    /// <summary>The tile at <paramref name="index"/> (row-major).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The index is outside 0..Count − 1.</exception>
    public TileRect this[int index]
    {
        get
        {
            ArgumentOutOfRangeException.ThrowIfNegative(index);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
            return new TileRect(ColumnOffsets[index % ColumnOffsets.Count], RowOffsets[index / ColumnOffsets.Count], TileSize.Width, TileSize.Height);
        }
    }

    /// <summary>The grid of <paramref name="tileSize"/> tiles every <paramref name="stride"/> over an image of <paramref name="imageSize"/>.</summary>
    /// <exception cref="ArgumentException">The image is smaller than a tile, or the stride is outside 1..tile size.</exception>
    public static TileGrid Create(GridSize imageSize, GridSize tileSize, GridSize stride, TilePlacement placement = TilePlacement.ShiftLast)
    {
        if (tileSize.Height <= 0 || tileSize.Width <= 0 || imageSize.Height < tileSize.Height || imageSize.Width < tileSize.Width)
        {
            throw new ArgumentException($"An image of {imageSize} cannot hold a tile of {tileSize}.", nameof(imageSize));
        }

        return new TileGrid(imageSize, tileSize, Offsets(imageSize.Height, tileSize.Height, stride.Height, placement), Offsets(imageSize.Width, tileSize.Width, stride.Width, placement));
    }

    /// <summary>
    /// The tile origins along one axis: ceil((length − tile) / stride) + 1 tiles; with <see cref="TilePlacement.ShiftLast"/>
    /// at 0, stride, 2·stride, ... and the last at length − tile; with <see cref="TilePlacement.Spread"/> at
    /// round(i · (length − tile) / (n − 1)).
    /// </summary>
    /// <exception cref="ArgumentException">The length is smaller than the tile, or the stride is outside 1..tile.</exception>
    public static int[] Offsets(int length, int tile, int stride, TilePlacement placement = TilePlacement.ShiftLast)
    {
        if (tile <= 0 || length < tile)
        {
            throw new ArgumentException($"A length of {length} cannot hold a tile of {tile}.", nameof(length));
        }

        if (stride < 1 || stride > tile)
        {
            throw new ArgumentException($"The stride {stride} must lie in 1..{tile} (the tile size).", nameof(stride));
        }

        int span = length - tile;
        int n = (int)(((long)span + stride - 1) / stride) + 1;
        var offsets = new int[n];
        for (int i = 0; i < n; i++)
        {
            offsets[i] = placement == TilePlacement.Spread && n > 1
                ? (int)Math.Round((double)i * span / (n - 1), MidpointRounding.AwayFromZero)
                : Math.Min((int)Math.Min((long)i * stride, span), span);
        }

        offsets[n - 1] = span;
        return offsets;
    }
}
