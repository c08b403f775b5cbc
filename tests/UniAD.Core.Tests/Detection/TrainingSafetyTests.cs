using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Files;
using UniAD.Core.Tests.Data;

namespace UniAD.Core.Tests.Detection;

/// <summary>Training never throws work away: paths checked first, the checkpoint before validation, resumable calibration, no stale temporaries.</summary>
public sealed class TrainingSafetyTests(SyntheticData data) : IClassFixture<SyntheticData>
{
    [Fact]
    public void A_bad_validation_image_in_the_last_epoch_keeps_the_checkpoint()
    {
        using var temp = new TempFolder();
        var bad = temp.File("val", "broken.png");
        File.WriteAllBytes(bad, File.ReadAllBytes(data.Test.Samples[0].ImagePath).AsSpan(0, 50).ToArray());
        var validation = new ImageSource("validation", data.Test.Samples.Append(new ImageSample(bad, null, ImageSample.Normal, data.Test.Samples[0].ClassName, ImageSample.Good)));
        var checkpoint = temp.File("model.safetensors");
        using var detector = SyntheticData.TinyBuilder().Build();
        var result = detector.Train(data.Train, SyntheticData.Quick(2) with { Validation = validation, EvaluateEvery = 0, CheckpointPath = checkpoint, CheckpointEvery = 0 });

        Assert.Equal(2, result.EpochsCompleted);
        Assert.NotNull(result.ValidationFailure);
        Assert.Contains("epoch 2", result.ValidationFailure);
        Assert.Contains(bad, result.ValidationFailure);
        Assert.Equal(checkpoint, result.LastCheckpoint);
        Assert.Equal(2, DetectorCheckpoint.ReadInfo(checkpoint).Epoch);
        Assert.True(DetectorCheckpoint.ReadInfo(checkpoint).HasOptimizerState);
    }

    [Fact]
    public void Paths_are_checked_before_the_first_epoch()
    {
        using var temp = new TempFolder();
        using var detector = SyntheticData.TinyBuilder().Build();
        var stages = new List<string>();
        var progress = new Inline<TrainingProgress>(p => stages.Add(p.Stage));
        var missingFolder = Path.Combine(temp.Path, "no-such-folder", "model.safetensors");
        var ex = Assert.Throws<DirectoryNotFoundException>(() => detector.Train(data.Train, SyntheticData.Quick(1) with { CheckpointPath = missingFolder }, progress));
        Assert.Contains(missingFolder, ex.Message);
        var missingResume = temp.File("nothing.safetensors");
        Assert.Contains(missingResume, Assert.Throws<FileNotFoundException>(() => detector.Train(data.Train, SyntheticData.Quick(1) with { ResumeFrom = missingResume }, progress)).Message);
        Assert.Contains("is a folder", Assert.Throws<IOException>(() => detector.Train(data.Train, SyntheticData.Quick(1) with { CheckpointPath = temp.Folder("folder") }, progress)).Message);
        Assert.Empty(stages);
        Assert.Equal(0, detector.EpochsTrained);
    }

    [Fact]
    public void Resuming_at_or_past_the_epochs_is_refused_and_calibration_in_place_stays_resumable()
    {
        using var temp = new TempFolder();
        var checkpoint = temp.File("model.safetensors");
        using (var detector = SyntheticData.TinyBuilder().Build())
        {
            detector.Train(data.Train, SyntheticData.Quick(2) with { CheckpointPath = checkpoint });
        }

        using (var again = SyntheticData.TinyBuilder().Build())
        {
            var ex = Assert.Throws<ArgumentException>(() => again.Train(data.Train, SyntheticData.Quick(2) with { ResumeFrom = checkpoint }));
            Assert.Contains("already trained 2 epochs and Epochs = 2", ex.Message);
        }

        // Calibrating a training checkpoint in place keeps its optimizer state (Save would drop it).
        Calibration calibration;
        using (var loaded = AnomalyDetector.Load(checkpoint))
        {
            calibration = loaded.Calibrate(data.Test);
        }

        DetectorCheckpoint.WriteCalibration(checkpoint, calibration);
        var info = DetectorCheckpoint.ReadInfo(checkpoint);
        Assert.True(info.HasOptimizerState);
        Assert.Equal(calibration, info.Calibration);
        Assert.Equal(2, info.Epoch);
        using (var resumed = SyntheticData.TinyBuilder().Build())
        {
            var result = resumed.Train(data.Train, SyntheticData.Quick(3) with { ResumeFrom = checkpoint });
            Assert.Equal(3, result.EpochsCompleted);
            Assert.Single(result.EpochLosses);
        }

        Assert.Throws<InvalidDataException>(() => DetectorCheckpoint.WriteCalibration(checkpoint, calibration with { Images = 0 }));
    }

    [Fact]
    public void Stale_temporaries_of_the_same_target_are_removed()
    {
        using var temp = new TempFolder();
        var target = temp.File("model.safetensors");
        string Temp(string name) => Path.Combine(temp.Path, name);
        var stale = Temp($".model.safetensors.{Guid.NewGuid():N}.tmp");
        var fresh = Temp($".model.safetensors.{Guid.NewGuid():N}.tmp");
        var other = Temp($".other.safetensors.{Guid.NewGuid():N}.tmp");
        var foreign = Temp(".model.safetensors.mine.tmp");
        foreach (var f in new[] { stale, fresh, other, foreign })
        {
            File.WriteAllText(f, "partial");
            File.SetLastWriteTimeUtc(f, f == fresh ? DateTime.UtcNow : DateTime.UtcNow.AddHours(-2));
        }

        using var detector = SyntheticData.TinyBuilder().Build();
        detector.Save(target);
        Assert.False(File.Exists(stale));
        Assert.True(File.Exists(fresh));
        Assert.True(File.Exists(other));
        Assert.True(File.Exists(foreign));
        Assert.True(File.Exists(target));
        Assert.Equal(0, AtomicFile.RemoveStaleTemporaries(temp.Path, "model.safetensors"));
    }

    [Fact]
    public void False_alarm_calibration_needs_enough_normal_images()
    {
        var logger = new TestLogger();
        using var factory = new TestLoggerFactory(logger);
        using var detector = SyntheticData.TinyBuilder().WithLogging(factory).Build();
        var one = new ImageSource("one", data.Train.Samples.Take(1));
        var far = new CalibrationOptions { Method = CalibrationMethod.FalseAlarmRate, FalseAlarmRate = 0.01 };
        var ex = Assert.Throws<InvalidDataException>(() => detector.Calibrate(one, far));
        Assert.Contains("at least 10 normal images", ex.Message);
        Assert.Contains("has 1", ex.Message);

        var twelve = new ImageSource("twelve", data.Train.Samples.Take(12));
        var calibration = detector.Calibrate(twelve, far);
        Assert.Equal(12, calibration.Images);
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("fewer than 1/rate = 100", StringComparison.Ordinal));

        logger.Entries.Clear();
        detector.Calibrate(twelve, far with { FalseAlarmRate = 0.1 });
        Assert.DoesNotContain(logger.Entries, e => e.Level == LogLevel.Warning);
        Assert.Equal(3, detector.Calibrate(new ImageSource("three", data.Train.Samples.Take(3)), far with { MinimumNormalImages = 3, FalseAlarmRate = 0.5 }).Images);
    }

    private sealed class Inline<T>(Action<T> handler) : IProgress<T>
    {
        public void Report(T value) => handler(value);
    }
}
