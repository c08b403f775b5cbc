using UniAD.Core.TorchSupport;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Attention;

/// <summary>
/// Multi-head attention with PyTorch's <c>nn.MultiheadAttention</c> parameter layout and semantics:
/// sequence-first tensors (L x B x E), a packed <c>in_proj_weight</c> (3E x E) and <c>in_proj_bias</c>,
/// an <c>out_proj</c> linear layer, an optional additive float mask (L x S), and dropout on the
/// attention weights in training mode. The attention itself runs through
/// <c>scaled_dot_product_attention</c>, so fused kernels are used where the backend has them.
/// </summary>
public sealed class MultiheadAttention : Module<Tensor, Tensor, Tensor, Tensor?, Tensor>
{
    private readonly Parameter in_proj_weight;
    private readonly Parameter in_proj_bias;
    private readonly Linear out_proj;
    private readonly DropoutRandom dropoutRandom;

    /// <summary>Creates the layer with PyTorch's initialisation (Xavier-uniform in_proj, zero biases) made deterministic by <paramref name="generator"/>.</summary>
    /// <param name="embedDim">Model width E.</param>
    /// <param name="numHeads">Number of heads; must divide <paramref name="embedDim"/>.</param>
    /// <param name="dropout">Dropout probability on the attention weights (training only), in [0, 1).</param>
    /// <param name="generator">Random source for the initial weights; null uses TorchSharp's global generator.</param>
    /// <param name="dropoutRandom">Random source of the attention dropout masks on the CPU; null uses one seeded with 0.</param>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive, the heads do not divide the width, or dropout is outside [0, 1).</exception>
    public MultiheadAttention(long embedDim, long numHeads, double dropout = 0.0, Generator? generator = null, DropoutRandom? dropoutRandom = null)
        : base(nameof(MultiheadAttention))
    {
        if (embedDim <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(embedDim), embedDim, "The embedding width must be positive.");
        }

        if (numHeads <= 0 || embedDim % numHeads != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(numHeads), numHeads, $"The number of heads must be positive and divide the embedding width {embedDim}.");
        }

        if (!(dropout >= 0.0 && dropout < 1.0))
        {
            throw new ArgumentOutOfRangeException(nameof(dropout), dropout, "Attention dropout must lie in [0, 1).");
        }

        EmbedDim = embedDim;
        NumHeads = numHeads;
        Dropout = dropout;
        this.dropoutRandom = dropoutRandom ?? new DropoutRandom(0);
        in_proj_weight = new Parameter(empty(3 * embedDim, embedDim, device: CPU));
        in_proj_bias = new Parameter(zeros(3 * embedDim, device: CPU));
        out_proj = Linear(embedDim, embedDim);
        RegisterComponents();
        ResetParameters(generator);
    }

    /// <summary>Model width E.</summary>
    public long EmbedDim { get; }

    /// <summary>Number of attention heads.</summary>
    public long NumHeads { get; }

    /// <summary>Dropout probability on the attention weights in training mode.</summary>
    public double Dropout { get; }

    /// <summary>Re-initialises the weights: Xavier-uniform <c>in_proj_weight</c> and <c>out_proj.weight</c>, zero biases (the reference's final state after its initializer).</summary>
    public void ResetParameters(Generator? generator)
    {
        TorchInit.XavierUniform(in_proj_weight, generator);
        TorchInit.XavierLinear(out_proj, generator);
        using var _ = no_grad();
        in_proj_bias.zero_();
    }

    /// <summary>Attends <paramref name="query"/> (L x B x E) to <paramref name="key"/>/<paramref name="value"/> (S x B x E).</summary>
    /// <param name="query">Queries, L x B x E; or L x 1 x E, the same queries for every batch element (projected once, then broadcast).</param>
    /// <param name="key">Keys, S x B x E.</param>
    /// <param name="value">Values, S x B x E.</param>
    /// <param name="attnMask">Optional additive float mask, L x S, added to the attention logits (any float dtype: it is converted to the queries').</param>
    /// <returns>The attended values after <c>out_proj</c>, L x B x E.</returns>
    /// <exception cref="ArgumentException">Shapes do not agree.</exception>
    public override Tensor forward(Tensor query, Tensor key, Tensor value, Tensor? attnMask)
    {
        CheckShapes(query, key, value, attnMask);
        using var scope = NewDisposeScope();
        long l = query.shape[0], b = key.shape[1], s = key.shape[0];
        long e = EmbedDim, h = NumHeads, d = e / h;

        var q = F.linear(query, in_proj_weight.narrow(0, 0, e), in_proj_bias.narrow(0, 0, e));
        if (query.shape[1] != b)
        {
            q = q.expand(l, b, e);
        }

        var k = F.linear(key, in_proj_weight.narrow(0, e, e), in_proj_bias.narrow(0, e, e));
        var v = F.linear(value, in_proj_weight.narrow(0, 2 * e, e), in_proj_bias.narrow(0, 2 * e, e));

        // (L, B, E) -> (B, H, L, d)
        q = q.view(l, b, h, d).permute(1, 2, 0, 3);
        k = k.view(s, b, h, d).permute(1, 2, 0, 3);
        v = v.view(s, b, h, d).permute(1, 2, 0, 3);

        Tensor attended;
        if (training && Dropout > 0 && q.device_type == TorchSharp.DeviceType.CPU)
        {
            // Explicit attention so the dropout mask of the weights comes from the fast seeded source.
            // Batched 3-D products; the 1/sqrt(d) scale and the additive mask go into the score GEMM
            // (scores = mask + scale * q k^T in one pass over the B·H x L x S tensor).
            var q3 = q.reshape(b * h, l, d);
            var k3 = k.reshape(b * h, s, d).transpose(1, 2);
            var v3 = v.reshape(b * h, s, d);
            float scale = (float)(1.0 / Math.Sqrt(d));
            // TorchSharp's Tensor.baddbmm(batch2, input) is called on batch1: input + alpha * (this @ batch2).
            var scores = attnMask is null
                ? q3.bmm(k3).TimesInPlace(scale)
                : q3.baddbmm(k3, attnMask.to(q3.dtype), beta: 1, alpha: scale);
            attended = dropoutRandom.Apply(F.softmax(scores, -1), Dropout).bmm(v3).view(b, h, l, d);
        }
        else
        {
            // The mask in the queries' dtype: libtorch does not convert a float32 mask for float64 queries
            // (the cached neighbor mask is float32), and the result is then silently wrong.
            attended = F.scaled_dot_product_attention(q, k, v, attnMask?.to(q.dtype), training ? Dropout : 0.0);
        }

        var merged = attended.permute(2, 0, 1, 3).reshape(l, b, e);
        return out_proj.forward(merged).MoveToOuterDisposeScope();
    }

    private void CheckShapes(Tensor query, Tensor key, Tensor value, Tensor? attnMask)
    {
        if (query.dim() != 3 || key.dim() != 3 || value.dim() != 3)
        {
            throw new ArgumentException($"Attention expects sequence-first 3-D tensors (L x B x E); got query [{Shape(query)}], key [{Shape(key)}], value [{Shape(value)}].");
        }

        if (query.shape[2] != EmbedDim || key.shape[2] != EmbedDim || value.shape[2] != EmbedDim)
        {
            throw new ArgumentException($"Attention width is {EmbedDim}; got query [{Shape(query)}], key [{Shape(key)}], value [{Shape(value)}].");
        }

        if (key.shape[0] != value.shape[0] || value.shape[1] != key.shape[1] || (query.shape[1] != key.shape[1] && query.shape[1] != 1))
        {
            throw new ArgumentException($"Key and value must have the same length and the same batch size, and the query that batch size or 1; got query [{Shape(query)}], key [{Shape(key)}], value [{Shape(value)}].");
        }

        if (attnMask is not null && (attnMask.dim() != 2 || attnMask.shape[0] != query.shape[0] || attnMask.shape[1] != key.shape[0]))
        {
            throw new ArgumentException($"The attention mask must be L x S = {query.shape[0]} x {key.shape[0]}; got [{Shape(attnMask)}].", nameof(attnMask));
        }
    }

    private static string Shape(Tensor t) => string.Join(", ", t.shape);
}
