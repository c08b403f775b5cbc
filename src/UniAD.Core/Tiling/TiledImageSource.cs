using System.Globalization;
using System.Runtime.ExceptionServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using UniAD.Core.Data;

namespace UniAD.Core.Tiling;

/// <summary>
/// An image source whose samples are the tiles of another source's images: every tile of every image is
/// one sample, so the batch loader, the feature cache, shuffling and augmentation work on tiles unchanged.
/// Training uses it when the detector tiles. Each image is decoded once at construction to learn its size.
/// </summary>
/// <remarks>
/// A tile sample keeps its image's label, class and defect type; its <see cref="ImageSample.ImagePath"/>
/// is <c>&lt;image path&gt;#tile@x,y</c> (x, y: the tile's origin in the working-size image) and it carries
/// no mask (for training; evaluation tiles images and masks itself). Its content key is the image's key
/// plus the tile's rectangle and the tiling settings, so cached features of different tiles never mix.
/// Recently decoded images are kept (a few), so reading the tiles of one image in a row decodes it once.
/// </remarks>
public sealed class TiledImageSource : IImageSource
{
    private readonly Dictionary<ImageSample, (ImageSample Image, TileGrid Grid, TileRect Tile)> tiles = new();
    private readonly List<SkippedFile> skipped;
    private readonly LinkedList<(ImageSample Image, Lazy<RgbImage> Working)> recent = new();
    private readonly int capacity = Math.Max(4, (2 * Environment.ProcessorCount) + 2);

    /// <summary>Expands every image of <paramref name="images"/> into its tiles of <paramref name="tileSize"/>.</summary>
    /// <param name="images">The images.</param>
    /// <param name="options">How to tile.</param>
    /// <param name="tileSize">The tile size: the network's input size.</param>
    /// <param name="maxImagePixels">Decoding limit of each image.</param>
    /// <param name="onBadInput">What to do with an image that cannot be decoded or tiled: throw, or leave it out and list it in <see cref="Skipped"/>.</param>
    /// <param name="logger">Receives skipped images.</param>
    /// <exception cref="ArgumentException">The options are impossible for the tile size.</exception>
    /// <exception cref="ImageFileException">(Policy Throw) an image cannot be decoded or tiled.</exception>
    public TiledImageSource(IImageSource images, TilingOptions options, GridSize tileSize, long maxImagePixels = ImageDecoder.DefaultMaxPixels, BadInputPolicy onBadInput = BadInputPolicy.Throw, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(tileSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxImagePixels);
        Inner = images;
        Options = options;
        TileSize = tileSize;
        MaxImagePixels = maxImagePixels;
        var bad = new BadInput(onBadInput, logger ?? NullLogger.Instance);
        var grids = new TileGrid?[images.Samples.Count];
        var errors = new Exception?[grids.Length];
        ParallelLoops.For(grids.Length, i =>
        {
            var sample = images.Samples[i];
            try
            {
                var size = options.ResizeTo is { } fixedSize ? fixedSize : Size(images.ReadImage(sample, maxImagePixels));
                grids[i] = Tiler.CheckedGrid(size, options, tileSize, sample.ImagePath);
            }
            catch (Exception e) when (BadInput.IsBadInput(e))
            {
                errors[i] = e;
            }
        });

        for (int i = 0; i < errors.Length; i++)
        {
            if (errors[i] is { } e)
            {
                if (onBadInput == BadInputPolicy.Throw)
                {
                    ExceptionDispatchInfo.Capture(e).Throw();
                }

                bad.Report(e is ImageFileException f ? f.FilePath : images.Samples[i].ImagePath, BadInput.Reason(e), e);
            }
        }

        var samples = new List<ImageSample>();
        for (int i = 0; i < grids.Length; i++)
        {
            if (grids[i] is not { } grid)
            {
                continue;
            }

            var image = images.Samples[i];
            foreach (var tile in grid.Tiles)
            {
                var sample = image with { ImagePath = string.Create(CultureInfo.InvariantCulture, $"{image.ImagePath}#tile@{tile.X},{tile.Y}"), MaskPath = null };
                if (tiles.TryAdd(sample, (image, grid, tile)))
                {
                    samples.Add(sample);
                }
            }
        }

        Samples = samples;
        skipped = images.Skipped.Concat(bad.Skipped).ToList();
        ImagesTiled = grids.Count(g => g is not null);
    }

    /// <summary>The source whose images are tiled.</summary>
    public IImageSource Inner { get; }

    /// <summary>The tiling.</summary>
    public TilingOptions Options { get; }

    /// <summary>The tile size.</summary>
    public GridSize TileSize { get; }

    /// <summary>Decoding limit of each image.</summary>
    public long MaxImagePixels { get; }

    /// <summary>Images that were tiled (not skipped).</summary>
    public int ImagesTiled { get; }

    /// <inheritdoc />
    public string Name => Inner.Name;

    /// <inheritdoc />
    public IReadOnlyList<ImageSample> Samples { get; }

    /// <inheritdoc />
    public IReadOnlyList<SkippedFile> Skipped => skipped;

    /// <summary>The image a tile sample comes from, the image's tile grid and the tile.</summary>
    /// <exception cref="ArgumentException">The sample is not a tile of this source.</exception>
    public (ImageSample Image, TileGrid Grid, TileRect Tile) TileOf(ImageSample sample)
    {
        ArgumentNullException.ThrowIfNull(sample);
        return tiles.TryGetValue(sample, out var t) ? t : throw new ArgumentException($"'{sample.ImagePath}' is not a tile of '{Name}'.", nameof(sample));
    }

    /// <inheritdoc />
    /// <exception cref="ImageFileException">The image cannot be decoded, or its size changed since it was tiled.</exception>
    public RgbImage ReadImage(ImageSample sample, long maxPixels)
    {
        var (image, grid, tile) = TileOf(sample);
        var working = Working(image, Math.Min(maxPixels, MaxImagePixels));
        if (working.Width != grid.ImageSize.Width || working.Height != grid.ImageSize.Height)
        {
            throw new ImageFileException(image.ImagePath, $"its tiled size changed from {grid.ImageSize} to {working.Height}x{working.Width} since the tiles were laid out.");
        }

        return Tiler.Crop(working, tile);
    }

    /// <inheritdoc />
    public string ContentKey(ImageSample sample)
    {
        var (image, grid, tile) = TileOf(sample);
        return string.Create(CultureInfo.InvariantCulture, $"{Inner.ContentKey(image)}|tile {tile} of {grid.ImageSize}|{Options.Describe(TileSize)}");
    }

    private static GridSize Size(RgbImage image) => new(image.Height, image.Width);

    private RgbImage Working(ImageSample image, long maxPixels)
    {
        Lazy<RgbImage> lazy;
        lock (recent)
        {
            var node = recent.First;
            while (node is not null && !ReferenceEquals(node.Value.Image, image))
            {
                node = node.Next;
            }

            if (node is null)
            {
                lazy = new Lazy<RgbImage>(() => Tiler.WorkingImage(Inner.ReadImage(image, maxPixels), Options, TileSize, image.ImagePath), LazyThreadSafetyMode.ExecutionAndPublication);
                recent.AddFirst((image, lazy));
                if (recent.Count > capacity)
                {
                    recent.RemoveLast();
                }
            }
            else
            {
                lazy = node.Value.Working;
                if (node != recent.First)
                {
                    recent.Remove(node);
                    recent.AddFirst(node);
                }
            }
        }

        try
        {
            return lazy.Value;
        }
        catch
        {
            // A failed decode is not remembered: the next read tries again (the file may be fixed).
            lock (recent)
            {
                var node = recent.First;
                while (node is not null && !ReferenceEquals(node.Value.Working, lazy))
                {
                    node = node.Next;
                }

                if (node is not null)
                {
                    recent.Remove(node);
                }
            }

            throw;
        }
    }
}
