using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using UniAD.Core.Tiling;
using static TorchSharp.torch;

namespace UniAD.Core.Detection;

/// <summary>
/// Tiled scoring (<see cref="DetectorOptions.Tiling"/>): the working image of each input, its tile grid, the tiles scored
/// under the detector's lock and stitched into one map; the tiled paths of training samples, scoring, calibration and evaluation.
/// </summary>
internal static class TiledScoring
{
    /// <summary>Tiles per forward pass when scoring single images.</summary>
    private const int ScoringTileBatch = 8;

    /// <summary>The training samples: the normal images themselves, or (tiling) every tile of every one of them.</summary>
    public static IImageSource TrainingImages(AnomalyDetector detector, ImageSource normal, BadInputPolicy onBadInput)
    {
        var options = detector.Options;
        if (options.Tiling is not { } tiling)
        {
            return normal;
        }

        var tiled = new TiledImageSource(normal, tiling, options.InputSize, detector.Preprocess.MaxImagePixels, onBadInput, detector.LoggerFactory.CreateLogger<TiledImageSource>());
        detector.Logger.LogInformation("Tiling {Images} training images into {Tiles} tiles ({Tiling}).", tiled.ImagesTiled, tiled.Samples.Count, tiling.Describe(options.InputSize));
        return tiled;
    }

    /// <summary>
    /// The tiled counterpart of <see cref="MapSource.Maps"/>: one image per item, its stitched map (1 x H x W at the working
    /// size) and a batch holding the working-size image and, when asked, its mask resized to the working
    /// size with PIL's NEAREST rule (an image without a mask gets an empty one, and its batch's <c>HasMask</c> keeps it out of pixel metrics).
    /// </summary>
    public static IEnumerable<(Tensor Maps, ImageBatch Batch)> Maps(AnomalyDetector detector, IImageSource source, int batchSize, bool loadMasks, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        var options = detector.Options;
        var tiling = options.Tiling!;
        var preprocess = detector.Preprocess;
        foreach (var sample in source.Samples)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Tensor maps;
            ImageBatch batch;
            using (var scope = NewDisposeScope())
            {
                var decoded = source.ReadImage(sample, preprocess.MaxImagePixels);
                var working = Tiler.WorkingImage(decoded, tiling, options.InputSize, sample.ImagePath);
                var image = WorkingTensor(detector, working);
                var map = StitchedMap(detector, image, TileGridOf(detector, working), sample.ClassName, batchSize, cancellationToken);
                var mask = loadMasks ? WorkingMask(detector, sample, decoded, working) : null;
                batch = new ImageBatch(image.unsqueeze(0), mask, new[] { sample });
                maps = map.unsqueeze(0).MoveToOuterDisposeScope();
            }

            using (maps)
            {
                yield return (maps, batch);
            }
        }
    }

    /// <summary>The tiled counterpart of <see cref="DetectorScoring.ScoreImages"/>: each image tiled, scored and stitched; maps returned at the image's own size.</summary>
    public static List<AnomalyResult> Score(AnomalyDetector detector, IReadOnlyList<(RgbImage Image, string? Name)> images, string? className)
    {
        var options = detector.Options;
        var tiling = options.Tiling!;
        var results = new List<AnomalyResult>(images.Count);
        foreach (var (image, name) in images)
        {
            using var scope = NewDisposeScope();
            var working = Tiler.WorkingImage(image, tiling, options.InputSize, name ?? "image");
            var map = StitchedMap(detector, WorkingTensor(detector, working), TileGridOf(detector, working), className, ScoringTileBatch, CancellationToken.None);
            int height = (int)map.shape[0], width = (int)map.shape[1];
            var values = map.contiguous().data<float>().ToArray();
            Calibration? calibration;
            MapPostProcessor post;
            lock (detector.Gate)
            {
                calibration = detector.Calibration;
                post = DetectorScoring.PostProcessor(detector);
            }

            ScoringSteps.RequireFinite(values, values.Length, new[] { name });
            results.Add(post.Finish(values, height, width, name, className, new GridSize(image.Height, image.Width), calibration));
        }

        return results;
    }

    /// <summary>Anomaly-map pixels of one image as scored (the working size when tiling, else the input size), for subsampling budgets.</summary>
    public static long MapPixels(AnomalyDetector detector, IImageSource images)
    {
        var options = detector.Options;
        if (options.Tiling is not { } tiling)
        {
            return options.InputSize.Count;
        }

        if (tiling.ResizeTo is { } fixedSize)
        {
            return (long)fixedSize.Height * fixedSize.Width;
        }

        var first = images.Samples.FirstOrDefault(s => s.Label == ImageSample.Normal) ?? images.Samples.FirstOrDefault();
        if (first is null)
        {
            return options.InputSize.Count;
        }

        try
        {
            var image = images.ReadImage(first, detector.Preprocess.MaxImagePixels);
            var size = tiling.WorkingSize(new GridSize(image.Height, image.Width), options.InputSize);
            return (long)size.Height * size.Width;
        }
        catch (Exception e) when (BadInput.IsBadInput(e))
        {
            return options.InputSize.Count; // the scoring pass reports the file
        }
    }

    private static TileGrid TileGridOf(AnomalyDetector detector, RgbImage working)
    {
        var options = detector.Options;
        return TileGrid.Create(new GridSize(working.Height, working.Width), options.InputSize, options.Tiling!.StrideFor(options.InputSize), options.Tiling.Placement);
    }

    /// <summary>The working-size image normalised exactly as an untiled image is (same lookup table; the resize is a no-op at its own size).</summary>
    private static Tensor WorkingTensor(AnomalyDetector detector, RgbImage working) =>
        ImagePreprocessor.ToTensor(working, detector.Preprocess with { InputSize = new GridSize(working.Height, working.Width) });

    /// <summary>Scores the tiles of one normalised working-size image (3 x H x W), <paramref name="batchSize"/> at a time; the stitched H x W map on the CPU.</summary>
    private static Tensor StitchedMap(AnomalyDetector detector, Tensor image, TileGrid grid, string? className, int batchSize, CancellationToken cancellationToken)
    {
        using var scope = NewDisposeScope();
        var tiles = Tiler.Cut(image, grid);
        var maps = new List<Tensor>();
        for (int start = 0; start < grid.Count; start += batchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int n = Math.Min(batchSize, grid.Count - start);
            lock (detector.Gate)
            {
                detector.ThrowIfDisposed();
                using var noGrad = no_grad();
                detector.AnomalyModel.Module.eval();
                maps.Add(detector.AnomalyModel.Maps(tiles.narrow(0, start, n).to(detector.Device), Enumerable.Repeat(className, n).ToArray()).cpu());
            }
        }

        return Tiler.Stitch(cat(maps, 0), grid, detector.Options.Tiling!.Margin).MoveToOuterDisposeScope();
    }

    /// <summary>The sample's mask at the working size (1 x 1 x H x W, 0 or 1), following the loader's rules.</summary>
    private static Tensor WorkingMask(AnomalyDetector detector, ImageSample sample, RgbImage decoded, RgbImage working)
    {
        var values = new float[working.Width * working.Height];
        if (sample.MaskPath is { } maskPath)
        {
            var mask = ImageDecoder.DecodeMask(maskPath, detector.Preprocess.MaxImagePixels);
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
