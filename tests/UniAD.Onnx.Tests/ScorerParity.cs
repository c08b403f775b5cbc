using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Export;
using UniAD.Core.Tests.Export;
using UniAD.Onnx;

namespace UniAD.Onnx.Tests;

/// <summary>Compares the scorer's results with the detector's: every map value and score within 1e-4 absolute or relative, verdicts and masks equal.</summary>
public static class ScorerParity
{
    /// <summary>The CPU with 2 intra-op threads (this machine's cores), as the parity tests run.</summary>
    public static readonly OnnxScorerOptions Cpu2 = new() { IntraOpThreads = 2 };

    /// <summary>Exports <paramref name="detector"/> into <paramref name="folder"/> and loads it with the scorer.</summary>
    public static OnnxAnomalyScorer ExportAndLoad(AnomalyDetector detector, string folder, string name, OnnxExportOptions? options = null)
    {
        var path = Path.Combine(folder, name);
        detector.ExportOnnx(path, options);
        return OnnxAnomalyScorer.Load(path, Cpu2);
    }

    /// <summary>
    /// Asserts that <paramref name="actual"/> (the scorer's) matches <paramref name="expected"/> (the detector's): same source,
    /// map size, every map value and the score within 1e-4 absolute or relative, the same verdict, the same mask pixels and a
    /// normalised score within 1e-4. Returns the largest absolute differences with their scales.
    /// </summary>
    public static ParityDiff Compare(AnomalyResult expected, AnomalyResult actual, string what)
    {
        Assert.Equal(expected.Source, actual.Source);
        Assert.True(expected.Map.Width == actual.Map.Width && expected.Map.Height == actual.Map.Height,
            $"{what}: the scorer's map is {actual.Map.Width} x {actual.Map.Height}, the detector's {expected.Map.Width} x {expected.Map.Height}.");
        double mapDiff = 0, mapScale = 0;
        var e = expected.Map.Values;
        var a = actual.Map.Values;
        for (int j = 0; j < e.Length; j++)
        {
            double d = Math.Abs(a[j] - (double)e[j]);
            mapDiff = Math.Max(mapDiff, d);
            mapScale = Math.Max(mapScale, Math.Abs(e[j]));
            if (!Within(d, e[j]))
            {
                Assert.Fail($"{what}: map pixel ({j % expected.Map.Width}, {j / expected.Map.Width}): scorer {a[j]:G9}, detector {e[j]:G9} (|diff| {d:E3} > 1e-4 abs/rel).");
            }
        }

        double scoreDiff = Math.Abs(actual.Score - expected.Score);
        Assert.True(Within(scoreDiff, expected.Score), $"{what}: score: scorer {actual.Score:G9}, detector {expected.Score:G9} (|diff| {scoreDiff:E3} > 1e-4 abs/rel).");
        // Verdicts agree, or the two scores (already within the tolerance) lie on the two sides of the one threshold: a
        // near-tie that float32 summation order decides (another CPU's kernels), never a different rule.
        Assert.True(expected.IsAnomalous == actual.IsAnomalous || (expected.IsAnomalous is { } ev && actual.IsAnomalous is not null && (ev ? actual.Score < expected.Score : actual.Score > expected.Score)),
            $"{what}: verdict: scorer {actual.IsAnomalous}, detector {expected.IsAnomalous} (scores {actual.Score:G9} / {expected.Score:G9}).");
        Assert.Equal(expected.NormalizedScore.HasValue, actual.NormalizedScore.HasValue);
        if (expected.NormalizedScore is { } n)
        {
            Assert.True(Math.Abs(actual.NormalizedScore!.Value - n) <= OnnxParity.Tolerance, $"{what}: normalised score {actual.NormalizedScore:G9} vs {n:G9}.");
        }

        Assert.Equal(expected.Mask is null, actual.Mask is null);
        if (expected.Mask is { } mask)
        {
            // The same for mask pixels: a pixel may differ only where the two maps straddle the one threshold (the
            // detector's value above the scorer's where only the detector marks it, and the reverse), and only rarely.
            int mismatches = 0;
            for (int j = 0; j < mask.Length; j++)
            {
                if (mask[j] != actual.Mask![j])
                {
                    Assert.True(mask[j] == 1 ? a[j] < e[j] : a[j] > e[j], $"{what}: mask pixel {j} is {mask[j]} for the detector (map {e[j]:G9}) and {actual.Mask[j]} for the scorer (map {a[j]:G9}): no one threshold gives both.");
                    mismatches++;
                }
            }

            Assert.True(mismatches <= Math.Max(1, mask.Length / 1000), $"{what}: {mismatches} of {mask.Length} mask pixels differ (near-ties allowed: 0.1 %).");
        }

        return new ParityDiff(mapDiff, mapScale, scoreDiff, Math.Abs(expected.Score));
    }

    /// <summary>The midpoint between <paramref name="sorted"/>[<paramref name="index"/>] and the next larger value (a threshold on no produced value).</summary>
    public static double Between<T>(IReadOnlyList<T> sorted, int index)
        where T : IConvertible
    {
        double at = sorted[index].ToDouble(System.Globalization.CultureInfo.InvariantCulture);
        var next = sorted.Skip(index + 1).Select(v => v.ToDouble(System.Globalization.CultureInfo.InvariantCulture)).FirstOrDefault(v => v > at, at + Math.Max(1e-6, Math.Abs(at) * 1e-3));
        return (at + next) / 2;
    }

    /// <summary>Compares lists of results pairwise and combines the differences.</summary>
    public static ParityDiff CompareAll(IReadOnlyList<AnomalyResult> expected, IReadOnlyList<AnomalyResult> actual, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        var all = Enumerable.Range(0, expected.Count).Select(i => Compare(expected[i], actual[i], $"{what}, image {i} ({expected[i].Source})")).ToList();
        return Max(all);
    }

    /// <summary>The largest of each difference and scale.</summary>
    public static ParityDiff Max(IEnumerable<ParityDiff> diffs)
    {
        var list = diffs.ToList();
        return new ParityDiff(list.Max(d => d.Map), list.Max(d => d.MapScale), list.Max(d => d.Score), list.Max(d => d.ScoreScale));
    }

    /// <summary>Deterministic RGB images of the given sizes (smooth gradients, a bright blob and noise), named by size.</summary>
    public static (RgbImage Image, string Name)[] Images(int seed, params (int Width, int Height)[] sizes)
    {
        var random = new Random(seed);
        return sizes.Select(s =>
        {
            var pixels = new byte[s.Width * s.Height * 4];
            double cx = random.NextDouble() * s.Width, cy = random.NextDouble() * s.Height, radius = Math.Max(4, Math.Min(s.Width, s.Height) / 6.0);
            for (int y = 0; y < s.Height; y++)
            {
                for (int x = 0; x < s.Width; x++)
                {
                    int i = ((y * s.Width) + x) * 4;
                    bool blob = ((x - cx) * (x - cx)) + ((y - cy) * (y - cy)) < radius * radius;
                    pixels[i] = (byte)Math.Clamp((255.0 * x / s.Width) + random.Next(-20, 21) + (blob ? 80 : 0), 0, 255);
                    pixels[i + 1] = (byte)Math.Clamp((255.0 * y / s.Height) + random.Next(-20, 21), 0, 255);
                    pixels[i + 2] = (byte)Math.Clamp(128 + (60 * Math.Sin(x / 7.0)) + random.Next(-20, 21) - (blob ? 60 : 0), 0, 255);
                    pixels[i + 3] = 255;
                }
            }

            return (new RgbImage(s.Width, s.Height, pixels), $"{s.Width}x{s.Height}");
        }).ToArray();
    }

    private static bool Within(double diff, double expected) => diff <= Math.Max(OnnxParity.Tolerance, OnnxParity.Tolerance * Math.Abs(expected));
}
