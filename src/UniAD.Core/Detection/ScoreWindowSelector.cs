using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using UniAD.Core.Metrics;

namespace UniAD.Core.Detection;

/// <summary>
/// Score-window selection: every candidate pooled-max window's image AUROC measured on one pass of validation maps
/// (<see cref="MapSource"/>), the best set on the detector (<see cref="AnomalyDetector.SetImageScore"/>) and every figure
/// returned as a <see cref="ScoreWindowSelection"/>.
/// </summary>
internal static class ScoreWindowSelector
{
    /// <summary>The body of <see cref="AnomalyDetector.SelectScoreWindow"/>.</summary>
    public static ScoreWindowSelection Select(AnomalyDetector detector, IImageSource validation, IReadOnlyList<GridSize> candidates, int batchSize, IProgress<DataProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(validation);
        ArgumentNullException.ThrowIfNull(candidates);
        if (candidates.Count == 0)
        {
            throw new ArgumentException("Give at least one candidate window.", nameof(candidates));
        }

        foreach (var c in candidates)
        {
            if (c.Height < 1 || c.Width < 1)
            {
                throw new ArgumentException($"The candidate window {c.Height} x {c.Width} needs sides of at least 1.", nameof(candidates));
            }
        }

        var usable = validation.Samples.GroupBy(s => s.ClassName, StringComparer.Ordinal)
            .Where(g => g.Any(s => s.IsAnomalous) && g.Any(s => !s.IsAnomalous)).Select(g => g.Key).ToHashSet(StringComparer.Ordinal);
        if (usable.Count == 0)
        {
            throw new InvalidDataException($"'{validation.Name}' has no class with both normal and anomalous images: a window can only be chosen on validation images that hold defects.");
        }

        var labels = new Dictionary<string, List<bool>>(StringComparer.Ordinal);
        var scores = new Dictionary<string, List<double>[]>(StringComparer.Ordinal);
        int done = 0;
        foreach (var (maps, batch) in MapSource.Maps(detector, validation, batchSize, loadMasks: false, cancellationToken))
        {
            using (batch)
            {
                int height = (int)maps.shape[^2], width = (int)maps.shape[^1], size = height * width;
                var values = maps.cpu().contiguous().data<float>().ToArray();
                for (int i = 0; i < batch.Count; i++)
                {
                    var sample = batch.Samples[i];
                    if (!usable.Contains(sample.ClassName))
                    {
                        continue;
                    }

                    if (!labels.TryGetValue(sample.ClassName, out var classLabels))
                    {
                        labels[sample.ClassName] = classLabels = [];
                        scores[sample.ClassName] = candidates.Select(_ => new List<double>()).ToArray();
                    }

                    classLabels.Add(sample.IsAnomalous);
                    var map = values.AsSpan(i * size, size);
                    var classScores = scores[sample.ClassName];
                    for (int c = 0; c < candidates.Count; c++)
                    {
                        var w = candidates[c];
                        classScores[c].Add(MapScore.Of(map, height, width, ImageScoreKind.PooledMax, w.Height, w.Width));
                    }
                }

                done += batch.Count;
                progress?.Report(new DataProgress("score window", done, validation.Samples.Count));
            }
        }

        var classes = labels.Keys.Order(StringComparer.Ordinal).ToList();
        var figures = new List<ScoreWindowCandidate>(candidates.Count);
        for (int c = 0; c < candidates.Count; c++)
        {
            double mean = classes.Average(name => BinaryClassification.Auroc(scores[name][c].ToArray(), labels[name].ToArray()));
            figures.Add(new ScoreWindowCandidate(candidates[c], mean));
        }

        var best = figures[0];
        foreach (var f in figures)
        {
            best = f.ImageAuroc > best.ImageAuroc ? f : best;
        }

        detector.SetImageScore(ImageScoreKind.PooledMax, best.Window.Height, best.Window.Width);
        int images = labels.Values.Sum(l => l.Count), anomalous = labels.Values.Sum(l => l.Count(x => x));
        detector.Logger.LogInformation(
            "Score window {Height} x {Width} chosen on {Images} validation images ({Anomalous} anomalous): {Figures}.",
            best.Window.Height, best.Window.Width, images, anomalous, string.Join(", ", figures.Select(f => FormattableString.Invariant($"{f.Window.Height}x{f.Window.Width} {f.ImageAuroc:F3}"))));
        return new ScoreWindowSelection(best.Window, figures, images, anomalous, classes);
    }
}
