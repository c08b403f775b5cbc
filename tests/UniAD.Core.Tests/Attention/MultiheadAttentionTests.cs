using UniAD.Core.TorchSupport;
using TorchSharp;
using UniAD.Core.Attention;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Tests.Attention;

public sealed class MultiheadAttentionTests
{
    [Fact]
    public void Parameter_names_and_shapes_follow_pytorch()
    {
        using var mha = new MultiheadAttention(16, 4);
        var shapes = mha.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        Assert.Equal(new[] { "in_proj_bias", "in_proj_weight", "out_proj.bias", "out_proj.weight" }, shapes.Keys.OrderBy(k => k, StringComparer.Ordinal));
        Assert.Equal(new long[] { 48, 16 }, shapes["in_proj_weight"]);
        Assert.Equal(new long[] { 48 }, shapes["in_proj_bias"]);
        Assert.Equal(new long[] { 16, 16 }, shapes["out_proj.weight"]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_single_query_batch_is_broadcast_like_an_expanded_one(bool training)
    {
        const int e = 16, h = 4, l = 7, s = 9, b = 3;
        using var gen = new Generator(11);
        using var one = new MultiheadAttention(e, h, dropout: 0.1, generator: gen, dropoutRandom: new DropoutRandom(5));
        using var many = new MultiheadAttention(e, h, dropout: 0.1, generator: gen, dropoutRandom: new DropoutRandom(5));
        many.load_state_dict(one.state_dict());
        one.train(training);
        many.train(training);
        using var scope = NewDisposeScope();
        var q = randn(l, 1, e, generator: gen);
        var k = randn(s, b, e, generator: gen);
        var v = randn(s, b, e, generator: gen);
        var mask = zeros(l, s);
        mask[1, 2] = tensor(float.NegativeInfinity);

        var broadcast = one.forward(q, k, v, mask);
        var expanded = many.forward(q.expand(l, b, e).contiguous(), k, v, mask);

        Assert.Equal(new long[] { l, b, e }, broadcast.shape);
        Assert.True(broadcast.allclose(expanded, rtol: 1e-5, atol: 1e-6));
        Assert.Throws<ArgumentException>(() => one.forward(randn(l, 2, e), k, v, mask));
    }

    [Fact]
    public void Matches_an_explicit_per_head_computation_with_a_mask()
    {
        const int e = 8, h = 2, d = e / h, l = 5, s = 6, b = 3;
        using var gen = new Generator(7);
        using var mha = new MultiheadAttention(e, h, generator: gen);
        using (no_grad())
        {
            foreach (var p in mha.parameters())
            {
                p.normal_(0, 0.5, gen); // non-zero biases too
            }
        }

        mha.eval();
        using var scope = NewDisposeScope();
        var q = randn(l, b, e, generator: gen);
        var k = randn(s, b, e, generator: gen);
        var v = randn(s, b, e, generator: gen);
        var mask = zeros(l, s);
        mask[0, 0] = tensor(float.NegativeInfinity);
        mask[2, 3] = tensor(float.NegativeInfinity);
        mask[4, 1] = tensor(-1.5f);

        var actual = mha.forward(q, k, v, mask);

        var sd = mha.state_dict();
        var w = sd["in_proj_weight"];
        var bias = sd["in_proj_bias"];
        var outputs = new List<Tensor>();
        for (int batch = 0; batch < b; batch++)
        {
            var heads = new List<Tensor>();
            for (int head = 0; head < h; head++)
            {
                Tensor Project(Tensor x, int part) =>
                    x[.., batch].matmul(w[(part * e + head * d)..(part * e + (head + 1) * d)].t()) + bias[(part * e + head * d)..(part * e + (head + 1) * d)];
                var qh = Project(q, 0);
                var kh = Project(k, 1);
                var vh = Project(v, 2);
                var weights = F.softmax(qh.matmul(kh.t()) / Math.Sqrt(d) + mask, 1);
                heads.Add(weights.matmul(vh));
            }

            outputs.Add(cat(heads, 1).matmul(sd["out_proj.weight"].t()) + sd["out_proj.bias"]);
        }

        var expected = stack(outputs, 1);
        TensorAssert.Close(actual, expected, 1e-5, 1e-5, "attention");
    }

    [Fact]
    public void A_float32_mask_gives_float64_queries_the_same_result_as_a_float64_mask()
    {
        // The cached neighbor mask is float32; a model converted to float64 must still apply it.
        const int e = 8, h = 2;
        using var gen = new Generator(3);
        using var mha = new MultiheadAttention(e, h, generator: gen);
        mha.to(float64);
        using var scope = NewDisposeScope();
        var x = randn(new long[] { 12, 2, e }, float64, generator: gen);
        var mask32 = NeighborMask.Create(new GridSize(3, 4), new GridSize(3, 3));
        Assert.Equal(ScalarType.Float32, mask32.dtype);
        var with32 = mha.forward(x, x, x, mask32);
        var with64 = mha.forward(x, x, x, mask32.to(float64));
        var unmasked = mha.forward(x, x, x, null);
        Assert.Equal(0.0, (with32 - with64).abs().max().item<double>(), 1e-12);
        Assert.True((with64 - unmasked).abs().max().item<double>() > 1e-3, "the mask should change the result");
    }

    [Fact]
    public void Dropout_acts_in_training_only()
    {
        using var mha = new MultiheadAttention(8, 2, dropout: 0.5, generator: new Generator(3));
        using var scope = NewDisposeScope();
        var x = randn(4, 2, 8, generator: new Generator(4));
        mha.eval();
        var a = mha.forward(x, x, x, null);
        var b = mha.forward(x, x, x, null);
        Assert.Equal(0f, (a - b).abs().max().item<float>());
        mha.train();
        manual_seed(1);
        var c = mha.forward(x, x, x, null);
        Assert.True((c - a).abs().max().item<float>() > 1e-3f);
    }

    [Theory]
    [InlineData(10, 3)]
    [InlineData(8, 0)]
    [InlineData(0, 1)]
    public void Impossible_sizes_are_rejected(long embed, long heads)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new MultiheadAttention(embed, heads));
    }

    [Fact]
    public void Wrong_shapes_are_rejected_with_the_shapes_in_the_message()
    {
        using var mha = new MultiheadAttention(8, 2);
        using var scope = NewDisposeScope();
        var x = randn(4, 2, 8);
        var ex = Assert.Throws<ArgumentException>(() => mha.forward(x, randn(4, 2, 6), x, null));
        Assert.Contains("4, 2, 6", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => mha.forward(x, x, x, zeros(4, 5)));
        Assert.Contains("4 x 4", ex.Message);
        Assert.Throws<ArgumentException>(() => mha.forward(randn(4, 8), x, x, null));
    }
}
