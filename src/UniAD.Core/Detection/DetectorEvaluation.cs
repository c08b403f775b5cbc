using UniAD.Core.Data;
using UniAD.Core.Metrics;
using static TorchSharp.torch;

namespace UniAD.Core.Detection;

/// <summary>
/// Evaluation: per-class image and pixel metrics (<see cref="MetricsReport"/>) from a stream of maps of a labelled set
/// (<see cref="MapSource"/>); images without pixel labels count for the image metrics only.
/// </summary>
internal static class DetectorEvaluation
{
    /// <summary>The body of <see cref="AnomalyDetector.Evaluate"/>.</summary>
    public static MetricsReport Evaluate(AnomalyDetector detector, IImageSource test, MetricsReportOptions? options, int batchSize, IProgress<DataProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(test);
        var builder = new MetricsReportBuilder(options ?? new MetricsReportOptions { PoolSize = detector.Options.ScorePoolSize, PoolHeight = detector.Options.ScorePoolHeight });
        int done = 0;
        foreach (var (maps, batch) in MapSource.Maps(detector, test, batchSize, loadMasks: true, cancellationToken))
        {
            using (batch)
            {
                using var masks = batch.Masks ?? zeros(maps.shape, device: maps.device);
                if (batch.HasMask.All(m => m))
                {
                    builder.Add(batch.ClassNames, maps.cpu(), masks.cpu());
                }
                else
                {
                    // Images without pixel labels add their image scores only.
                    int height = (int)maps.shape[^2], width = (int)maps.shape[^1];
                    var mapValues = maps.cpu().contiguous().data<float>().ToArray();
                    var maskValues = masks.cpu().to(float32).contiguous().data<float>().ToArray();
                    int size = height * width;
                    for (int i = 0; i < batch.Count; i++)
                    {
                        var map = mapValues.AsSpan(i * size, size);
                        if (batch.HasMask[i])
                        {
                            builder.Add(batch.ClassNames[i], map, maskValues.AsSpan(i * size, size), height, width);
                        }
                        else
                        {
                            builder.AddWithoutMask(batch.ClassNames[i], map, height, width, batch.Samples[i].IsAnomalous);
                        }
                    }
                }
                done += batch.Count;
                progress?.Report(new DataProgress("evaluation", done, test.Samples.Count));
            }
        }

        return builder.Build();
    }
}
