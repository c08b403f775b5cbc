using UniAD.Core.Detection;
using UniAD.Core.Metrics;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Tests.Primitives;

/// <summary>The TorchSharp-free post-processing (UniAD.Core.Primitives, used by the ONNX scorer) against libtorch's.</summary>
public sealed class PurePostProcessingTests
{
    [Theory]
    [InlineData(14, 14, 224, 224)]
    [InlineData(64, 64, 500, 1250)]
    [InlineData(224, 224, 64, 48)]
    [InlineData(7, 9, 7, 9)]
    [InlineData(1, 1, 5, 3)]
    public void Bilinear_map_resize_matches_libtorch(int h, int w, int toH, int toW)
    {
        var generator = new TorchSharp.torch.Generator(42);
        using var map = rand(new long[] { 1, 1, h, w }, generator: generator);
        using var expected = F.interpolate(map, new long[] { toH, toW }, mode: InterpolationMode.Bilinear, align_corners: false);
        var want = expected.contiguous().data<float>().ToArray();
        var got = MapResize.Bilinear(map.contiguous().data<float>().ToArray(), h, w, toH, toW);
        Assert.Equal(want.Length, got.Length);
        double worst = want.Zip(got, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(worst <= 2e-6, $"max difference {worst}");
        Assert.Throws<ArgumentException>(() => MapResize.Bilinear(new float[5], 2, 2, 3, 3));
    }

    [Theory]
    [InlineData(ImageScoreKind.PooledMax, 16)]
    [InlineData(ImageScoreKind.PooledMax, 300)]
    [InlineData(ImageScoreKind.PlainMax, 16)]
    [InlineData(ImageScoreKind.Mean, 16)]
    [InlineData(ImageScoreKind.Std, 16)]
    public void Map_scores_match_libtorch(ImageScoreKind kind, int pool)
    {
        var generator = new TorchSharp.torch.Generator(7);
        using var map = rand(new long[] { 1, 1, 224, 180 }, generator: generator) * 5;
        double expected = kind switch
        {
            ImageScoreKind.PooledMax when pool <= 180 => F.avg_pool2d(map, pool, 1).max().item<float>(),
            ImageScoreKind.PooledMax or ImageScoreKind.PlainMax => map.max().item<float>(),
            ImageScoreKind.Mean => map.to(float64).mean().item<double>(),
            _ => map.to(float64).std(unbiased: false).item<double>(),
        };
        double got = MapScore.Of(map.contiguous().data<float>().ToArray(), 224, 180, kind, pool);
        Assert.True(Math.Abs(got - expected) <= 1e-6 * Math.Abs(expected), $"{kind}: {got} vs {expected}");
    }
}
