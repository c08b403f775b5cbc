using UniAD.Core.Detection;
using UniAD.Core.Export;
using UniAD.Core.Reconstruction;
using UniAD.Core.Tests.Export;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Reconstruction;

/// <summary>Issue 28: the global cosine objective with hard-point mining, its ramp, its map, and its ONNX export.</summary>
public sealed class ReconstructionObjectiveTests(ITestOutputHelper output) : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("uniad-objective-").FullName;

    [Fact]
    public void The_global_cosine_loss_is_one_minus_the_cosine_of_each_whole_map_averaged_over_the_batch()
    {
        using var scope = NewDisposeScope();
        // Sample 0: target (1, 0 | 0, 1), reconstruction (1, 1 | 0, 1) as C = 2, h = 1, w = 2 -> flattened (1,0,0,1)
        // against (1,0,1,1)... written channel-major: channel 0 = (1, 0), channel 1 = (0, 1).
        var target = tensor(new float[] { 1, 0, 0, 1, /* sample 1 */ 2, 0, 0, 0 }, new long[] { 2, 2, 1, 2 }, device: CPU);
        var rec = tensor(new float[] { 1, 1, 0, 1, /* sample 1 */ 1, 0, 0, 0 }, new long[] { 2, 2, 1, 2 }, device: CPU);
        // Sample 0: a = (1, 0, 0, 1), b = (1, 1, 0, 1): cos = 2 / (sqrt 2 * sqrt 3); sample 1: parallel, cos = 1.
        double expected = ((1 - (2 / (Math.Sqrt(2) * Math.Sqrt(3)))) + 0) / 2;
        Assert.Equal(expected, ReconstructionLoss.GlobalCosine(rec, target).item<float>(), 1e-6);
        // MSE stays the paper's loss.
        var options = new ReconstructionOptions();
        Assert.Equal(TorchSharp.torch.nn.functional.mse_loss(rec, target).item<float>(), ReconstructionLoss.Of(options, rec, target, step: 5).item<float>());
    }

    [Fact]
    public void Hard_mining_scales_the_gradient_of_the_easy_points_and_keeps_the_value()
    {
        using var scope = NewDisposeScope();
        // One sample, C = 2, h = 1, w = 2: position 0 reconstructed almost exactly (easy), position 1 badly (hard).
        var target = tensor(new float[] { 1, 0, 0, 1 }, new long[] { 1, 2, 1, 2 }, device: CPU);
        Tensor Gradient(double fraction, double factor, out float value)
        {
            var rec = tensor(new float[] { 0.99f, 1, 0.01f, 0 }, new long[] { 1, 2, 1, 2 }, device: CPU).requires_grad_();
            var loss = ReconstructionLoss.GlobalCosine(rec, target, fraction, factor);
            value = loss.item<float>();
            loss.backward();
            return rec.grad!.clone();
        }

        var plain = Gradient(0, 1, out float plainValue);
        var mined = Gradient(0.5, 0.1, out float minedValue); // 1 of the 2 points is easy
        Assert.Equal(plainValue, minedValue, 1e-7); // the value is unchanged
        // Position 0 (index [.., 0]) is the easy one: its gradient is 0.1 of the plain one; position 1 keeps its gradient.
        for (int c = 0; c < 2; c++)
        {
            Assert.Equal(0.1 * plain[0, c, 0, 0].item<float>(), mined[0, c, 0, 0].item<float>(), 1e-7);
            Assert.Equal(plain[0, c, 0, 1].item<float>(), mined[0, c, 0, 1].item<float>(), 1e-7);
        }

        Assert.True(plain.abs().sum().item<float>() > 0);
        var dropped = Gradient(0.5, 0, out _);
        Assert.Equal(0f, dropped[0, 0, 0, 0].item<float>());
    }

    [Fact]
    public void The_mining_fraction_ramps_linearly_and_the_options_are_checked()
    {
        var mining = new HardMiningOptions();
        Assert.Equal(0, mining.FractionAt(0));
        Assert.Equal(0.45, mining.FractionAt(500), 12);
        Assert.Equal(0.9, mining.FractionAt(1000), 12);
        Assert.Equal(0.9, mining.FractionAt(50_000), 12);
        Assert.Equal(0.9, (mining with { RampSteps = 0 }).FractionAt(0));
        Assert.Throws<ArgumentException>(() => (mining with { MaxFraction = 1 }).Validate());
        Assert.Throws<ArgumentException>(() => (mining with { Factor = 1.5 }).Validate());
        Assert.Throws<ArgumentException>(() => new ReconstructionOptions { HardMining = mining with { RampSteps = -1 } }.Validate());
    }

    [Fact]
    public void The_cosine_map_is_one_minus_the_cosine_per_position_upsampled_like_the_mse_map()
    {
        using var scope = NewDisposeScope();
        var target = tensor(new float[] { 1, 0, 0, 1 }, new long[] { 1, 2, 1, 2 }, device: CPU);
        var rec = tensor(new float[] { 1, 1, 1, 0 }, new long[] { 1, 2, 1, 2 }, device: CPU); // position 0: (1, 1) vs (1, 0); position 1: (1, 0) vs (0, 1)
        var map = AnomalyMap.CosineDistance(rec, target, stride: 1);
        Assert.Equal(1 - (1 / Math.Sqrt(2)), map[0, 0, 0, 0].item<float>(), 1e-6);
        Assert.Equal(1.0, map[0, 0, 0, 1].item<float>(), 1e-6);
        var up = AnomalyMap.Of(ReconstructionObjective.GlobalCosine, rec, target, stride: 4);
        Assert.Equal(new long[] { 1, 1, 4, 8 }, up.shape);
        Assert.Equal(map[0, 0, 0, 0].item<float>(), up[0, 0, 0, 0].item<float>(), 1e-6); // align_corners: the corners keep their values
        Assert.True(AnomalyMap.Of(ReconstructionObjective.Mse, rec, target, 1).allclose(AnomalyMap.Compute(rec, target, 1)));
    }

    [Fact]
    public void A_cosine_detector_with_a_noisy_bottleneck_trains_saves_loads_and_exports_with_both()
    {
        using var detector = UniAD.Core.Tests.Detection.SyntheticData.TinyBuilder()
            .WithReconstruction(o => o with { Objective = ReconstructionObjective.GlobalCosine, HardMining = new HardMiningOptions { RampSteps = 4 }, MapSmoothingSigma = 4, BottleneckDropout = 0.2 })
            .WithImageScore(UniAD.Core.Metrics.ImageScoreKind.TopMean) // the later models' image score (of a smoothed map), in the graph as TopK + mean
            .Build();
        var data = Path.Combine(root, "data");
        UniAD.Core.Data.SyntheticDefects.Generate(data, new UniAD.Core.Data.SyntheticDatasetOptions { Classes = new[] { UniAD.Core.Data.SyntheticClass.Stripes }, ImageSize = 64, TrainPerClass = 8, TestGoodPerClass = 2, TestPerDefect = 1, Seed = 3 });
        var result = detector.Train(UniAD.Core.Data.MvtecAd.Open(data, UniAD.Core.Data.DatasetSplit.Train), UniAD.Core.Tests.Detection.SyntheticData.Quick(epochs: 3));
        Assert.All(result.EpochLosses, l => Assert.InRange(l, 0, 2)); // 1 - cos lies in [0, 2]
        string path = Path.Combine(root, "cosine.safetensors");
        detector.Save(path);
        using var loaded = AnomalyDetector.Load(path);
        Assert.Equal(ReconstructionObjective.GlobalCosine, loaded.Options.Reconstruction.Objective);
        Assert.Equal(4, loaded.Options.Reconstruction.HardMining.RampSteps);
        Assert.Equal(4, loaded.Options.Reconstruction.MapSmoothingSigma);
        Assert.Equal(0.2, loaded.Options.Reconstruction.BottleneckDropout); // training-only: the graph below scores as TorchSharp's eval

        string onnx = Path.Combine(root, "cosine.onnx");
        loaded.ExportOnnx(onnx);
        using var session = OnnxParity.Session(onnx);
        using var images = OnnxParity.RandomImages(2, 64, 64, seed: 5);
        var diff = OnnxParity.Compare(loaded, session, images, "global cosine objective, smoothed map, top-1 % mean score");
        output.WriteLine($"cosine map smoothed (sigma 4) and top-1 % mean score, TorchSharp against ONNX Runtime: {diff}");
        var nodes = ModelProtoNodes(onnx).ToList();
        Assert.Contains(nodes, op => op == "TopK");
        Assert.Contains(nodes, op => op == "Pad"); // the Gaussian's reflection padding
    }

    [Fact]
    public void A_smoothed_map_is_the_Gaussian_of_the_plain_map_and_a_bad_sigma_is_refused()
    {
        // One seed, so both detectors hold the same weights; only the map's smoothing differs.
        using var plain = UniAD.Core.Tests.Detection.SyntheticData.TinyBuilder().Build();
        using var smoothed = UniAD.Core.Tests.Detection.SyntheticData.TinyBuilder().WithReconstruction(o => o with { MapSmoothingSigma = 2 }).Build();
        using var images = OnnxParity.RandomImages(2, 64, 64, seed: 9);
        using var raw = plain.UseAnomalyModel(m => m.Maps(images));
        using var expected = UniAD.Core.Models.MapSmoothing.GaussianBlur(raw.unsqueeze(1), 2).squeeze(1);
        using var actual = smoothed.UseAnomalyModel(m => m.Maps(images));
        Assert.Equal(raw.shape, actual.shape);
        Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-6), "the smoothed detector's maps are not the Gaussian of the plain ones");
        Assert.False(actual.allclose(raw, rtol: 1e-3, atol: 1e-4)); // and smoothing did change them

        foreach (double bad in new[] { -1.0, double.NaN, double.PositiveInfinity })
        {
            var ex = Assert.Throws<ArgumentException>(() => UniAD.Core.Tests.Detection.SyntheticData.TinyBuilder().WithReconstruction(o => o with { MapSmoothingSigma = bad }).Build());
            Assert.Contains("MapSmoothingSigma", ex.Message);
        }
    }

    private static IEnumerable<string> ModelProtoNodes(string path) =>
        Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(path)).Graph.Node.Select(n => n.OpType);

    public void Dispose() => Directory.Delete(root, recursive: true);
}
