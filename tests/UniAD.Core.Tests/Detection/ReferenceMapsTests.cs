using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;
using UniAD.Core.Tests.Data;
using UniAD.Core.Weights;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Tests.Detection;

/// <summary>Per-class reference maps: fitted on normal training images, applied to every map, stored with the model.</summary>
public sealed class ReferenceMapsTests(SyntheticData data) : IClassFixture<SyntheticData>
{
    [Fact]
    public void Maps_are_divided_by_their_class_reference_and_the_class_is_required()
    {
        using var temp = new TempFolder();
        var rawPath = temp.File("raw.safetensors");
        using var detector = SyntheticData.TinyBuilder().Build();
        detector.Train(data.Train, SyntheticData.Quick(1));
        detector.Calibrate(data.Test);
        detector.Save(rawPath);
        var sample = data.Test.Samples.First(s => s.IsAnomalous);
        var raw = detector.Score(sample.ImagePath);

        var references = detector.FitReferenceMaps(data.Train, new ReferenceMapOptions { MaxSide = 16 });
        Assert.Null(detector.Calibration); // thresholds were on the raw scale
        Assert.Equal(new[] { "disc", "stripes" }, references.Classes.Keys.Order(StringComparer.Ordinal));
        var disc = references.Classes["disc"];
        var discTrain = data.Train.Samples.Where(s => s.ClassName == "disc").ToList();
        Assert.Equal((16, 16, discTrain.Count), (disc.Height, disc.Width, disc.Images));
        Assert.Equal(0.05 * disc.Values.Average(v => (double)v), disc.Epsilon, 1e-9);

        // By hand: the mean of the raw maps in 4 x 4 blocks, then a 3 x 3 box (fewer cells at the border).
        using (var rawDetector = AnomalyDetector.Load(rawPath))
        {
            var blocks = new double[16, 16];
            foreach (var s in discTrain)
            {
                var m = rawDetector.Score(s.ImagePath).Map;
                for (int y = 0; y < 64; y++)
                {
                    for (int x = 0; x < 64; x++)
                    {
                        blocks[y / 4, x / 4] += m[x, y] / 16.0 / discTrain.Count;
                    }
                }
            }

            foreach (var (y, x) in new[] { (0, 0), (5, 9), (15, 7) })
            {
                double sum = 0;
                int n = 0;
                for (int yy = Math.Max(0, y - 1); yy <= Math.Min(15, y + 1); yy++)
                {
                    for (int xx = Math.Max(0, x - 1); xx <= Math.Min(15, x + 1); xx++)
                    {
                        sum += blocks[yy, xx];
                        n++;
                    }
                }

                Assert.Equal(sum / n, disc.Values[(y * 16) + x], 1e-5 * Math.Max(1, Math.Abs(sum / n)));
            }
        }

        // A seeded subset when a class has more images than asked for.
        using (var other = AnomalyDetector.Load(rawPath))
        {
            Assert.Equal(5, other.FitReferenceMaps(data.Train, new ReferenceMapOptions { MaxSide = 16, ImagesPerClass = 5 }).Classes["disc"].Images);
        }

        Assert.Contains("pass the image's class", Assert.Throws<ArgumentException>(() => detector.Score(sample.ImagePath)).Message);
        Assert.Contains("No reference map for class 'widget'", Assert.Throws<ArgumentException>(() => detector.Score(sample.ImagePath, "widget")).Message);

        var normalized = detector.Score(sample.ImagePath, sample.ClassName);
        using var map = tensor(raw.Map.Values.ToArray(), new long[] { 1, 64, 64 });
        using var expected = references.Normalize(map, new[] { sample.ClassName });
        var want = expected.data<float>().ToArray();
        var got = normalized.Map.Values.ToArray();
        for (int i = 0; i < want.Length; i++)
        {
            Assert.True(Math.Abs(want[i] - got[i]) <= 1e-5 * Math.Max(1, Math.Abs(want[i])), $"pixel {i}: {got[i]} vs {want[i]}");
        }

        // Upsampling is bilinear with half-pixel centres: the reference at full size, by hand at one pixel.
        using var grid = tensor(disc.Values.ToArray(), new long[] { 1, 1, 16, 16 });
        using var up = F.interpolate(grid, new long[] { 64, 64 }, mode: InterpolationMode.Bilinear, align_corners: false);
        float r = up[0, 0, 10, 20].item<float>();
        Assert.Equal(raw.Map[20, 10] / (r + disc.Epsilon), normalized.Map[20, 10], 1e-5 * Math.Max(1, Math.Abs(normalized.Map[20, 10])));

        // Evaluation and calibration take each sample's class; batch and async forms take one.
        var report = detector.Evaluate(data.Test);
        Assert.True(report.Mean[MetricKeys.PixelAuroc] > 0);
        var calibration = detector.Calibrate(data.Test);
        Assert.NotNull(calibration);
        var batch = detector.ScoreBatch(data.Test.Samples.Where(s => s.ClassName == "disc").Select(s => s.ImagePath), 2, className: "disc");
        Assert.Equal(detector.Score(batch[0].Source!, "disc").Score, batch[0].Score, 1e-5 * Math.Max(1, Math.Abs(batch[0].Score)));
    }

    [Fact]
    public void Reference_maps_are_saved_with_the_model_and_checked_at_load()
    {
        using var temp = new TempFolder();
        var path = temp.File("ref.safetensors");
        using var detector = SyntheticData.TinyBuilder().Build();
        var references = detector.FitReferenceMaps(data.Train, new ReferenceMapOptions { MaxSide = 8 });
        detector.Calibrate(data.Test);
        detector.Save(path);
        using (var loaded = AnomalyDetector.Load(path))
        {
            Assert.NotNull(loaded.ReferenceMaps);
            foreach (var (name, r) in references.Classes)
            {
                Assert.Equal(r.Values, loaded.ReferenceMaps!.Classes[name].Values);
                Assert.Equal(r.Epsilon, loaded.ReferenceMaps.Classes[name].Epsilon);
            }

            var s = data.Test.Samples[0];
            Assert.Equal(detector.Score(s.ImagePath, s.ClassName).Score, loaded.Score(s.ImagePath, s.ClassName).Score);
            loaded.ClearReferenceMaps();
            Assert.Null(loaded.ReferenceMaps);
            Assert.Null(loaded.Calibration);
            loaded.Score(s.ImagePath); // raw again: no class needed
        }

        // A checkpoint whose reference tensor is missing is refused.
        var (tensors, metadata) = SafetensorsFile.Read(path);
        using (tensors)
        {
            var kept = tensors.Where(kv => kv.Key != "reference.0").ToDictionary(kv => kv.Key, kv => kv.Value);
            SafetensorsFile.Write(path, kept, metadata);
        }

        Assert.Contains("reference map of class 'disc'", Assert.Throws<InvalidDataException>(() => AnomalyDetector.Load(path)).Message);
        Assert.Throws<InvalidDataException>(() => detector.FitReferenceMaps(new ImageSource("defects", data.Test.Samples.Where(x => x.IsAnomalous))));
        Assert.Throws<ArgumentOutOfRangeException>(() => detector.FitReferenceMaps(data.Train, new ReferenceMapOptions { EpsilonFraction = 0 }));
    }
}
