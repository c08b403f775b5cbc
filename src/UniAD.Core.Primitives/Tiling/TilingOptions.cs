using System.Globalization;
using UniAD.Core.Data;

namespace UniAD.Core.Tiling;

/// <summary>Where the tiles of a row or column go when the image length is not a whole number of strides.</summary>
public enum TilePlacement
{
    /// <summary>Tiles start every stride from the top-left; the last one is shifted back to end exactly at the border (it overlaps its neighbour more).</summary>
    ShiftLast,

    /// <summary>The same number of tiles, spread evenly from border to border (every overlap about the same, every step at most the stride).</summary>
    Spread,
}

/// <summary>
/// How a high-resolution image is cut into tiles of the network's input size (<c>DetectorOptions.InputSize</c>):
/// optionally resize the whole image first (PIL's exact BILINEAR filter, as untiled preprocessing uses),
/// then crop overlapping tiles that cover it completely. Anomaly maps of the tiles are stitched back at
/// the resolution of the (resized) image, overlaps averaged. Stored in the detector's checkpoints.
/// </summary>
/// <remarks>
/// An image that is smaller than a tile in either direction (after the optional resize) is enlarged,
/// keeping its aspect ratio, until one tile fits.
/// </remarks>
public sealed record TilingOptions
{
    /// <summary>Largest side accepted for <see cref="ResizeWidth"/> and <see cref="ResizeTo"/>.</summary>
    public const int MaxSide = 32_768;

    /// <summary>Step between tile origins (rows, columns); null means the tile size (tiles touch, no overlap). Each must lie in 1..tile size.</summary>
    public GridSize? Stride { get; init; }

    /// <summary>Resize every image to this width first, keeping its aspect ratio (height rounded to the nearest pixel); null keeps the width. Not together with <see cref="ResizeTo"/>.</summary>
    public int? ResizeWidth { get; init; }

    /// <summary>Resize every image to this fixed height x width first; null keeps the size. Not together with <see cref="ResizeWidth"/>.</summary>
    public GridSize? ResizeTo { get; init; }

    /// <summary>Placement of the last tile of each row and column (default: shifted to end at the border).</summary>
    public TilePlacement Placement { get; init; } = TilePlacement.ShiftLast;

    /// <summary>Largest (resized) image, in pixels, that is tiled; larger ones are refused as bad input. Default PIL's decompression-bomb limit.</summary>
    public long MaxPixels { get; init; } = ImageDecoder.DefaultMaxPixels;

    /// <summary>Largest number of tiles per image; images that would need more are refused as bad input.</summary>
    public int MaxTilesPerImage { get; init; } = 4096;

    /// <summary>
    /// Pixels along each tile border that lies inside the image (not on the image's own border) whose map values
    /// give way to the neighbouring tile's where tiles overlap (weight <c>Tiler.MarginWeight</c> against 1 in
    /// the stitch). A tile's map is least reliable near its borders (zero-padded convolutions, fewer neighbours for
    /// attention), which shows as a grid of seams when tiles are simply averaged. Choose
    /// <see cref="Stride"/> = tile − 2 x margin so that every interior margin lies over a neighbour's centre.
    /// Default 0: plain averaging. Must be below half the tile's side.
    /// </summary>
    public int Margin { get; init; }

    /// <summary>The stride actually used for tiles of <paramref name="tileSize"/>.</summary>
    public GridSize StrideFor(GridSize tileSize) => Stride ?? tileSize;

    /// <summary>Checks every value against the tile size and throws an exception naming the first one that is impossible.</summary>
    /// <exception cref="ArgumentException">A value is out of range (its name and value are in the message).</exception>
    public void Validate(GridSize tileSize)
    {
        if (tileSize.Height <= 0 || tileSize.Width <= 0)
        {
            throw new ArgumentException($"The tile size {tileSize} must be positive.", nameof(tileSize));
        }

        if (Stride is { } s && (s.Height < 1 || s.Height > tileSize.Height || s.Width < 1 || s.Width > tileSize.Width))
        {
            throw new ArgumentException($"{nameof(Stride)} = {s} must lie in 1..{tileSize.Height} x 1..{tileSize.Width} (the tile size).", nameof(Stride));
        }

        if (ResizeWidth is not null && ResizeTo is not null)
        {
            throw new ArgumentException($"{nameof(ResizeWidth)} = {ResizeWidth} and {nameof(ResizeTo)} = {ResizeTo} exclude each other; set one.", nameof(ResizeWidth));
        }

        if (ResizeWidth is { } w && (w < tileSize.Width || w > MaxSide))
        {
            throw new ArgumentException($"{nameof(ResizeWidth)} = {w} must lie in {tileSize.Width}..{MaxSide} (at least one tile of width {tileSize.Width}).", nameof(ResizeWidth));
        }

        if (ResizeTo is { } r && (r.Height < tileSize.Height || r.Width < tileSize.Width || r.Height > MaxSide || r.Width > MaxSide))
        {
            throw new ArgumentException($"{nameof(ResizeTo)} = {r} must be at least the tile size {tileSize} and at most {MaxSide} per side.", nameof(ResizeTo));
        }

        if (!Enum.IsDefined(Placement))
        {
            throw new ArgumentException($"{nameof(Placement)} = {Placement} is not a known placement.", nameof(Placement));
        }

        if (MaxPixels < (long)tileSize.Height * tileSize.Width)
        {
            throw new ArgumentException($"{nameof(MaxPixels)} = {MaxPixels} must be at least one tile ({(long)tileSize.Height * tileSize.Width} pixels).", nameof(MaxPixels));
        }

        if (ResizeTo is { } fixedSize && (long)fixedSize.Height * fixedSize.Width > MaxPixels)
        {
            throw new ArgumentException($"{nameof(ResizeTo)} = {fixedSize} has more than {nameof(MaxPixels)} = {MaxPixels} pixels.", nameof(ResizeTo));
        }

        if (MaxTilesPerImage <= 0)
        {
            throw new ArgumentException($"{nameof(MaxTilesPerImage)} = {MaxTilesPerImage} must be positive.", nameof(MaxTilesPerImage));
        }

        if (Margin < 0 || 2 * Margin >= Math.Min(tileSize.Height, tileSize.Width))
        {
            throw new ArgumentException($"{nameof(Margin)} = {Margin} must lie in 0..{(Math.Min(tileSize.Height, tileSize.Width) - 1) / 2} (below half the tile size {tileSize}).", nameof(Margin));
        }
    }

    /// <summary>
    /// The size (height x width) an image of <paramref name="imageSize"/> is tiled at: after the optional
    /// resize, and enlarged (keeping the aspect ratio) when a tile of <paramref name="tileSize"/> would not fit.
    /// </summary>
    /// <exception cref="ArgumentException">A size is not positive.</exception>
    public GridSize WorkingSize(GridSize imageSize, GridSize tileSize)
    {
        if (imageSize.Height <= 0 || imageSize.Width <= 0 || tileSize.Height <= 0 || tileSize.Width <= 0)
        {
            throw new ArgumentException($"Image size {imageSize} and tile size {tileSize} must be positive.");
        }

        long h = imageSize.Height, w = imageSize.Width;
        if (ResizeTo is { } fixedSize)
        {
            (h, w) = (fixedSize.Height, fixedSize.Width);
        }
        else if (ResizeWidth is { } width)
        {
            h = Math.Max(1, (long)Math.Round((double)imageSize.Height * width / imageSize.Width, MidpointRounding.AwayFromZero));
            w = width;
        }

        if (h < tileSize.Height || w < tileSize.Width)
        {
            double scale = Math.Max((double)tileSize.Height / h, (double)tileSize.Width / w);
            h = Math.Max(tileSize.Height, (long)Math.Ceiling((h * scale) - 1e-9));
            w = Math.Max(tileSize.Width, (long)Math.Ceiling((w * scale) - 1e-9));
        }

        return new GridSize((int)Math.Min(h, int.MaxValue), (int)Math.Min(w, int.MaxValue));
    }

    /// <summary>The tiles of an image of <paramref name="imageSize"/> (original size: the working size is derived from it).</summary>
    /// <exception cref="ArgumentException">A size is not positive.</exception>
    public TileGrid GridFor(GridSize imageSize, GridSize tileSize) =>
        TileGrid.Create(WorkingSize(imageSize, tileSize), tileSize, StrideFor(tileSize), Placement);

    /// <summary>A short text that changes whenever the tiles would (used in feature-cache keys and logs).</summary>
    public string Describe(GridSize tileSize) => string.Create(CultureInfo.InvariantCulture,
        $"tile={tileSize};stride={StrideFor(tileSize)};resize={(ResizeTo is { } r ? r.ToString() : ResizeWidth is { } w ? "w" + w : "none")};placement={Placement}");
}
