using UniAD.Core.Reconstruction;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Reconstruction;

public sealed class AnomalyMapTests
{
    [Fact]
    public void Error_is_the_channel_L2_norm_upsampled_with_aligned_corners()
    {
        using var scope = NewDisposeScope();
        var align = zeros(1, 2, 2, 2);
        var rec = zeros(1, 2, 2, 2);
        rec[0, 0, 0, 0] = tensor(3f);
        rec[0, 1, 0, 0] = tensor(4f); // |(3, 4)| = 5 at (0, 0)
        rec[0, 0, 1, 1] = tensor(-2f); // 2 at (1, 1)

        var raw = AnomalyMap.Compute(rec, align, 1);
        Assert.Equal(new[] { 5f, 0f, 0f, 2f }, raw.data<float>().ToArray());

        // 2 -> 4 with align_corners: sample positions 0, 1/3, 2/3, 1 of the input grid.
        var up = AnomalyMap.Compute(rec, align, 2);
        Assert.Equal(new long[] { 1, 1, 4, 4 }, up.shape);
        Assert.Equal(5f, up[0, 0, 0, 0].item<float>());
        Assert.Equal(2f, up[0, 0, 3, 3].item<float>());
        Assert.Equal(5f * 2f / 3f, up[0, 0, 0, 1].item<float>(), 1e-5);
        Assert.Equal((5f * 4f / 9f) + (2f * 1f / 9f), up[0, 0, 1, 1].item<float>(), 1e-5);
    }

    [Fact]
    public void Loss_is_the_mean_squared_error_over_all_elements()
    {
        using var scope = NewDisposeScope();
        var a = tensor(new float[] { 1, 2, 3, 4 }).reshape(1, 1, 2, 2);
        var b = tensor(new float[] { 1, 0, 3, 1 }).reshape(1, 1, 2, 2);
        Assert.Equal((4f + 9f) / 4f, AnomalyMap.Loss(a, b).item<float>(), 1e-6);
    }

    [Fact]
    public void Mismatched_shapes_and_strides_are_rejected()
    {
        using var scope = NewDisposeScope();
        var ex = Assert.Throws<ArgumentException>(() => AnomalyMap.Compute(zeros(1, 2, 3, 3), zeros(1, 2, 3, 4), 2));
        Assert.Contains("1, 2, 3, 4", ex.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => AnomalyMap.Compute(zeros(1, 2, 3, 3), zeros(1, 2, 3, 3), 0));
    }
}
