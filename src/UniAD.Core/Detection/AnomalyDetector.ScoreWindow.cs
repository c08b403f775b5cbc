using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using UniAD.Core.Metrics;

namespace UniAD.Core.Detection;

/// <summary>One candidate of <see cref="AnomalyDetector.SelectScoreWindow"/>: a pooled-max window and its validation image AUROC.</summary>
/// <param name="Window">The window, rows x columns in map pixels.</param>
/// <param name="ImageAuroc">The image AUROC of the pooled max over that window: the mean over the classes that hold normal and anomalous images.</param>
public sealed record ScoreWindowCandidate(GridSize Window, double ImageAuroc);

/// <summary>What <see cref="AnomalyDetector.SelectScoreWindow"/> measured and chose.</summary>
/// <param name="Chosen">The window now set on the detector (the best AUROC; the earliest candidate on a tie).</param>
/// <param name="Candidates">Every candidate in the order given, with its AUROC.</param>
/// <param name="Images">Validation images scored.</param>
/// <param name="AnomalousImages">Of them, anomalous.</param>
/// <param name="Classes">The classes whose AUROC entered the mean.</param>
public sealed record ScoreWindowSelection(GridSize Chosen, IReadOnlyList<ScoreWindowCandidate> Candidates, int Images, int AnomalousImages, IReadOnlyList<string> Classes);

public sealed partial class AnomalyDetector
{
    /// <summary>
    /// Chooses the pooled-max window of the image score on a VALIDATION source that holds normal and anomalous images
    /// (never the test split): every candidate's image AUROC is measured on the same maps (computed once, with the
    /// reference maps if fitted), the best one is set with <see cref="SetImageScore"/> (so a calibration is dropped:
    /// calibrate afterwards) and every figure is returned. Long, thin defects running across the part (scratches,
    /// KolektorSDD's cracks) favour wide, flat windows; blobs favour square ones. A window larger than a map scores it
    /// by its plain maximum, as <see cref="ImageScoreKind.PooledMax"/> does.
    /// </summary>
    /// <param name="validation">Validation images with image-level labels (masks are not needed).</param>
    /// <param name="candidates">Windows to compare (rows x columns in map pixels, each side at least 1).</param>
    /// <param name="batchSize">Batch size of the scoring pass.</param>
    /// <param name="progress">Receives the images scored so far.</param>
    /// <param name="cancellationToken">Cancels between batches.</param>
    /// <exception cref="ArgumentException">No candidate, or a candidate with a side below 1 (named).</exception>
    /// <exception cref="InvalidDataException">No class of the source holds both normal and anomalous images.</exception>
    public ScoreWindowSelection SelectScoreWindow(IImageSource validation, IReadOnlyList<GridSize> candidates, int batchSize = 8, IProgress<DataProgress>? progress = null, CancellationToken cancellationToken = default)
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
        foreach (var (maps, batch) in Maps(validation, batchSize, loadMasks: false, cancellationToken))
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

        SetImageScore(ImageScoreKind.PooledMax, best.Window.Height, best.Window.Width);
        int images = labels.Values.Sum(l => l.Count), anomalous = labels.Values.Sum(l => l.Count(x => x));
        logger.LogInformation(
            "Score window {Height} x {Width} chosen on {Images} validation images ({Anomalous} anomalous): {Figures}.",
            best.Window.Height, best.Window.Width, images, anomalous, string.Join(", ", figures.Select(f => FormattableString.Invariant($"{f.Window.Height}x{f.Window.Width} {f.ImageAuroc:F3}"))));
        return new ScoreWindowSelection(best.Window, figures, images, anomalous, classes);
    }
}
