using System.Text.Json.Nodes;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;
using UniAD.Core.Tiling;
using UniAD.Core.Weights;

namespace UniAD.Core.Tests.Detection;

/// <summary>The detector with <see cref="DetectorOptions.Tiling"/>: equivalence with untiled runs, checkpoints, and a defect that only tiling finds.</summary>
public sealed class TilingTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("uniad-tiling-").FullName;

    [Fact]
    public void One_tile_per_image_trains_scores_calibrates_and_evaluates_like_no_tiling()
    {
        // 96 x 96 images: untiled, each is resized to 64 x 64 with PIL's filter; tiled with ResizeTo = 64 x 64 the
        // whole image is resized the same way and is its own single tile. Every figure must agree (up to float32 rounding where batch sizes differ).
        var data = Path.Combine(root, "data");
        SyntheticDefects.Generate(data, new SyntheticDatasetOptions { Classes = new[] { SyntheticClass.Stripes }, ImageSize = 96, TrainPerClass = 6, TestGoodPerClass = 2, TestPerDefect = 1, Seed = 8 });
        var train = MvtecAd.Open(data, DatasetSplit.Train);
        var test = MvtecAd.Open(data, DatasetSplit.Test);
        using var plain = SyntheticData.TinyBuilder().Build();
        using var tiled = SyntheticData.TinyBuilder().WithTiling(new TilingOptions { ResizeTo = new GridSize(64, 64) }).Build();
        var plainTraining = plain.Train(train, SyntheticData.Quick(2));
        var tiledTraining = tiled.Train(train, SyntheticData.Quick(2));
        Assert.Equal(plainTraining.EpochLosses, tiledTraining.EpochLosses);

        // One image per pass on both sides (the tiled detector scores one tile at a time): batches of several images may
        // round float32 sums differently by batch on some CPUs, which can swap near-tied pixels and move AP or F1 by 1/P.
        var plainReport = plain.Evaluate(test, batchSize: 1).Mean;
        var tiledReport = tiled.Evaluate(test, batchSize: 1).Mean;
        Assert.Equal(plainReport.Keys.Order(), tiledReport.Keys.Order());
        // The maps agree to float32 rounding (1e-5, below), and which rounding depends on the CPU's GEMM kernels: on AVX-512
        // every metric came out equal to 1e-9, on an AVX2-only machine two nearly tied pixels swapped order and moved the pixel
        // AUROC by 7e-8. A swap of near-ties can move a rank metric by at most a few pairs in ~10^5 pixels: 1e-6.
        Assert.All(plainReport, kv => Assert.Equal(kv.Value, tiledReport[kv.Key], 1e-6));

        var plainCalibration = plain.Calibrate(test, new CalibrationOptions { BatchSize = 1 });
        var tiledCalibration = tiled.Calibrate(test, new CalibrationOptions { BatchSize = 1 });
        // Both one image (tile) at a time: the same numbers up to float32 rounding.
        Assert.Equal((plainCalibration.Method, plainCalibration.Images), (tiledCalibration.Method, tiledCalibration.Images));
        Assert.Equal(plainCalibration.ImageThreshold, tiledCalibration.ImageThreshold, 1e-5);
        Assert.Equal(plainCalibration.ImageMin, tiledCalibration.ImageMin, 1e-5);
        Assert.Equal(plainCalibration.ImageMax, tiledCalibration.ImageMax, 1e-5);
        Assert.Equal(plainCalibration.PixelThreshold!.Value, tiledCalibration.PixelThreshold!.Value, 1e-5);
        Assert.Equal(plainCalibration.PixelMin, tiledCalibration.PixelMin, 1e-5);
        Assert.Equal(plainCalibration.PixelMax, tiledCalibration.PixelMax, 1e-5);

        var image = test.Samples.First(s => s.IsAnomalous).ImagePath;
        var a = plain.Score(image);
        var b = tiled.Score(image);
        Assert.Equal((96, 96), (b.Map.Width, b.Map.Height));
        Assert.Equal(a.Score, b.Score, 1e-5);
        Assert.Equal(a.Map.Values.Length, b.Map.Values.Length);
        Assert.True(a.Map.Values.ToArray().Zip(b.Map.Values.ToArray()).All(p => Math.Abs(p.First - p.Second) <= 1e-5), "maps differ");
        Assert.Equal(a.IsAnomalous, b.IsAnomalous);
    }

    [Fact]
    public void Tiling_is_saved_with_the_model_and_old_checkpoints_load_untiled()
    {
        var image = new RgbImage(130, 80, Enumerable.Range(0, 130 * 80 * 4).Select(i => (byte)(i * 31 % 251)).ToArray());
        var tiling = new TilingOptions { Stride = new GridSize(48, 40), ResizeWidth = 96, Placement = TilePlacement.Spread, MaxTilesPerImage = 99, MaxPixels = 1_000_000 };
        using var detector = SyntheticData.TinyBuilder().WithTiling(tiling).Build();
        var path = Path.Combine(root, "tiled.safetensors");
        detector.Save(path);
        Assert.Equal(tiling, DetectorCheckpoint.ReadInfo(path).Options.Tiling);
        using (var loaded = AnomalyDetector.Load(path))
        {
            Assert.Equal(tiling, loaded.Options.Tiling);
            var before = detector.Score(image);
            var after = loaded.Score(image);
            Assert.Equal((130, 80), (after.Map.Width, after.Map.Height)); // maps come back at the image's own size
            Assert.Equal(before.Score, after.Score);
            Assert.Equal(before.Map.Values.ToArray(), after.Map.Values.ToArray());
        }

        // A checkpoint written before tiling existed has no "Tiling" key at all.
        var old = Path.Combine(root, "old.safetensors");
        var (tensors, metadata) = SafetensorsFile.Read(path);
        using (tensors)
        {
            var info = JsonNode.Parse(metadata["uniad.info"])!;
            Assert.True(info["Options"]!.AsObject().Remove("Tiling"));
            SafetensorsFile.Write(old, tensors, new Dictionary<string, string> { ["uniad.format"] = metadata["uniad.format"], ["uniad.info"] = info.ToJsonString() });
        }

        Assert.DoesNotContain("Tiling", SafetensorsFile.ReadMetadata(old)["uniad.info"]);
        using var untiled = AnomalyDetector.Load(old);
        Assert.Null(untiled.Options.Tiling);
        Assert.Equal((130, 80), (untiled.Score(image).Map.Width, untiled.Score(image).Map.Height));

        // A resume with other tiling is refused like any other change of configuration.
        using var other = SyntheticData.TinyBuilder().WithTiling(tiling with { Stride = new GridSize(32, 32) }).Build();
        var ckpt = Path.Combine(root, "resumable.safetensors");
        using (var trainer = SyntheticData.TinyBuilder().WithTiling(tiling).Build())
        {
            trainer.Train(new ImageSource("one", new[] { WriteImage("one.png", image) }), SyntheticData.Quick(1) with { CheckpointPath = ckpt });
        }

        Assert.Contains("another configuration", Assert.Throws<InvalidDataException>(() => other.Train(new ImageSource("one", new[] { WriteImage("one.png", image) }), SyntheticData.Quick(2) with { ResumeFrom = ckpt })).Message);
        Assert.Contains("Stride = 0x0", Assert.Throws<ArgumentException>(() => SyntheticData.TinyBuilder().WithTiling(new TilingOptions { Stride = new GridSize(0, 0) }).Build()).Message);
    }

    [Fact]
    public void A_defect_in_fine_structure_is_lost_when_the_image_is_squashed_and_found_with_tiles()
    {
        const int seed = 1;
        // 256 x 256 grey images of horizontal stripes 2 pixels wide (period 4) with noise; a defect is a 12 x 12
        // patch (0.2 % of the image) where the stripes run vertically: the same mean grey, so the 4 x downscale to the 64 x 64 input
        // averages it away, while 64 x 64 tiles at full resolution see it plainly.
        var data = Path.Combine(root, "stripes");
        WriteStripes(data, seed, train: 8, good: 8, defective: 8);
        var train = MvtecAd.Open(data, DatasetSplit.Train);
        var test = MvtecAd.Open(data, DatasetSplit.Test);
        string imageKey = MetricKeys.ImageAuroc(ImageScoreKind.PooledMax);
        AnomalyDetectorBuilder Builder() => new AnomalyDetectorBuilder()
            .WithBackbone("resnet18", new[] { 1, 2 })
            .WithInputSize(64, 64)
            .WithNeckStride(8)
            .WithNeighborMask(3, 3)
            .WithReconstruction(o => o with { HiddenDim = 64, NumHeads = 4, NumEncoderLayers = 1, NumDecoderLayers = 1, FeedForwardDim = 128 })
            .WithImageScore(ImageScoreKind.PooledMax, 8)
            .WithSeed(seed);

        // The same number of optimizer steps (64) for both: 8 images a step untiled, 16 of the 128 tiles tiled.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var untiled = Builder().Build();
        untiled.Train(train, new TrainingOptions { Epochs = 64, BatchSize = 8, Optimizer = new() { LearningRate = 1e-3 } });
        var plain = untiled.Evaluate(test).Mean;
        using var tiled = Builder().WithTiling(new TilingOptions()).Build();
        tiled.Train(train, new TrainingOptions { Epochs = 8, BatchSize = 16, Optimizer = new() { LearningRate = 1e-3 } });
        var tiles = tiled.Evaluate(test).Mean;
        string figures = $"seed {seed}: untiled image AUROC {plain[imageKey]:F3}, pixel AUROC {plain[MetricKeys.PixelAuroc]:F3}; tiled image AUROC {tiles[imageKey]:F3}, pixel AUROC {tiles[MetricKeys.PixelAuroc]:F3} ({clock.Elapsed.TotalSeconds:F1} s)";
        Console.WriteLine(figures);

        var result = tiled.Score(test.Samples.First(s => s.IsAnomalous).ImagePath);
        Assert.Equal((256, 256), (result.Map.Width, result.Map.Height));
        // Measured with seeds 1..5 (tiled / untiled): image AUROC 0.83/0.38, 0.84/0.44, 1.00/0.61, 0.84/0.70, 0.86/0.58;
        // pixel AUROC 0.95/0.65, 0.94/0.33, 0.97/0.43, 0.93/0.49, 0.83/0.35. Untiled is chance (16 test images make
        // it noisy); the margins asserted are below the smallest seen (image +0.14, pixel +0.31).
        Assert.True(tiles[imageKey] >= 0.75, figures);
        Assert.True(tiles[imageKey] >= plain[imageKey] + 0.1, figures);
        Assert.True(tiles[MetricKeys.PixelAuroc] >= 0.8, figures);
        Assert.True(tiles[MetricKeys.PixelAuroc] >= plain[MetricKeys.PixelAuroc] + 0.2, figures);
    }

    /// <summary>Writes an MVTec-layout class "stripes": train/good, test/good, test/patch with masks.</summary>
    private static void WriteStripes(string folder, int seed, int train, int good, int defective)
    {
        const int size = 256, patch = 12;
        var random = new Random(seed);
        RgbImage Render(bool defect, byte[]? mask)
        {
            int phase = random.Next(4);
            int py = random.Next(16, size - 16 - patch), px = random.Next(16, size - 16 - patch);
            var rgb = new byte[size * size * 3];
            for (int y = 0; y < size; y++)
            {
                for (int x = 0; x < size; x++)
                {
                    bool inside = defect && y >= py && y < py + patch && x >= px && x < px + patch;
                    int along = inside ? x : y;
                    double noise = (random.NextDouble() + random.NextDouble() + random.NextDouble() - 1.5) * 16;
                    double v = 128 + (((along + phase) / 2 % 2 == 0) ? 40 : -40) + noise;
                    byte b = (byte)Math.Clamp(Math.Round(v), 0, 255);
                    int i = ((y * size) + x) * 3;
                    rgb[i] = rgb[i + 1] = rgb[i + 2] = b;
                    if (inside && mask is not null)
                    {
                        mask[(y * size) + x] = 255;
                    }
                }
            }

            return RgbImage.FromRgb(size, size, rgb);
        }

        void Write(string split, string kind, int count, bool defect)
        {
            var dir = Directory.CreateDirectory(Path.Combine(folder, "stripes", split, kind)).FullName;
            for (int n = 0; n < count; n++)
            {
                var mask = defect ? new byte[size * size] : null;
                ImageWriter.WritePng(Path.Combine(dir, $"{n:D3}.png"), Render(defect, mask), 1);
                if (mask is not null)
                {
                    var masks = Directory.CreateDirectory(Path.Combine(folder, "stripes", "ground_truth", kind)).FullName;
                    ImageWriter.WriteGrayPng(Path.Combine(masks, $"{n:D3}_mask.png"), size, size, mask, 1);
                }
            }
        }

        Write("train", "good", train, defect: false);
        Write("test", "good", good, defect: false);
        Write("test", "patch", defective, defect: true);
    }

    public void Dispose() => Directory.Delete(root, recursive: true);

    private ImageSample WriteImage(string name, RgbImage image)
    {
        var path = Path.Combine(root, name);
        ImageWriter.WritePng(path, image);
        return new ImageSample(path, null, 0, "part", "good");
    }
}
