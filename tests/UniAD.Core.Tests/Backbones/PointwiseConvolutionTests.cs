using UniAD.Core.Backbones;
using Xunit.Abstractions;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Tests.Backbones;

/// <summary>
/// EfficientNet's 1 x 1 convolutions on channels-last inputs (the layout the backbone runs in on the CPU) against the
/// same convolution in float64. On an AMD EPYC with AVX-512, oneDNN's channels-last 1 x 1 kernel under TorchSharp 0.107
/// returned 336 to 112 channels wrong by up to 70 % of the output's magnitude (NCHW exact), which moved EfficientNet-B4's
/// block 21 by 1.9e-3 from the reference; <see cref="Conv2dStaticSamePadding"/> therefore computes them as a matrix
/// product. This test runs every 1 x 1 shape of B0 and B4 on whatever CPU runs it.
/// </summary>
public sealed class PointwiseConvolutionTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("b0")]
    [InlineData("b4")]
    public void Every_pointwise_convolution_matches_float64_in_channels_last_layout(string variant)
    {
        var spec = EfficientNetSpec.Get(variant);
        var shapes = spec.Blocks
            .SelectMany(b => new[] { (In: b.InputFilters, Out: b.InputFilters * b.ExpandRatio), (In: b.InputFilters * b.ExpandRatio, Out: b.OutputFilters) })
            .Distinct()
            .ToList();
        var generator = new Generator(7, device("cpu"));
        double worst = 0;
        foreach (var (cin, cout) in shapes)
        {
            using var scope = NewDisposeScope();
            using var conv = new Conv2dStaticSamePadding(cin, cout, 1, 1, 14, bias: false);
            using var _ = no_grad();
            var input = randn(new long[] { 2, cin, 14, 14 }, generator: generator, device: device("cpu"));
            var channelsLast = FusedWeights.ToChannelsLast(input);
            var actual = conv.forward(channelsLast).to(float64);
            var expected = F.conv2d(input.to(float64), conv.parameters().First().to(float64));
            double relative = (actual - expected).abs().max().item<double>() / expected.abs().max().item<double>();
            worst = Math.Max(worst, relative);
            Assert.True(relative < 1e-5, $"{variant} 1 x 1 convolution {cin} -> {cout} channels on a channels-last input: max |diff| is {relative:E2} of max |expected|.");
        }

        output.WriteLine($"{variant}: {shapes.Count} pointwise shapes, worst relative difference {worst:E2}");
    }
}
