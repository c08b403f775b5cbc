using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using static TorchSharp.torch;

namespace UniAD.Core.Detection;

/// <summary>
/// The anomaly maps of an image source, batch by batch, as calibration, evaluation, reference-map fitting and score-window
/// selection read them: tiled (<see cref="TiledScoring"/>) or not, normalised by the detector's reference maps or raw.
/// Each batch runs under the detector's lock; the lock is not held while the caller consumes it.
/// </summary>
internal static class MapSource
{
    /// <summary>Maps of a source's images, batch by batch, normalised by the reference maps unless <paramref name="raw"/>.</summary>
    public static IEnumerable<(Tensor Maps, ImageBatch Batch)> Maps(AnomalyDetector detector, IImageSource source, int batchSize, bool loadMasks, CancellationToken cancellationToken, bool raw = false)
    {
        var references = raw ? null : detector.ReferenceMaps;
        foreach (var (maps, batch) in RawMaps(detector, source, batchSize, loadMasks, cancellationToken))
        {
            if (references is null)
            {
                yield return (maps, batch);
                continue;
            }

            using var normalized = references.Normalize(maps, batch.ClassNames);
            yield return (normalized, batch);
        }
    }

    /// <summary>The raw maps (no reference maps) of a source's images, batch by batch, on the CPU.</summary>
    private static IEnumerable<(Tensor Maps, ImageBatch Batch)> RawMaps(AnomalyDetector detector, IImageSource source, int batchSize, bool loadMasks, CancellationToken cancellationToken)
    {
        if (detector.Options.Tiling is not null)
        {
            foreach (var item in TiledScoring.Maps(detector, source, batchSize, loadMasks, cancellationToken))
            {
                yield return item;
            }

            yield break;
        }

        var loader = new ImageBatchLoader(source, new LoaderOptions { BatchSize = batchSize, LoadMasks = loadMasks, Preprocess = detector.Preprocess }, detector.LoggerFactory.CreateLogger<ImageBatchLoader>());
        foreach (var batch in loader.Batches(cancellationToken: cancellationToken))
        {
            cancellationToken.ThrowIfCancellationRequested();
            Tensor maps;
            lock (detector.Gate)
            {
                detector.ThrowIfDisposed();
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();
                detector.AnomalyModel.Module.eval();
                maps = detector.AnomalyModel.Maps(batch.Images.to(detector.Device), batch.ClassNames).cpu().MoveToOuterDisposeScope();
            }

            using (maps)
            {
                yield return (maps, batch);
            }
        }
    }
}
