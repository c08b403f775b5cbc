using UniAD.Core.Backbones;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Backbones;

public sealed class MfcnNeckTests
{
    [Fact]
    public void Resizes_with_aligned_corners_and_concatenates()
    {
        using var neck = new MfcnNeck(new[] { 1, 2 }, new[] { 8, 16 }, 16);
        Assert.Equal(3, neck.OutputChannels);
        using var scope = NewDisposeScope();
        // A horizontal ramp f(x) = x on 28 columns: align_corners sampling gives x = i·27/13 exactly.
        var ramp = arange(28, dtype: float32).repeat(28, 1).reshape(1, 1, 28, 28);
        var identity = randn(1, 2, 14, 14);
        var output = neck.forward(new[] { ramp, identity });
        Assert.Equal(new long[] { 1, 3, 14, 14 }, output.shape);
        for (int i = 0; i < 14; i++)
        {
            Assert.Equal(i * 27f / 13f, output[0, 0, 5, i].item<float>(), 1e-4);
        }

        Assert.Equal(0f, (output[.., 1..] - identity).abs().max().item<float>());
    }

    [Fact]
    public void Wrong_inputs_are_rejected()
    {
        Assert.Throws<ArgumentException>(() => new MfcnNeck(new[] { 1, 2 }, new[] { 8 }, 16));
        using var neck = new MfcnNeck(new[] { 4 }, new[] { 8 }, 16);
        using var scope = NewDisposeScope();
        Assert.Contains("B x 4 x h x w", Assert.Throws<ArgumentException>(() => neck.forward(new[] { randn(1, 3, 8, 8) })).Message);
        Assert.Throws<ArgumentException>(() => neck.forward(new[] { randn(1, 4, 8, 8), randn(1, 4, 8, 8) }));
    }
}
