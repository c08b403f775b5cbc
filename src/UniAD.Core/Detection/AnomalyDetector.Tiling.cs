using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using UniAD.Core.Tiling;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Detection;

/// <summary>Tiling (<see cref="DetectorOptions.Tiling"/>): the tiled paths of training, scoring, calibration and evaluation.</summary>
public sealed partial class AnomalyDetector
{
    /// <summary>Tiles per forward pass when scoring single images.</summary>
    private const int ScoringTileBatch = 8;

    /// <summary>The training samples: the normal images themselves, or (tiling) every tile of every one of them.</summary>
    private IImageSource TrainingImages(ImageSource normal, BadInputPolicy onBadInput)
    {
        if (Options.Tiling is not { } tiling)
        {
            return normal;
        }

        var tiled = new TiledImageSource(normal, tiling, Options.InputSize, Preprocess.MaxImagePixels, onBadInput, loggerFactory.CreateLogger<TiledImageSource>());
        logger.LogInformation("Tiling {Images} training images into {Tiles} tiles ({Tiling}).", tiled.ImagesTiled, tiled.Samples.Count, tiling.Describe(Options.InputSize));
        return tiled;
    }

    /// <summary>
    /// The tiled counterpart of <c>Maps</c>: one image per item, its stitched map (1 x H x W at the working
    /// size) and a batch holding the working-size image and, when asked, its mask resized to the working
    /// size with PIL's NEAREST rule (an image without a mask gets an empty one, and its batch's <c>HasMask</c> keeps it out of pixel metrics).
    /// </summary>
    private IEnumerable<(Tensor Maps, ImageBatch Batch)> TiledMaps(IImageSource source, int batchSize, bool loadMasks, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        var tiling = Options.Tiling!;
        foreach (var sample in source.Samples)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Tensor maps;
            ImageBatch batch;
            using (var scope = NewDisposeScope())
            {
                var decoded = source.ReadImage(sample, Preprocess.MaxImagePixels);
                var working = Tiler.WorkingImage(decoded, tiling, Options.InputSize, sample.ImagePath);
                var image = WorkingTensor(working);
                var map = StitchedMap(image, TileGridOf(working), batchSize, cancellationToken);
                var mask = loadMasks ? WorkingMask(sample, decoded, working) : null;
                batch = new ImageBatch(image.unsqueeze(0), mask, new[] { sample });
                maps = map.unsqueeze(0).MoveToOuterDisposeScope();
            }

            using (maps)
            {
                yield return (maps, batch);
            }
        }
    }

    /// <summary>The tiled counterpart of <c>ScoreImages</c>: each image tiled, scored and stitched; maps returned at the image's own size.</summary>
    private List<AnomalyResult> ScoreTiled(IReadOnlyList<(RgbImage Image, string? Name)> images, string? className)
    {
        var tiling = Options.Tiling!;
        var results = new List<AnomalyResult>(images.Count);
        foreach (var (image, name) in images)
        {
            using var scope = NewDisposeScope();
            var working = Tiler.WorkingImage(image, tiling, Options.InputSize, name ?? "image");
            var map = StitchedMap(WorkingTensor(working), TileGridOf(working), ScoringTileBatch, CancellationToken.None);
            int height = (int)map.shape[0], width = (int)map.shape[1];
            var values = map.contiguous().data<float>().ToArray();
            Calibration? calibration;
            MapPostProcessor post;
            lock (gate)
            {
                calibration = Calibration;
                post = PostProcessor();
            }

            results.Add(post.Finish(values, height, width, name, className, new GridSize(image.Height, image.Width), calibration));
        }

        return results;
    }

    /// <summary>Anomaly-map pixels of one image as scored (the working size when tiling, else the input size), for subsampling budgets.</summary>
    private long MapPixels(IImageSource images)
    {
        if (Options.Tiling is not { } tiling)
        {
            return Options.InputSize.Count;
        }

        if (tiling.ResizeTo is { } fixedSize)
        {
            return (long)fixedSize.Height * fixedSize.Width;
        }

        var first = images.Samples.FirstOrDefault(s => s.Label == ImageSample.Normal) ?? images.Samples.FirstOrDefault();
        if (first is null)
        {
            return Options.InputSize.Count;
        }

        try
        {
            var image = images.ReadImage(first, Preprocess.MaxImagePixels);
            var size = tiling.WorkingSize(new GridSize(image.Height, image.Width), Options.InputSize);
            return (long)size.Height * size.Width;
        }
        catch (Exception e) when (BadInput.IsBadInput(e))
        {
            return Options.InputSize.Count; // the scoring pass reports the file
        }
    }

    private TileGrid TileGridOf(RgbImage working) =>
        TileGrid.Create(new GridSize(working.Height, working.Width), Options.InputSize, Options.Tiling!.StrideFor(Options.InputSize), Options.Tiling.Placement);

    /// <summary>The working-size image normalised exactly as an untiled image is (same lookup table; the resize is a no-op at its own size).</summary>
    private Tensor WorkingTensor(RgbImage working) =>
        ImagePreprocessor.ToTensor(working, Preprocess with { InputSize = new GridSize(working.Height, working.Width) });

    /// <summary>Scores the tiles of one normalised working-size image (3 x H x W), <paramref name="batchSize"/> at a time; the stitched H x W map on the CPU.</summary>
    private Tensor StitchedMap(Tensor image, TileGrid grid, int batchSize, CancellationToken cancellationToken)
    {
        using var scope = NewDisposeScope();
        var tiles = Tiler.Cut(image, grid);
        var maps = new List<Tensor>();
        for (int start = 0; start < grid.Count; start += batchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int n = Math.Min(batchSize, grid.Count - start);
            lock (gate)
            {
                ObjectDisposedException.ThrowIf(disposed, this);
                using var noGrad = no_grad();
                AnomalyModel.Module.eval();
                maps.Add(AnomalyModel.Maps(tiles.narrow(0, start, n).to(Device)).cpu());
            }
        }

        return Tiler.Stitch(cat(maps, 0), grid, Options.Tiling!.Margin).MoveToOuterDisposeScope();
    }

    /// <summary>The sample's mask at the working size (1 x 1 x H x W, 0 or 1), following the loader's rules.</summary>
    private Tensor WorkingMask(ImageSample sample, RgbImage decoded, RgbImage working)
    {
        var values = new float[working.Width * working.Height];
        if (sample.MaskPath is { } maskPath)
        {
            var mask = ImageDecoder.DecodeMask(maskPath, Preprocess.MaxImagePixels);
            if (mask.Width != decoded.Width || mask.Height != decoded.Height)
            {
                throw new ImageFileException(maskPath, $"the mask is {mask.Width} x {mask.Height} pixels but its image '{sample.ImagePath}' is {decoded.Width} x {decoded.Height}.");
            }

            var resized = PilResize.Nearest(mask, working.Width, working.Height).Values;
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = resized[i];
            }
        }

        return tensor(values, new long[] { 1, 1, working.Height, working.Width }, device: CPU);
    }
}
