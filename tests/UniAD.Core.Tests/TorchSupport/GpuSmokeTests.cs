using TorchSharp;
using UniAD.Core.Reconstruction;
using UniAD.Core.TorchSupport;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.TorchSupport;

/// <summary>A fact that runs only where libtorch sees a CUDA device, and otherwise is reported as skipped with the reason.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    /// <summary>Skips the test when CUDA is not available.</summary>
    public CudaFactAttribute()
    {
        if (!cuda.is_available())
        {
            Skip = "No CUDA device: these tests need an NVIDIA GPU and the TorchSharp-cuda-linux or TorchSharp-cuda-windows backend " +
                   "(dotnet test tests/UniAD.Core.Tests -c Release -p:TorchSharpBackend=cuda-linux --filter Category=Gpu).";
        }
    }
}

/// <summary>
/// What a GPU user should run first (docs/gpu.md): seeded training steps on CUDA against the same steps on the CPU from the
/// same weights and features, scoring parity, and two seeded CUDA runs against each other. Skipped where there is no CUDA
/// (every machine this project has: none of these has run yet).
/// </summary>
[Trait("Category", "Gpu")]
[Collection(DefaultDeviceCollection.Name)]
public sealed class GpuSmokeTests(ITestOutputHelper output)
{
    /// <summary>Losses and maps of CUDA and CPU agree within this relative tolerance (float32, TF32 off).</summary>
    public const double Tolerance = 1e-4;

    private static ReconstructionOptions Small => new()
    {
        InputChannels = 32, FeatureSize = new GridSize(8, 8), HiddenDim = 64, NumHeads = 4, NumEncoderLayers = 2, NumDecoderLayers = 2,
        FeedForwardDim = 128, NeighborSize = new GridSize(3, 3), Dropout = 0.1, BottleneckDropout = 0.2, Seed = 11,
    };

    [CudaFact]
    public void Seeded_training_steps_agree_between_cuda_and_cpu_and_repeat_on_cuda()
    {
        TorchDevices.SetTensorFloat32(false);
        var cpuLosses = Train(CPU);
        var cudaLosses = Train(TorchDevices.Parse("cuda"));
        var again = Train(TorchDevices.Parse("cuda"));
        output.WriteLine($"losses cpu [{string.Join(", ", cpuLosses)}] cuda [{string.Join(", ", cudaLosses)}] cuda again [{string.Join(", ", again)}]");
        for (int i = 0; i < cpuLosses.Length; i++)
        {
            Assert.True(Math.Abs(cudaLosses[i] - cpuLosses[i]) <= Tolerance * Math.Abs(cpuLosses[i]), $"step {i}: CUDA loss {cudaLosses[i]} against CPU {cpuLosses[i]}");
            Assert.True(Math.Abs(again[i] - cudaLosses[i]) <= 1e-6 * Math.Abs(cudaLosses[i]), $"step {i}: two seeded CUDA runs differ ({cudaLosses[i]} and {again[i]})");
        }
    }

    [CudaFact]
    public void Scoring_agrees_between_cuda_and_cpu()
    {
        TorchDevices.SetTensorFloat32(false);
        using var cpuModel = new UniADReconstruction(Small);
        using var cudaModel = new UniADReconstruction(Small);
        cudaModel.to(TorchDevices.Parse("cuda"));
        cpuModel.eval();
        cudaModel.eval();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var features = randn(new long[] { 4, 32, 8, 8 }, generator: new Generator(3), device: CPU);
        var expected = cpuModel.forward(features).Pred;
        var actual = cudaModel.forward(features.to(TorchDevices.Parse("cuda"))).Pred.cpu();
        double diff = (actual - expected).abs().max().item<float>(), scale = expected.abs().max().item<float>();
        output.WriteLine($"max |CUDA − CPU| of the maps {diff:E2} (max map {scale:E2})");
        Assert.True(diff <= Tolerance * scale, $"maps differ by {diff:E2} of max {scale:E2}");
    }

    private static double[] Train(Device device)
    {
        using var model = new UniADReconstruction(Small);
        model.to(device);
        model.train();
        var parameters = model.parameters().ToList();
        using var optimizer = optim.AdamW(parameters, lr: 1e-3, weight_decay: 1e-4);
        var losses = new double[3];
        var generator = new Generator(5);
        for (int step = 0; step < losses.Length; step++)
        {
            using var scope = NewDisposeScope();
            var features = randn(new long[] { 4, 32, 8, 8 }, generator: generator, device: CPU).to(device);
            optimizer.zero_grad();
            var loss = AnomalyMap.Loss(model.Reconstruct(features), features);
            loss.backward();
            nn.utils.clip_grad_norm_(parameters, 0.1);
            optimizer.step();
            losses[step] = loss.item<float>();
        }

        return losses;
    }
}
