using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using UniAD.Core.TorchSupport;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Detection;

/// <summary>
/// Reference-map fitting (<see cref="Detection.ReferenceMaps"/>): the mean raw map of sampled normal images per class,
/// pooled down and smoothed, set on the detector under its lock (dropping its calibration).
/// </summary>
internal static class ReferenceMapFitting
{
    /// <summary>The body of <see cref="AnomalyDetector.FitReferenceMaps"/>.</summary>
    public static ReferenceMaps Fit(AnomalyDetector detector, IImageSource normalImages, ReferenceMapOptions? options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(normalImages);
        options ??= new ReferenceMapOptions();
        options.Validate();
        var chosen = normalImages.Samples.Where(s => !s.IsAnomalous)
            .GroupBy(s => s.ClassName, StringComparer.Ordinal)
            .SelectMany(g =>
            {
                var members = g.ToList();
                return members.Count <= options.ImagesPerClass
                    ? members
                    : SeededRandom.For(options.Seed, 0x5EF, NameHash(g.Key)).Sample(members.Count, options.ImagesPerClass).Order().Select(i => members[i]);
            })
            .ToList();
        if (chosen.Count == 0)
        {
            throw new InvalidDataException($"'{normalImages.Name}' has no normal image to fit reference maps with.");
        }

        var sums = new Dictionary<string, (Tensor Sum, int Count)>(StringComparer.Ordinal);
        try
        {
            foreach (var (maps, batch) in MapSource.Maps(detector, new ImageSource(normalImages.Name, chosen), options.BatchSize, loadMasks: false, cancellationToken, raw: true))
            {
                using (batch)
                {
                    for (int i = 0; i < batch.Count; i++)
                    {
                        using var scope = NewDisposeScope();
                        var name = batch.Samples[i].ClassName;
                        var map = maps[i].to(float64).unsqueeze(0).unsqueeze(0);
                        long h = map.shape[2], w = map.shape[3];
                        if (sums.TryGetValue(name, out var acc))
                        {
                            var grid = F.adaptive_avg_pool2d(map, new[] { acc.Sum.shape[0], acc.Sum.shape[1] })[0, 0];
                            acc.Sum.PlusInPlace(grid); // ScalarSafe: an implicit alpha can be freed under the call (it crashed a 30-minute run)
                            sums[name] = (acc.Sum, acc.Count + 1);
                        }
                        else
                        {
                            double scale = Math.Min(1.0, options.MaxSide / (double)Math.Max(h, w));
                            long gh = Math.Max(1, (long)Math.Round(h * scale)), gw = Math.Max(1, (long)Math.Round(w * scale));
                            var grid = F.adaptive_avg_pool2d(map, new[] { gh, gw })[0, 0];
                            sums[name] = (grid.clone().MoveToOuterDisposeScope(), 1);
                        }
                    }
                }
            }

            var references = new List<ClassReferenceMap>();
            foreach (var (name, (sum, count)) in sums.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                using var scope = NewDisposeScope();
                var mean = sum.DividedBy(count).unsqueeze(0).unsqueeze(0);
                int k = options.SmoothRadius;
                var smooth = k == 0 ? mean : F.avg_pool2d(mean, 2 * k + 1, stride: 1, padding: k, count_include_pad: false);
                var values = smooth[0, 0].to(float32).contiguous().data<float>().ToArray();
                double epsilon = Math.Max(options.EpsilonFraction * values.Average(v => (double)v), 1e-12);
                references.Add(new ClassReferenceMap(name, (int)sum.shape[0], (int)sum.shape[1], values, epsilon, count));
            }

            var fitted = new ReferenceMaps(references);
            lock (detector.Gate)
            {
                detector.ReferenceMaps?.ClearCache();
                detector.ReferenceMaps = fitted;
                detector.Calibration = null;
            }

            detector.Logger.LogInformation("Fitted reference maps of {Classes} classes on {Images} normal images of {Source}; the calibration was cleared (calibrate again).", references.Count, chosen.Count, normalImages.Name);
            return fitted;
        }
        finally
        {
            foreach (var (sum, _) in sums.Values)
            {
                sum.Dispose();
            }
        }
    }

    /// <summary>The body of <see cref="AnomalyDetector.ClearReferenceMaps"/>: no reference maps and no calibration, under the detector's lock.</summary>
    public static void Clear(AnomalyDetector detector)
    {
        lock (detector.Gate)
        {
            if (detector.ReferenceMaps is not null)
            {
                detector.ReferenceMaps.ClearCache();
                detector.ReferenceMaps = null;
                detector.Calibration = null;
            }
        }
    }

    /// <summary>FNV-1a of a class name: a seed part that does not depend on the runtime's string hashing.</summary>
    private static long NameHash(string name)
    {
        ulong h = 14695981039346656037UL;
        foreach (char c in name)
        {
            h = unchecked((h ^ c) * 1099511628211UL);
        }

        return unchecked((long)h);
    }
}
