using UniAD.Core.Data;
using static TorchSharp.torch;

namespace UniAD.Core.Detection;

/// <summary>
/// Untiled scoring: decoded images or a normalised tensor batch through the model under the detector's lock, then each map
/// finished into an <see cref="AnomalyResult"/> by the <see cref="MapPostProcessor"/> (image score, reference maps,
/// calibration) shared with the ONNX scorer. Tiled detectors go through <see cref="TiledScoring"/>.
/// </summary>
internal static class DetectorScoring
{
    /// <summary>The body of <see cref="AnomalyDetector.ScoreTensor"/>: checks the batch, then scores it.</summary>
    public static IReadOnlyList<AnomalyResult> ScoreTensor(AnomalyDetector detector, Tensor images, IReadOnlyList<string?>? names, IReadOnlyList<string?>? classNames)
    {
        ArgumentNullException.ThrowIfNull(images);
        var size = detector.Options.InputSize;
        if (images.dim() != 4 || images.shape[1] != 3 || images.shape[2] != size.Height || images.shape[3] != size.Width)
        {
            throw new ArgumentException($"Expected normalized images B x 3 x {size.Height} x {size.Width}; got [{string.Join(", ", images.shape)}].", nameof(images));
        }

        if (!images.is_floating_point())
        {
            throw new ArgumentException($"Expected floating-point normalized images; got dtype {images.dtype}.", nameof(images));
        }

        if (names is not null && names.Count != images.shape[0])
        {
            throw new ArgumentException($"{names.Count} names for {images.shape[0]} images.", nameof(names));
        }

        using var scope = NewDisposeScope();
        var input = images.dtype == float32 ? images : images.to(float32);
        using (var finite = isfinite(input).all(dim: 3).all(dim: 2).all(dim: 1).cpu())
        {
            var ok = finite.data<bool>().ToArray();
            int bad = Array.IndexOf(ok, false);
            if (bad >= 0)
            {
                throw new ArgumentException($"Image {bad}{(names?[bad] is { } n ? $" ('{n}')" : string.Empty)} of the batch holds NaN or infinity.", nameof(images));
            }
        }

        var sizes = Enumerable.Repeat(size, (int)images.shape[0]).ToArray();
        return Run(detector, input, sizes, names ?? new string?[sizes.Length], classNames ?? new string?[sizes.Length]);
    }

    /// <summary>
    /// Scores decoded images of one class (or none): tiled, or at the input size after <paramref name="warnStretched"/>
    /// (<see cref="ImageScorer"/>'s warning about images stretched to the input size, which only the detector can call).
    /// </summary>
    public static List<AnomalyResult> ScoreImages(AnomalyDetector detector, IReadOnlyList<(RgbImage Image, string? Name)> images, string? className, Action warnStretched)
    {
        var classes = Enumerable.Repeat(className, images.Count).ToArray();
        RequireClasses(detector, classes);
        if (detector.Options.Tiling is not null)
        {
            return TiledScoring.Score(detector, images, className);
        }

        warnStretched();

        using var scope = NewDisposeScope();
        var preprocess = detector.Preprocess;
        var inputs = stack(images.Select(i => ImagePreprocessor.ToTensor(i.Image, preprocess)).ToArray());
        var sizes = images.Select(i => new GridSize(i.Image.Height, i.Image.Width)).ToArray();
        return Run(detector, inputs, sizes, images.Select(i => i.Name).ToArray(), classes);
    }

    /// <summary>The image score of one map (H x W, 1 x H x W or 1 x 1 x H x W) as configured: <see cref="MapPostProcessor.ImageScore"/>, the rule of both runtimes.</summary>
    public static double ImageScore(AnomalyDetector detector, Tensor map)
    {
        int height = (int)map.shape[^2], width = (int)map.shape[^1];
        using var onCpu = map.reshape(height, width).cpu().contiguous();
        return PostProcessor(detector).ImageScore(onCpu.data<float>().ToArray(), height, width);
    }

    /// <summary>The map-to-result step (image score and reference maps as configured now), shared with the ONNX scorer.</summary>
    public static MapPostProcessor PostProcessor(AnomalyDetector detector)
    {
        var options = detector.Options;
        var references = detector.ReferenceMaps;
        return new MapPostProcessor(options.ScoreKind, options.ScoreWindowHeight, options.ScorePoolSize, references?.Classes.Keys.ToArray(), references is null ? null : references.Upsampled);
    }

    /// <summary>With reference maps or per-class memory banks, every image needs a known class (checked before the network runs).</summary>
    private static void RequireClasses(AnomalyDetector detector, IReadOnlyList<string?> classes)
    {
        ScoringSteps.RequireClasses(detector.AnomalyModel.Classes?.ToArray(), classes, ScoringSteps.MemoryBankPart);
        ScoringSteps.RequireClasses(detector.ReferenceMaps?.Classes.Keys.ToArray(), classes);
    }

    private static List<AnomalyResult> Run(AnomalyDetector detector, Tensor inputs, IReadOnlyList<GridSize> originalSizes, IReadOnlyList<string?> names, IReadOnlyList<string?> classNames)
    {
        RequireClasses(detector, classNames);
        float[] values;
        int height, width;
        Calibration? calibration;
        MapPostProcessor post;
        lock (detector.Gate)
        {
            detector.ThrowIfDisposed();
            using var scope = NewDisposeScope();
            detector.AnomalyModel.Module.eval();
            var maps = detector.AnomalyModel.Maps(inputs.to(detector.Device), classNames).cpu().contiguous();
            height = (int)maps.shape[1];
            width = (int)maps.shape[2];
            values = maps.data<float>().ToArray();
            calibration = detector.Calibration;
            post = PostProcessor(detector);
        }

        int plane = height * width;
        ScoringSteps.RequireFinite(values, plane, names);
        var results = new List<AnomalyResult>(originalSizes.Count);
        for (int i = 0; i < originalSizes.Count; i++)
        {
            var map = values.AsSpan(i * plane, plane).ToArray();
            results.Add(post.Finish(map, height, width, i < names.Count ? names[i] : null, classNames[i], originalSizes[i], calibration));
        }

        return results;
    }
}
