using SkiaSharp;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Tests.Data;

namespace UniAD.Core.Tests.Detection;

/// <summary>Scoring from a service: asynchronous forms, thresholds by hand, sensitivity, and the model only under the lock.</summary>
public sealed class ServiceScoringTests(SyntheticData data) : IClassFixture<SyntheticData>
{
    [Fact]
    public async Task Async_forms_give_the_synchronous_results()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        detector.Calibrate(data.Test);
        var path = data.Test.Samples[1].ImagePath;
        var expected = detector.Score(path);
        var bytes = await File.ReadAllBytesAsync(path);

        var fromFile = await detector.ScoreAsync(path);
        var fromBytes = await detector.ScoreAsync(bytes, "bytes.png");
        await using var nonSeekable = new ForwardOnlyStream(bytes);
        var fromStream = await detector.ScoreAsync(nonSeekable, "stream.png");
        using var bitmap = SKBitmap.Decode(path);
        var fromBitmap = await detector.ScoreAsync(bitmap, "bitmap");
        var syncBytes = detector.Score(bytes, "sync");
        foreach (var r in new[] { fromFile, fromBytes, fromStream, fromBitmap, syncBytes })
        {
            Assert.Equal(expected.Score, r.Score);
            Assert.Equal(expected.IsAnomalous, r.IsAnomalous);
            Assert.True(expected.Map.Values.SequenceEqual(r.Map.Values));
        }

        Assert.Equal(path, fromFile.Source);
        Assert.Equal("stream.png", fromStream.Source);

        var paths = data.Test.Samples.Select(s => s.ImagePath).ToList();
        var batch = detector.ScoreBatch(paths, batchSize: 3);
        var streamed = new List<AnomalyResult>();
        await foreach (var r in detector.ScoreManyAsync(paths, batchSize: 3))
        {
            streamed.Add(r);
        }

        Assert.Equal(batch.Select(r => (r.Source, r.Score)), streamed.Select(r => (r.Source, r.Score)));
    }

    [Fact]
    public async Task Async_scoring_cancels_and_reports_bad_files_as_themselves()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        var path = data.Test.Samples[0].ImagePath;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => detector.ScoreAsync(path, cancellationToken: cancelled.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => detector.ScoreAsync(File.ReadAllBytes(path), cancellationToken: cancelled.Token));

        // Cancelled after the first batch: that batch's results came, the rest did not.
        using var midway = new CancellationTokenSource();
        var seen = new List<AnomalyResult>();
        var paths = data.Test.Samples.Select(s => s.ImagePath).ToList();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var r in detector.ScoreManyAsync(paths, batchSize: 2, cancellationToken: midway.Token))
            {
                seen.Add(r);
                await midway.CancelAsync();
            }
        });
        Assert.Equal(2, seen.Count);

        using var temp = new TempFolder();
        var empty = temp.File("empty.png");
        File.WriteAllBytes(empty, Array.Empty<byte>());
        Assert.Contains(empty, (await Assert.ThrowsAsync<ImageFileException>(() => detector.ScoreAsync(empty))).Message);
        var missing = temp.File("missing.png");
        Assert.Contains(missing, (await Assert.ThrowsAsync<FileNotFoundException>(() => detector.ScoreAsync(missing))).Message);
        await Assert.ThrowsAsync<ImageFileException>(async () =>
        {
            await foreach (var r in detector.ScoreManyAsync(new[] { path, empty }))
            {
            }
        });
    }

    [Fact]
    public void Thresholds_by_hand_and_sensitivity_are_saved_with_the_model()
    {
        using var temp = new TempFolder();
        using var detector = SyntheticData.TinyBuilder().Build();
        var scores = data.Test.Samples.Select(s => detector.Score(s.ImagePath).Score).ToArray();
        double median = scores.Order().ElementAt(scores.Length / 2);
        Assert.Throws<InvalidOperationException>(() => detector.SetSensitivity(0.7));
        Assert.Throws<ArgumentException>(() => detector.SetThresholds(double.NaN));

        var manual = detector.SetThresholds(median, pixelThreshold: 0.25);
        Assert.Equal(CalibrationMethod.Manual, manual.Method);
        var results = data.Test.Samples.Select(s => detector.Score(s.ImagePath)).ToList();
        Assert.All(results, r => Assert.Equal(r.Score >= median, r.IsAnomalous));
        Assert.All(results, r => Assert.Equal(r.Map.Values.ToArray().Select(v => v >= 0.25 ? (byte)1 : (byte)0), r.Mask!));

        // Calibrated, then a sensitivity: the threshold moves by (0.5 - s) x the calibrated range.
        var calibration = detector.Calibrate(data.Test);
        var sensitive = detector.SetSensitivity(0.8, pixel: 0.3);
        double range = calibration.ImageMax - calibration.ImageMin;
        Assert.Equal(calibration.ImageThreshold - (0.3 * range), sensitive.EffectiveImageThreshold, 1e-12);
        Assert.Equal(calibration.PixelThreshold!.Value + (0.2 * (calibration.PixelMax - calibration.PixelMin)), sensitive.EffectivePixelThreshold!.Value, 1e-12);
        Assert.Equal(calibration.ImageThreshold, sensitive.ImageThreshold);
        int flaggedBefore = scores.Count(s => s >= calibration.ImageThreshold), flaggedAfter = scores.Count(s => s >= sensitive.EffectiveImageThreshold);
        Assert.True(flaggedAfter >= flaggedBefore);
        Assert.All(data.Test.Samples, s =>
        {
            var r = detector.Score(s.ImagePath);
            Assert.Equal(r.Score >= sensitive.EffectiveImageThreshold, r.IsAnomalous);
        });
        Assert.Throws<ArgumentOutOfRangeException>(() => detector.SetSensitivity(1.5));

        var path = temp.File("model.safetensors");
        detector.Save(path);
        using var loaded = AnomalyDetector.Load(path);
        Assert.Equal(sensitive, loaded.Calibration);
        Assert.Equal(0.8, loaded.Calibration!.ImageSensitivity);

        // Thresholds by hand without a calibrated range, then a sensitivity: the effective threshold is infinite
        // (everything or nothing is flagged) and is derived, not stored, so the model still saves and loads.
        using (var manual2 = SyntheticData.TinyBuilder().Build())
        {
            manual2.SetThresholds(1.0);
            var flagAll = manual2.SetSensitivity(0.7);
            Assert.Equal(double.NegativeInfinity, flagAll.EffectiveImageThreshold);
            var manualPath = temp.File("manual.safetensors");
            manual2.Save(manualPath);
            using var back = AnomalyDetector.Load(manualPath);
            Assert.Equal(flagAll, back.Calibration);
            Assert.True(back.Score(data.Test.Samples[0].ImagePath).IsAnomalous);
        }

        // Default sensitivity leaves every decision where the calibration put it, bit for bit.
        Assert.Equal(calibration.ImageThreshold, calibration.EffectiveImageThreshold);
        Assert.Equal(calibration.PixelThreshold, calibration.EffectivePixelThreshold);
    }

    [Fact]
    public async Task The_model_is_reached_only_under_the_lock()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        Assert.Null(typeof(AnomalyDetector).GetProperty("Model", System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance));
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var holder = Task.Run(() => detector.UseModel(m =>
        {
            entered.Set();
            release.Wait();
            return m.Reconstruction.parameters().Count();
        }));
        entered.Wait();
        var path = data.Test.Samples[0].ImagePath;
        var scoring = Task.Run(() => detector.Score(path));
        await Task.Delay(300);
        Assert.False(scoring.IsCompleted); // waits for the lock
        release.Set();
        Assert.True(await holder > 0);
        Assert.Equal(detector.Score(path).Score, (await scoring).Score);
    }

    /// <summary>A stream that cannot seek or report its length, like a network body.</summary>
    private sealed class ForwardOnlyStream(byte[] bytes) : Stream
    {
        private readonly MemoryStream inner = new(bytes);

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, Math.Min(count, 7));

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
