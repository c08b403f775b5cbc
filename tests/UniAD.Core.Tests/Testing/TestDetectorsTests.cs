using System.Diagnostics;
using UniAD.Core.Detection;
using UniAD.Core.Testing;
using Xunit.Abstractions;

namespace UniAD.Core.Tests.Testing;

/// <summary>The tiny detector consumers' tests build: verdicts on its own images, determinism, save and load.</summary>
public sealed class TestDetectorsTests(ITestOutputHelper output)
{
    [Fact]
    public void The_tiny_detector_passes_its_normal_images_flags_its_defective_ones_and_is_deterministic()
    {
        var watch = Stopwatch.StartNew();
        using var detector = TestDetectors.Tiny(seed: 3);
        output.WriteLine($"built in {watch.Elapsed.TotalSeconds:F1} s; threshold {detector.Calibration!.ImageThreshold:G5}");
        Assert.Equal(ModelFamilies.MemoryBank, detector.Family);
        Assert.Equal(new GridSize(TestDetectors.ImageSize, TestDetectors.ImageSize), detector.Options.InputSize);

        IImageScorer scorer = detector; // the contract consumers' code is written against
        var normal = Enumerable.Range(0, 40).Select(i => scorer.Score(TestDetectors.NormalImage(i), $"normal {i}", TestDetectors.ClassName)).ToList();
        var defective = Enumerable.Range(0, 40).Select(i => scorer.Score(TestDetectors.DefectiveImage(i).Image, $"defective {i}", TestDetectors.ClassName)).ToList();
        output.WriteLine($"normal scores {string.Join(", ", normal.Select(r => r.Score.ToString("G4")))}");
        output.WriteLine($"defective scores {string.Join(", ", defective.Select(r => r.Score.ToString("G4")))}");
        Assert.All(normal, r => Assert.False(r.IsAnomalous, $"{r.Source}: {r.Score:G5}"));
        Assert.All(defective, r => Assert.True(r.IsAnomalous, $"{r.Source}: {r.Score:G5}"));

        // The map is higher on the painted defect than off it.
        var (image, mask) = TestDetectors.DefectiveImage(1);
        var map = scorer.Score(image).Map.Values.ToArray();
        double on = map.Where((_, i) => mask[i] == 1).Average(), off = map.Where((_, i) => mask[i] == 0).Average();
        output.WriteLine($"map on the defect {on:G4}, off it {off:G4}");
        Assert.True(on > 2 * off, $"map on the defect {on:G4}, off it {off:G4}");

        using var again = TestDetectors.Tiny(seed: 3);
        Assert.Equal(detector.Calibration.ImageThreshold, again.Calibration!.ImageThreshold);
        Assert.Equal(defective[5].Score, again.Score(TestDetectors.DefectiveImage(5).Image).Score);
        using var other = TestDetectors.Tiny(seed: 4);
        Assert.NotEqual(detector.Calibration.ImageThreshold, other.Calibration!.ImageThreshold);
    }

    [Fact]
    public void Images_are_fixed_by_their_seed_and_a_cancelled_build_throws()
    {
        Assert.Equal(TestDetectors.NormalImage(7).Pixels.ToArray(), TestDetectors.NormalImage(7).Pixels.ToArray());
        Assert.NotEqual(TestDetectors.NormalImage(7).Pixels.ToArray(), TestDetectors.NormalImage(8).Pixels.ToArray());
        var (image, mask) = TestDetectors.DefectiveImage(2);
        Assert.Equal(TestDetectors.ImageSize * TestDetectors.ImageSize, mask.Length);
        Assert.Contains((byte)1, mask);
        Assert.NotEqual(TestDetectors.NormalImage(2).Pixels.ToArray(), image.Pixels.ToArray());

        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => TestDetectors.Tiny(cancellationToken: cancelled.Token));
    }
}
