using UniAD.Core.Detection;
using UniAD.Core.Export;
using UniAD.Core.Tests.Data;
using UniAD.Core.Weights;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Detection;

/// <summary>Issue 26: divergence stops training before anything non-finite is written; non-finite weights are never saved, exported or loaded.</summary>
public sealed class DivergenceTests(SyntheticData data) : IClassFixture<SyntheticData>
{
    [Fact]
    public void A_learning_rate_far_too_high_stops_training_with_divergence_and_keeps_the_last_finite_checkpoint()
    {
        using var temp = new TempFolder();
        var checkpoint = temp.File("ckpt.safetensors");
        using var detector = SyntheticData.TinyBuilder().Build();
        var options = SyntheticData.Quick(4) with { Optimizer = new() { LearningRate = 1e10 }, ClipGradNorm = 0, CheckpointPath = checkpoint, CheckpointEvery = 1 };
        var ex = Assert.Throws<TrainingDivergedException>(() => detector.Train(data.Train, options));
        Assert.Contains("Training diverged at epoch", ex.Message);
        Assert.Contains("learning rate 1E+10", ex.Message);
        Assert.Equal(1e10, ex.LearningRate);
        Assert.IsAssignableFrom<InvalidOperationException>(ex);
        if (File.Exists(checkpoint))
        {
            Assert.Equal(checkpoint, ex.LastCheckpoint);
            using var finite = AnomalyDetector.Load(checkpoint); // loads: its weights are finite
        }
        else
        {
            Assert.Null(ex.LastCheckpoint);
        }

        Assert.False(File.Exists(AnomalyDetector.BestPath(checkpoint)));
    }

    [Fact]
    public void Non_finite_weights_are_not_saved_exported_or_loaded()
    {
        using var temp = new TempFolder();
        using var detector = SyntheticData.TinyBuilder().Build();
        var good = temp.File("good.safetensors");
        detector.Save(good);
        using (no_grad())
        {
            detector.Model.Reconstruction.parameters().First().view(-1)[0].fill_(float.NaN);
        }

        var saving = Assert.Throws<InvalidOperationException>(() => detector.Save(temp.File("nan.safetensors")));
        Assert.Contains("NaN or infinite", saving.Message);
        Assert.False(File.Exists(temp.File("nan.safetensors")));
        var exporting = Assert.Throws<InvalidOperationException>(() => detector.ExportOnnx(temp.File("nan.onnx")));
        Assert.Contains("NaN or infinite", exporting.Message);
        Assert.False(File.Exists(temp.File("nan.onnx")));

        // A poisoned file written by an older version (or by hand) is refused at load, naming the weight.
        var poisoned = temp.File("poisoned.safetensors");
        var (tensors, metadata) = SafetensorsFile.Read(good);
        using (tensors)
        {
            var key = tensors.Keys.First(k => k.StartsWith("model.reconstruction.", StringComparison.Ordinal) && tensors[k].is_floating_point());
            tensors[key].view(-1)[0].fill_(float.PositiveInfinity);
            SafetensorsFile.Write(poisoned, tensors, metadata);
            var loading = Assert.Throws<InvalidDataException>(() => AnomalyDetector.Load(poisoned));
            Assert.Contains(poisoned, loading.Message);
            Assert.Contains("diverged", loading.Message);
        }
    }

    [Fact]
    public void A_loaded_detector_does_not_export_over_its_own_checkpoint()
    {
        using var temp = new TempFolder();
        var path = temp.File("model.safetensors");
        using (var detector = SyntheticData.TinyBuilder().Build())
        {
            detector.Save(path);
        }

        var before = File.ReadAllBytes(path);
        using var loaded = AnomalyDetector.Load(path);
        Assert.Equal(Path.GetFullPath(path), loaded.SourcePath);
        var ex = Assert.Throws<InvalidOperationException>(() => loaded.ExportOnnx(Path.Combine(temp.Path, ".", "model.safetensors")));
        Assert.Contains("loaded from", ex.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
        loaded.Save(path); // saving over its own checkpoint (same format, written atomically) stays allowed
    }
}
