using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using UniAD.Core.Detection;
using UniAD.Core.Export;
using UniAD.Core.Metrics;
using UniAD.Onnx;

namespace UniAD.Hosting.Tests;

/// <summary>Issue 27: a memory-bank detector is served like a UniAD one, as a checkpoint (libtorch) and as an ONNX file.</summary>
[Collection(ModelsCollection.Name)]
public sealed class MemoryBankHostingTests(TestModels models) : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("uniad-hosting-bank-").FullName;

    [Fact]
    public async Task Both_registrations_serve_a_memory_bank_with_the_scores_of_its_runtime()
    {
        string checkpoint = Path.Combine(root, "bank.safetensors"), onnx = Path.Combine(root, "bank.onnx");
        using (var detector = new AnomalyDetectorBuilder()
            .WithBackbone("resnet18", new[] { 2, 3 }) // random weights: serving, not quality, is tested
            .WithInputSize(64, 64)
            .WithMemoryBank(o => o with { CoresetRatio = 0.2 })
            .WithImageScore(ImageScoreKind.PlainMax)
            .Build())
        {
            detector.Train(models.Test);
            detector.SetThresholds(detector.Score(models.Images[0].Bytes).Score);
            detector.Save(checkpoint);
            detector.ExportOnnx(onnx);
        }

        using var reference = AnomalyDetector.Load(checkpoint);
        Assert.Equal(ModelFamilies.MemoryBank, reference.Family);
        using var onnxReference = OnnxAnomalyScorer.Load(onnx);
        Assert.Equal(ModelFamilies.MemoryBank, onnxReference.Info.Family);

        using (var torchHost = ScorerHost.Build(o => o.ModelPath = checkpoint))
        {
            await torchHost.StartAsync();
            var scorer = torchHost.Services.GetRequiredService<IAnomalyScorer>();
            foreach (var (name, bytes) in models.Images.Take(3))
            {
                Assert.Equal(reference.Score(bytes, name).Score, (await scorer.ScoreAsync(bytes, name)).Score);
            }

            await torchHost.StopAsync();
        }

        using (var onnxHost = ScorerHost.BuildOnnx(o => o.ModelPath = onnx))
        {
            await onnxHost.StartAsync();
            var scorer = onnxHost.Services.GetRequiredService<IAnomalyScorer>();
            foreach (var (name, bytes) in models.Images.Take(3))
            {
                var served = await scorer.ScoreAsync(bytes, name);
                Assert.Equal(onnxReference.Score(bytes, name).Score, served.Score, 1e-5);
                double torch = reference.Score(bytes, name).Score;
                Assert.True(Math.Abs(served.Score - torch) <= 1e-4 * Math.Max(1, Math.Abs(torch)), $"{name}: ONNX {served.Score:G9}, TorchSharp {torch:G9}");
            }

            await onnxHost.StopAsync();
        }
    }

    [Fact]
    public async Task A_model_that_needs_each_images_class_is_refused_at_start_by_both_registrations()
    {
        string checkpoint = Path.Combine(root, "banks.safetensors"), onnx = Path.Combine(root, "banks.onnx");
        using (var detector = new AnomalyDetectorBuilder()
            .WithBackbone("resnet18", new[] { 2, 3 })
            .WithInputSize(64, 64)
            .WithMemoryBank(o => o with { CoresetRatio = 0.2, PerClassBanks = true })
            .WithImageScore(ImageScoreKind.PlainMax)
            .Build())
        {
            detector.Train(models.Test);
            detector.Save(checkpoint);
            detector.ExportOnnx(onnx);
        }

        var classes = string.Join(", ", models.Test.Samples.Select(s => s.ClassName).Distinct().Order(StringComparer.Ordinal));
        foreach (var host in new[] { ScorerHost.Build(o => o.ModelPath = checkpoint), ScorerHost.BuildOnnx(o => o.ModelPath = onnx) })
        {
            using (host)
            {
                var ex = await Assert.ThrowsAsync<InvalidDataException>(() => host.StartAsync());
                Assert.Contains("needs each image's class", ex.Message);
                Assert.Contains(classes, ex.Message);
            }
        }
    }

    public void Dispose() => Directory.Delete(root, recursive: true);
}
