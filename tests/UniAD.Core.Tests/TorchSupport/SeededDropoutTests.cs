using UniAD.Core.TorchSupport;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.TorchSupport;

public sealed class SeededDropoutTests
{
    [Theory]
    [InlineData(0.1)]
    [InlineData(0.5)]
    public void Mask_keeps_one_minus_p_and_scales_the_kept(double p)
    {
        var source = new DropoutRandom(42);
        using var mask = source.Mask(new long[] { 1000, 1000 }, p);
        var values = mask.data<float>().ToArray();
        float keep = (float)(1 / (1 - p));
        Assert.All(values.Distinct(), v => Assert.True(v == 0f || v == keep, $"unexpected mask value {v}"));
        double kept = values.Count(v => v != 0) / 1e6;
        // Binomial std with n = 1e6 is at most 5e-4; 4 std.
        Assert.InRange(kept, 1 - p - 2e-3, 1 - p + 2e-3);
        // Neighbouring elements are independent: P(both kept) ≈ (1 − p)².
        double pairs = Enumerable.Range(0, 500_000).Count(i => values[2 * i] != 0 && values[(2 * i) + 1] != 0) / 5e5;
        Assert.InRange(pairs, ((1 - p) * (1 - p)) - 3e-3, ((1 - p) * (1 - p)) + 3e-3);
    }

    [Fact]
    public void Same_seed_same_sequence_other_seed_other_masks()
    {
        var a = new DropoutRandom(7);
        var b = new DropoutRandom(7);
        var c = new DropoutRandom(8);
        using var a1 = a.Mask(new long[] { 3, 1001 }, 0.3);
        using var a2 = a.Mask(new long[] { 3, 1001 }, 0.3);
        using var b1 = b.Mask(new long[] { 3, 1001 }, 0.3);
        using var c1 = c.Mask(new long[] { 3, 1001 }, 0.3);
        Assert.Equal(a1.data<float>().ToArray(), b1.data<float>().ToArray());
        Assert.NotEqual(a1.data<float>().ToArray(), a2.data<float>().ToArray());
        Assert.NotEqual(a1.data<float>().ToArray(), c1.data<float>().ToArray());
    }

    [Fact]
    public void Layer_is_identity_in_eval_and_rejects_impossible_rates()
    {
        using var layer = new SeededDropout(0.5, new DropoutRandom(1));
        using var scope = NewDisposeScope();
        var x = ones(10, 10);
        layer.eval();
        Assert.Equal(100f, layer.forward(x).sum().item<float>());
        layer.train();
        var y = layer.forward(x).data<float>().ToArray();
        Assert.Contains(0f, y);
        Assert.Contains(2f, y);
        Assert.Throws<ArgumentOutOfRangeException>(() => new SeededDropout(1.0, new DropoutRandom(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DropoutRandom(1).Mask(new long[] { 2 }, -0.1));
    }

    [Theory]
    [InlineData(0L, 1000L, 0.1)]
    [InlineData(2L, 37L, 0.3)]
    [InlineData(0L, 15L, 0.5)]
    [InlineData(4L, 4L, 0.1)]
    public unsafe void Vectorized_fill_draws_exactly_the_scalar_stream(long from, long to, double p)
    {
        uint threshold = (uint)Math.Round(p * 4294967296.0);
        float keep = (float)(1 / (1 - p));
        var scalar = new float[to + 1];
        fixed (float* s = scalar)
        {
            DropoutRandom.Fill(s, from, to, 0x1234_5678_9ABC_DEF0UL, threshold, keep, vectorBits: 0);
        }

        foreach (int bits in new[] { 256, 512 }) // AVX2 and AVX-512; a path the CPU lacks runs in software
        {
            var vector = new float[to + 1];
            fixed (float* v = vector)
            {
                DropoutRandom.Fill(v, from, to, 0x1234_5678_9ABC_DEF0UL, threshold, keep, vectorBits: bits);
            }

            Assert.Equal(scalar, vector);
        }
    }
}
