using Microsoft.Extensions.Logging;
using SkiaSharp;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Detection;

public sealed class AnomalyDetectorTests(SyntheticData data) : IClassFixture<SyntheticData>
{
    [Fact]
    public void Builder_is_single_use_and_validates_at_build()
    {
        var builder = SyntheticData.TinyBuilder();
        using (builder.Build())
        {
        }

        Assert.Contains("already built", Assert.Throws<InvalidOperationException>(() => builder.Build()).Message);
        Assert.Contains("NeckStride = 5", Assert.Throws<ArgumentException>(() => SyntheticData.TinyBuilder().WithNeckStride(5).Build()).Message);
        Assert.Contains("NumHeads = 3", Assert.Throws<ArgumentException>(() => SyntheticData.TinyBuilder().WithReconstruction(o => o with { NumHeads = 3 }).Build()).Message);
        Assert.Contains("vgg", Assert.Throws<ArgumentException>(() => SyntheticData.TinyBuilder().WithBackbone("vgg16").Build()).Message);
        Assert.Contains("tpu", Assert.Throws<ArgumentException>(() => SyntheticData.TinyBuilder().WithDevice("tpu").Build()).Message);
        var missing = Path.Combine(data.Root, "missing.pth");
        Assert.Contains(missing, Assert.Throws<FileNotFoundException>(() => SyntheticData.TinyBuilder().WithBackboneWeights(missing).Build()).Message);
        if (!cuda.is_available())
        {
            Assert.Contains("CUDA is not available", Assert.Throws<InvalidOperationException>(() => SyntheticData.TinyBuilder().WithDevice("cuda").Build()).Message);
        }
        else
        {
            using var onGpu = SyntheticData.TinyBuilder().WithDevice("cuda").Build();
            Assert.Equal(TorchSharp.DeviceType.CUDA, onGpu.Device.type);
        }
    }

    [Fact]
    public void Random_backbone_is_announced_and_options_are_derived()
    {
        var logger = new TestLogger();
        using var factory = new TestLoggerFactory(logger);
        using var detector = SyntheticData.TinyBuilder().WithLogging(factory).Build();
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("RANDOM", StringComparison.Ordinal));
        var o = detector.Options.Reconstruction;
        Assert.Equal(64, o.InputChannels);
        Assert.Equal(8, o.InputStride);
        Assert.Equal(new GridSize(8, 8), o.FeatureSize);
        Assert.Equal(7, o.Seed);
        Assert.Equal(TorchSharp.DeviceType.CPU, detector.Device.type);
    }

    [Fact]
    public void Train_save_load_gives_identical_scores_and_keeps_the_calibration()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var result = detector.Train(data.Train, SyntheticData.Quick(2));
        Assert.Equal(2, result.EpochsCompleted);
        Assert.Equal(2, result.EpochLosses.Count);
        Assert.True(result.EpochLosses[1] < result.EpochLosses[0], $"loss did not fall: {string.Join(", ", result.EpochLosses)}");
        var calibration = detector.Calibrate(data.Test);
        Assert.NotNull(calibration.PixelThreshold);

        var path = Path.Combine(data.Root, "detector.safetensors");
        detector.Save(path);
        var info = DetectorCheckpoint.ReadInfo(path);
        Assert.Equal(2, info.Epoch);
        Assert.False(info.HasOptimizerState);
        using var loaded = AnomalyDetector.Load(path);
        Assert.Equal(calibration, loaded.Calibration);
        Assert.Equal(2, loaded.EpochsTrained);
        foreach (var sample in data.Test.Samples.Take(4))
        {
            var a = detector.Score(sample.ImagePath);
            var b = loaded.Score(sample.ImagePath);
            Assert.Equal(a.Score, b.Score);
            Assert.Equal(a.IsAnomalous, b.IsAnomalous);
            Assert.True(a.Map.Values.SequenceEqual(b.Map.Values));
            Assert.NotNull(b.NormalizedScore);
            Assert.InRange(b.NormalizedScore!.Value, 0, 1);
            Assert.Equal(b.Score >= calibration.ImageThreshold, b.IsAnomalous);
        }
    }

    [Fact]
    public void Resumed_training_equals_an_uninterrupted_run()
    {
        var checkpoint = Path.Combine(data.Root, "resume.safetensors");
        using var straight = SyntheticData.TinyBuilder().Build();
        straight.Train(data.Train, SyntheticData.Quick(4));

        using (var first = SyntheticData.TinyBuilder().Build())
        {
            first.Train(data.Train, SyntheticData.Quick(2) with { CheckpointPath = checkpoint });
        }

        using var resumed = SyntheticData.TinyBuilder().Build();
        var result = resumed.Train(data.Train, SyntheticData.Quick(4) with { ResumeFrom = checkpoint });
        Assert.Equal(4, result.EpochsCompleted);
        Assert.Equal(2, result.EpochLosses.Count);
        var a = straight.Model.state_dict();
        var b = resumed.Model.state_dict();
        Assert.All(a.Keys, k => Assert.Equal(0f, (a[k].to(float32) - b[k].to(float32)).abs().max().item<float>()));
    }

    [Fact]
    public void Cancellation_keeps_the_last_checkpoint_loadable()
    {
        var checkpoint = Path.Combine(data.Root, "cancel.safetensors");
        using var cts = new CancellationTokenSource();
        using var detector = SyntheticData.TinyBuilder().Build();
        var progress = new SynchronousProgress<TrainingProgress>(p =>
        {
            if (p.Stage == "training" && p.Epoch == 3 && p.Step == 1)
            {
                cts.Cancel();
            }
        });
        Assert.ThrowsAny<OperationCanceledException>(() => detector.Train(data.Train, SyntheticData.Quick(5) with { CheckpointPath = checkpoint, CheckpointEvery = 1 }, progress, cts.Token));
        Assert.Empty(Directory.GetFiles(data.Root, "*.tmp"));
        var info = DetectorCheckpoint.ReadInfo(checkpoint);
        Assert.Equal(2, info.Epoch);
        Assert.True(info.HasOptimizerState);
        using var loaded = AnomalyDetector.Load(checkpoint);
        Assert.True(double.IsFinite(loaded.Score(data.Test.Samples[0].ImagePath).Score));
    }

    [Fact]
    public void Every_scoring_entry_point_agrees_and_maps_have_the_original_size()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var path = data.Test.Samples[^1].ImagePath;
        var fromFile = detector.Score(path);
        Assert.Equal(64, fromFile.Map.Width);
        Assert.Null(fromFile.IsAnomalous);
        Assert.Null(fromFile.Mask);
        using (var stream = File.OpenRead(path))
        {
            Assert.Equal(fromFile.Score, detector.Score(stream, path).Score);
        }

        using (var bitmap = SKBitmap.Decode(path))
        {
            Assert.Equal(fromFile.Score, detector.Score(bitmap).Score);
        }

        // A larger image: the map comes back at the image's own size.
        var big = Path.Combine(data.Root, "big.png");
        var (image, _) = SyntheticDefects.Render(SyntheticClass.Disc, SyntheticDefect.Spot, 100, 3);
        using (var bitmap = HeatmapRenderer.ToBitmap(image))
        {
            HeatmapRenderer.SavePng(bitmap, big);
        }

        var large = detector.Score(big);
        Assert.Equal((100, 100), (large.Map.Width, large.Map.Height));

        var paths = data.Test.Samples.Select(s => s.ImagePath).ToList();
        var batch = detector.ScoreBatch(paths, batchSize: 3);
        var parallel = new AnomalyResult[paths.Count];
        Parallel.For(0, paths.Count, i => parallel[i] = detector.Score(paths[i]));
        for (int i = 0; i < paths.Count; i++)
        {
            Assert.Equal(paths[i], batch[i].Source);
            Assert.Equal(batch[i].Score, parallel[i].Score, 1e-5 * Math.Max(1, Math.Abs(batch[i].Score)));
        }
    }

    [Fact]
    public void Long_scoring_runs_keep_a_flat_tensor_count()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var paths = Enumerable.Repeat(data.Test.Samples.Select(s => s.ImagePath), 3).SelectMany(p => p).ToList();
        detector.ScoreBatch(paths.Take(4));
        long before = TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        foreach (var _ in detector.ScoreStream(paths, batchSize: 4))
        {
        }

        Assert.Equal(before, TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void Bad_checkpoints_are_rejected_with_the_path()
    {
        var plain = Path.Combine(data.Root, "plain.safetensors");
        using (var t = zeros(2))
        {
            UniAD.Core.Weights.SafetensorsFile.Write(plain, new Dictionary<string, Tensor> { ["x"] = t });
        }

        Assert.Contains(plain, Assert.Throws<InvalidDataException>(() => AnomalyDetector.Load(plain)).Message);
        var text = Path.Combine(data.Root, "text.safetensors");
        File.WriteAllText(text, "hello");
        Assert.Contains(text, Assert.Throws<InvalidDataException>(() => AnomalyDetector.Load(text)).Message);
        Assert.Throws<FileNotFoundException>(() => AnomalyDetector.Load(Path.Combine(data.Root, "none.safetensors")));
    }

    [Fact]
    public void Calibration_by_false_alarm_rate_uses_normal_images_only()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var normal = data.Test.Where(s => s.Label == 0);
        var calibration = detector.Calibrate(normal, new CalibrationOptions { Method = CalibrationMethod.FalseAlarmRate, FalseAlarmRate = 0.2, MinimumNormalImages = 6 });
        var scores = normal.Samples.Select(s => detector.Score(s.ImagePath).Score).ToArray();
        // R7 quantile at 0.8 of the normal scores: at most 20 % of them (rounded up) lie strictly above it.
        Assert.True(scores.Count(s => s > calibration.ImageThreshold) <= (int)Math.Ceiling(0.2 * scores.Length));
        Assert.Contains("anomalous", Assert.Throws<InvalidDataException>(() => detector.Calibrate(normal)).Message);
        Assert.Equal(0.5, calibration.NormalizeImageScore(calibration.ImageThreshold), 1e-12);
    }

    [Fact]
    public void Evaluation_report_covers_every_class()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var report = detector.Evaluate(data.Test);
        Assert.Equal(new[] { "disc", "stripes" }, report.Classes.Select(c => c.Name).Order(StringComparer.Ordinal));
        Assert.True(report.Mean.ContainsKey(MetricKeys.PixelAuroc));
        Assert.InRange(report.Mean[MetricKeys.ImageAuroc(ImageScoreKind.PooledMax)], 0, 1);
    }

    [Fact]
    public void Images_without_masks_count_for_image_metrics_and_never_for_pixel_metrics()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        // A copy of the test split in which one defect type of 'stripes' has no ground_truth folder.
        var root = Path.Combine(data.Root, "unmasked-" + Guid.NewGuid().ToString("N")[..6]);
        foreach (var file in Directory.EnumerateFiles(Path.Combine(data.Root, "data"), "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(root, Path.GetRelativePath(Path.Combine(data.Root, "data"), file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }

        var stripes = data.Test.Samples.Where(s => s.ClassName == "stripes" && s.IsAnomalous).ToList();
        string defect = stripes[0].DefectType;
        Directory.Delete(Path.Combine(root, "stripes", "ground_truth", defect), recursive: true);
        var error = Assert.Throws<DirectoryNotFoundException>(() => MvtecAd.Open(root, DatasetSplit.Test));
        Assert.Contains(Path.Combine(root, "stripes", "test", defect), error.Message, StringComparison.Ordinal);

        var test = MvtecAd.Open(root, DatasetSplit.Test, new MvtecOptions { MissingMasks = MissingMaskPolicy.ImageLevelOnly });
        int unmasked = test.Samples.Count(s => !s.HasPixelLabels);
        Assert.Equal(stripes.Count(s => s.DefectType == defect), unmasked);
        // 'disc' as if no defect had a mask.
        var noDiscMasks = new ImageSource("no disc masks", test.Samples.Select(s => s.ClassName == "disc" && s.IsAnomalous ? s with { MaskPath = null } : s));

        // One image per batch everywhere: the three sources batch different images together, and batched float32 sums
        // may round differently by batch on some CPUs; the exact comparisons below need the same map for each image.
        var full = detector.Evaluate(data.Test, batchSize: 1);
        var report = detector.Evaluate(noDiscMasks, batchSize: 1);
        var masked = detector.Evaluate(new ImageSource("masked only", data.Test.Samples.Where(s => !(s.ClassName == "stripes" && s.DefectType == defect))), batchSize: 1);
        string imageKey = MetricKeys.ImageAuroc(ImageScoreKind.PooledMax);
        foreach (var name in new[] { "disc", "stripes" })
        {
            // Every image counts for the image metrics, with its label.
            var row = report.Classes.Single(c => c.Name == name);
            var fullRow = full.Classes.Single(c => c.Name == name);
            Assert.Equal((fullRow.Images, fullRow.AnomalousImages), (row.Images, row.AnomalousImages));
            Assert.Equal(fullRow.Values[imageKey], row.Values[imageKey], 1e-12);
        }

        // stripes: pixel metrics exactly those of the masked images alone.
        var stripesRow = report.Classes.Single(c => c.Name == "stripes");
        var maskedRow = masked.Classes.Single(c => c.Name == "stripes");
        Assert.Equal(unmasked, stripesRow.AnomalousImagesWithoutMask);
        Assert.Equal(maskedRow.Pixel!.AnomalousPixels, stripesRow.Pixel!.AnomalousPixels);
        Assert.Equal(maskedRow.Pixel.NormalPixels, stripesRow.Pixel.NormalPixels);
        Assert.Equal(maskedRow.Values[MetricKeys.PixelAuroc], stripesRow.Values[MetricKeys.PixelAuroc], 1e-12);
        Assert.NotEqual(full.Classes.Single(c => c.Name == "stripes").Pixel!.AnomalousPixels, stripesRow.Pixel.AnomalousPixels);
        int stripesAnomalous = stripes.Count;
        Assert.Contains($"stripes: pixel metrics over {stripesAnomalous - unmasked} of {stripesAnomalous} anomalous images: {unmasked} have no mask and are left out of pixel metrics (they count for image metrics)", report.Notes);

        // disc: no anomalous image has a mask: pixel metrics undefined, and the report says why.
        var disc = report.Classes.Single(c => c.Name == "disc");
        Assert.Null(disc.Pixel);
        Assert.Contains($"disc: pixel metrics undefined: {disc.AnomalousImages} of {disc.AnomalousImages} anomalous images have no mask", report.Notes);
        Assert.Equal(stripesRow.Values[MetricKeys.PixelAuroc], report.Mean[MetricKeys.PixelAuroc], 1e-12);

        // Calibration: the pixel threshold comes from masked images only; the image threshold sees every image.
        var calibration = detector.Calibrate(noDiscMasks, new CalibrationOptions { BatchSize = 1 });
        var maskedCalibration = detector.Calibrate(new ImageSource("masked", noDiscMasks.Samples.Where(s => s.HasPixelLabels || s.ClassName == "disc")), new CalibrationOptions { BatchSize = 1 });
        Assert.Equal(maskedCalibration.PixelThreshold, calibration.PixelThreshold);
        Assert.Equal(noDiscMasks.Samples.Count, calibration.Images);
    }

    [Fact]
    public void Held_out_normal_training_images_select_the_best_checkpoint_and_calibrate()
    {
        // What `uniad train` does without --validation: hold out 10 % of each class's normal training images,
        // select the best checkpoint by their reconstruction loss, calibrate on them by false-alarm rate.
        var (train, heldOut) = DataSplits.HoldOutNormal(data.Train);
        Assert.Equal(2, heldOut.Samples.Count); // round(0.1 x 8) = 1 per class
        using var detector = SyntheticData.TinyBuilder().Build();
        var checkpoint = Path.Combine(data.Root, "holdout-" + Guid.NewGuid().ToString("N")[..6] + ".safetensors");
        var result = detector.Train(train, SyntheticData.Quick(3) with { Validation = heldOut, EvaluateEvery = 1, CheckpointPath = checkpoint, CheckpointEvery = 0 });
        Assert.Null(result.Validation); // no anomalous validation image: no metrics report
        Assert.Null(result.BestPixelAuroc);
        Assert.NotNull(result.BestValidationLoss);
        Assert.True(result.BestValidationLoss <= detector.ValidationLoss(heldOut) + 1e-7);
        using (var best = AnomalyDetector.Load(AnomalyDetector.BestPath(checkpoint)))
        {
            Assert.Equal(result.BestValidationLoss!.Value, best.ValidationLoss(heldOut), 1e-6);
        }

        var calibration = detector.CalibrateOnValidation(heldOut, new CalibrationOptions { FalseAlarmRate = 0.01, MinimumNormalImages = 2 });
        Assert.Equal(CalibrationMethod.FalseAlarmRate, calibration.Method);
        Assert.Equal(2, calibration.Images);
        // R7 quantile at 0.99 of the two held-out scores: lo + 0.99 (hi - lo).
        var scores = heldOut.Samples.Select(s => detector.Score(s.ImagePath).Score).Order().ToArray();
        // (Single-image scoring and batched calibration agree to float32 rounding.)
        double expected = scores[0] + (0.99 * (scores[1] - scores[0]));
        Assert.True(Math.Abs(calibration.ImageThreshold - expected) <= 1e-5 * Math.Abs(expected), $"threshold {calibration.ImageThreshold} vs {expected}");
        Assert.True(scores[1] - scores[0] > 1e-3 * Math.Abs(expected), "the two held-out scores should differ");
        // A validation source with defects calibrates by F1-max.
        Assert.Equal(CalibrationMethod.F1Max, detector.CalibrateOnValidation(data.Test).Method);
        Assert.Throws<InvalidDataException>(() => detector.CalibrateOnValidation(data.Test.Where(s => s.IsAnomalous)));
    }

    [Fact]
    public void Heat_maps_are_written_as_png()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var folder = Path.Combine(data.Root, "views");
        var files = detector.SaveCompoundViews(new ImageSource("two", data.Test.Samples.Where(s => s.Label != 0).Take(2)), folder);
        Assert.Equal(2, files.Count);
        using var view = SKBitmap.Decode(files[0]);
        Assert.Equal((4 * 64, 64 + 31), (view.Width, view.Height)); // four panels under a 31-pixel header (3 lines of the 5 x 7 font at scale 1)
        var overlay = Path.Combine(data.Root, "overlay.png");
        var result = detector.SaveOverlay(data.Test.Samples[0].ImagePath, overlay);
        using var png = SKBitmap.Decode(overlay);
        Assert.Equal((result.Map.Width, result.Map.Height), (png.Width, png.Height));
        Assert.Equal(((byte)0, (byte)0, (byte)128), HeatmapRenderer.Jet(0));
        Assert.Equal(((byte)128, (byte)0, (byte)0), HeatmapRenderer.Jet(1));
    }
}

/// <summary>IProgress that reports on the calling thread (Progress&lt;T&gt; posts to the thread pool).</summary>
public sealed class SynchronousProgress<T>(Action<T> handler) : IProgress<T>
{
    public void Report(T value) => handler(value);
}

/// <summary>An ILoggerFactory whose loggers all write to one TestLogger.</summary>
public sealed class TestLoggerFactory(TestLogger logger) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => logger;

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }
}
