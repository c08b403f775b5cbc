using Embedding = TorchSharp.Modules.Embedding;
using LayerNorm = TorchSharp.Modules.LayerNorm;
using Linear = TorchSharp.Modules.Linear;
using UniAD.Core.Attention;
using UniAD.Core.Reconstruction;
using static TorchSharp.torch;
using static UniAD.Core.Export.ModuleParts;
using MultiheadAttention = UniAD.Core.Attention.MultiheadAttention;

namespace UniAD.Core.Export;

/// <summary>
/// The reconstruction network in evaluation mode (no jitter, no dropout): tokens (h·w) x B x C, <c>input_proj</c>, the
/// transformer with the position embedding, <c>output_proj</c>, back to B x C x h x w; then the anomaly map. Outputs:
/// feature_rec and pred.
/// </summary>
internal sealed class UniADReconstructionEmitter : OnnxEmitter<UniADReconstruction>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, UniADReconstruction module, string scope, IReadOnlyList<string> inputs)
    {
        var g = context.Graph;
        var o = module.Options;
        var outer = context.Reconstruction;
        context.Reconstruction = o;
        try
        {
            var align = inputs[0];
            long c = o.InputChannels, h = o.FeatureSize.Height, w = o.FeatureSize.Width;
            var tokens = g.Transpose(scope, g.Reshape(scope, align, new[] { 0, c, h * w }), 2, 0, 1);
            var hidden = context.Emit(Child<Linear>(module, "input_proj"), OnnxEmitContext.Child(scope, "input_proj"), tokens)[0];
            var pos = context.Emit(Child<PositionEmbedding>(module, "pos_embed"), OnnxEmitContext.Child(scope, "pos_embed"))[0];
            var decoded = context.Emit(Child<UniADTransformer>(module, "transformer"), OnnxEmitContext.Child(scope, "transformer"), hidden, pos)[0];
            var rec = context.Emit(Child<Linear>(module, "output_proj"), OnnxEmitContext.Child(scope, "output_proj"), decoded)[0];
            rec = g.Reshape(scope, g.Transpose(scope, rec, 1, 2, 0), new[] { 0, c, h, w });
            var pred = AnomalyMapEmitter.Emit(g, OnnxEmitContext.Child(scope, "pred"), rec, align, o.InputStride, o.Objective);
            return new[] { rec, pred };
        }
        finally
        {
            context.Reconstruction = outer;
        }
    }
}

/// <summary>The learned position embedding: a constant (H·W) x C table, concat(col[x], row[y]) as the module computes it.</summary>
internal sealed class LearnedPositionEmbeddingEmitter : OnnxEmitter<LearnedPositionEmbedding>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, LearnedPositionEmbedding module, string scope, IReadOnlyList<string> inputs)
    {
        using var s = NewDisposeScope();
        using var noGrad = no_grad();
        return new[] { context.Graph.Initializer(scope, module.forward(CPU)) };
    }
}

/// <summary>The sine position embedding: a constant (H·W) x C table.</summary>
internal sealed class SinePositionEmbeddingEmitter : OnnxEmitter<SinePositionEmbedding>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, SinePositionEmbedding module, string scope, IReadOnlyList<string> inputs)
    {
        using var s = NewDisposeScope();
        return new[] { context.Graph.Initializer(scope, module.Compute()) };
    }
}

/// <summary>UniAD's transformer: the neighbor mask as a constant additive (H·W) x (H·W) mask (−inf inside the neighbourhood), encoder, decoder.</summary>
internal sealed class UniADTransformerEmitter : OnnxEmitter<UniADTransformer>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, UniADTransformer module, string scope, IReadOnlyList<string> inputs)
    {
        var g = context.Graph;
        var o = context.RequireReconstruction(scope);
        string mask = string.Empty;
        if (o.NeighborSize is { } neighbor && (o.MaskEncoder || o.MaskDecoderSelf || o.MaskDecoderCross))
        {
            var blocked = NeighborMask.Pattern(o.FeatureSize, neighbor);
            var values = blocked.Select(b => b ? float.NegativeInfinity : 0f).ToArray();
            mask = g.Initializer(OnnxEmitContext.Child(scope, "neighbor_mask"), values, new long[] { o.FeatureSize.Count, o.FeatureSize.Count });
        }

        var pos = g.Reshape(scope, inputs[1], new long[] { o.FeatureSize.Count, 1, o.HiddenDim });
        var memory = context.Emit(Child<TransformerEncoder>(module, "encoder"), OnnxEmitContext.Child(scope, "encoder"), inputs[0], pos, o.MaskEncoder ? mask : string.Empty)[0];
        return context.Emit(Child<TransformerDecoder>(module, "decoder"), OnnxEmitContext.Child(scope, "decoder"), memory, pos, o.MaskDecoderSelf ? mask : string.Empty, o.MaskDecoderCross ? mask : string.Empty);
    }
}

/// <summary>The encoder: its layers, then (pre-norm only) a final LayerNorm. Inputs: tokens, position embedding, mask ("" for none).</summary>
internal sealed class TransformerEncoderEmitter : OnnxEmitter<TransformerEncoder>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, TransformerEncoder module, string scope, IReadOnlyList<string> inputs)
    {
        var x = inputs[0];
        var layers = Children(Child<nn.Module>(module, "layers"));
        for (int i = 0; i < layers.Count; i++)
        {
            x = context.Emit(layers[i], OnnxEmitContext.Child(scope, $"layers.{i}"), x, inputs[1], inputs[2])[0];
        }

        if (TryChild<LayerNorm>(module, "norm") is { } norm)
        {
            x = context.Emit(norm, OnnxEmitContext.Child(scope, "norm"), x)[0];
        }

        return new[] { x };
    }
}

/// <summary>The layer-wise query decoder: every layer reads the encoder output and the previous layer's; a final LayerNorm.</summary>
internal sealed class TransformerDecoderEmitter : OnnxEmitter<TransformerDecoder>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, TransformerDecoder module, string scope, IReadOnlyList<string> inputs)
    {
        var memory = inputs[0];
        var output = memory;
        var layers = Children(Child<nn.Module>(module, "layers"));
        for (int i = 0; i < layers.Count; i++)
        {
            output = context.Emit(layers[i], OnnxEmitContext.Child(scope, $"layers.{i}"), output, memory, inputs[1], inputs[2], inputs[3])[0];
        }

        return context.Emit(Child<LayerNorm>(module, "norm"), OnnxEmitContext.Child(scope, "norm"), output);
    }
}

/// <summary>An encoder layer (post-norm, or pre-norm when the options say so). Inputs: tokens, position embedding (L x 1 x C), mask.</summary>
internal sealed class TransformerEncoderLayerEmitter : OnnxEmitter<TransformerEncoderLayer>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, TransformerEncoderLayer module, string scope, IReadOnlyList<string> inputs)
    {
        var g = context.Graph;
        var o = context.RequireReconstruction(scope);
        var parts = new LayerParts(context, module, scope);
        string src = inputs[0], pos = inputs[1], mask = inputs[2];
        if (o.NormalizeBefore)
        {
            var src2 = parts.Norm("norm1", src);
            var qk = g.Add(scope, src2, pos);
            src = g.Add(scope, src, parts.Attention("self_attn", qk, qk, src2, mask));
            src2 = parts.Norm("norm2", src);
            return new[] { g.Add(scope, src, parts.FeedForward(o.Activation, src2)) };
        }

        var q = g.Add(scope, src, pos);
        src = parts.Norm("norm1", g.Add(scope, src, parts.Attention("self_attn", q, q, src, mask)));
        return new[] { parts.Norm("norm2", g.Add(scope, src, parts.FeedForward(o.Activation, src))) };
    }
}

/// <summary>
/// A decoder layer: its own learned queries (a constant L x 1 x C) attend to the encoder output, then to the previous
/// layer's output, then the feed-forward block. Inputs: previous output, encoder output, position embedding, the two masks.
/// </summary>
internal sealed class TransformerDecoderLayerEmitter : OnnxEmitter<TransformerDecoderLayer>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, TransformerDecoderLayer module, string scope, IReadOnlyList<string> inputs)
    {
        var g = context.Graph;
        var o = context.RequireReconstruction(scope);
        var parts = new LayerParts(context, module, scope);
        string output = inputs[0], memory = inputs[1], pos = inputs[2], tgtMask = inputs[3], memoryMask = inputs[4];
        var weight = Child<Embedding>(module, "learned_embed").weight!;
        var embed = g.Initializer(OnnxEmitContext.Child(scope, "learned_embed.weight"), OnnxGraph.Values(weight), new[] { weight.shape[0], 1, weight.shape[1] });
        var memoryKey = g.Add(scope, memory, pos);
        var outputKey = g.Add(scope, output, pos);
        if (o.NormalizeBefore)
        {
            var tgt2 = parts.Norm("norm1", embed);
            var tgt = g.Add(scope, embed, parts.Attention("self_attn", g.Add(scope, tgt2, pos), memoryKey, memory, tgtMask));
            tgt2 = parts.Norm("norm2", tgt);
            tgt = g.Add(scope, tgt, parts.Attention("multihead_attn", g.Add(scope, tgt2, pos), outputKey, output, memoryMask));
            tgt2 = parts.Norm("norm3", tgt);
            return new[] { g.Add(scope, tgt, parts.FeedForward(o.Activation, tgt2)) };
        }

        var t = parts.Norm("norm1", g.Add(scope, embed, parts.Attention("self_attn", g.Add(scope, embed, pos), memoryKey, memory, tgtMask)));
        t = parts.Norm("norm2", g.Add(scope, t, parts.Attention("multihead_attn", g.Add(scope, t, pos), outputKey, output, memoryMask)));
        return new[] { parts.Norm("norm3", g.Add(scope, t, parts.FeedForward(o.Activation, t))) };
    }
}

/// <summary>The named sub-modules of a transformer layer, emitted under the layer's scope.</summary>
internal readonly struct LayerParts(OnnxEmitContext context, nn.Module layer, string scope)
{
    /// <summary>LayerNorm <paramref name="name"/> of <paramref name="x"/>.</summary>
    public string Norm(string name, string x) => context.Emit(Child<LayerNorm>(layer, name), OnnxEmitContext.Child(scope, name), x)[0];

    /// <summary>Attention <paramref name="name"/>; <paramref name="mask"/> "" for none.</summary>
    public string Attention(string name, string query, string key, string value, string mask) =>
        context.Emit(Child<MultiheadAttention>(layer, name), OnnxEmitContext.Child(scope, name), query, key, value, mask)[0];

    /// <summary>linear2(activation(linear1(x))); dropout is training-only.</summary>
    public string FeedForward(TransformerActivation activation, string x)
    {
        var g = context.Graph;
        var hidden = context.Emit(Child<Linear>(layer, "linear1"), OnnxEmitContext.Child(scope, "linear1"), x)[0];
        var activationScope = OnnxEmitContext.Child(scope, "activation");
        hidden = activation switch
        {
            TransformerActivation.Relu => g.Unary(activationScope, "Relu", hidden),
            // Exact GELU, as PyTorch's default: x · ½ · (1 + erf(x / √2)) (Gelu is an operator only from opset 20).
            TransformerActivation.Gelu => g.Mul(activationScope, g.Mul(activationScope, hidden, g.Add(activationScope, g.Unary(activationScope, "Erf", g.Mul(activationScope, hidden, g.Scalar((float)(1 / Math.Sqrt(2))))), g.Scalar(1f))), g.Scalar(0.5f)),
            _ => throw new NotSupportedException($"ONNX export: activation {activation} at '{scope}'."),
        };
        return context.Emit(Child<Linear>(layer, "linear2"), OnnxEmitContext.Child(scope, "linear2"), hidden)[0];
    }
}

/// <summary>
/// PyTorch-layout multi-head attention on sequence-first tensors: q, k, v projections, scores q·kᵀ/√d plus the additive
/// mask, softmax, weighted values, <c>out_proj</c>. A query of batch 1 (the decoder's learned queries) broadcasts
/// against the keys' batch. Inputs: query (L x B' x E), key and value (S x B x E), mask ("" for none).
/// </summary>
internal sealed class MultiheadAttentionEmitter : OnnxEmitter<MultiheadAttention>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, MultiheadAttention module, string scope, IReadOnlyList<string> inputs)
    {
        var g = context.Graph;
        long e = module.EmbedDim, heads = module.NumHeads, d = e / heads;
        var weight = ModuleParts.Tensor(module, "in_proj_weight");
        var bias = ModuleParts.Tensor(module, "in_proj_bias");
        string Project(int part, string x, string name)
        {
            using var s = NewDisposeScope();
            return context.Linear($"{scope}.{name}_proj", x, weight.narrow(0, part * e, e).t(), bias.narrow(0, part * e, e));
        }

        long l = g.Shape(inputs[0])[0], sLen = g.Shape(inputs[1])[0];
        var q = g.Transpose(scope, g.Reshape(scope, Project(0, inputs[0], "q"), new[] { l, -1, heads, d }), 1, 2, 0, 3); // B' x H x L x d
        var k = g.Transpose(scope, g.Reshape(scope, Project(1, inputs[1], "k"), new[] { sLen, -1, heads, d }), 1, 2, 3, 0); // B x H x d x S
        var v = g.Transpose(scope, g.Reshape(scope, Project(2, inputs[2], "v"), new[] { sLen, -1, heads, d }), 1, 2, 0, 3); // B x H x S x d
        var scores = g.Mul(scope, g.MatMul(scope, q, k), g.Scalar((float)(1.0 / Math.Sqrt(d))));
        if (inputs[3].Length > 0)
        {
            scores = g.Add(scope, scores, inputs[3]);
        }

        var attended = g.MatMul(scope, g.Softmax(scope, scores), v); // B x H x L x d
        var merged = g.Reshape(scope, g.Transpose(scope, attended, 2, 0, 1, 3), new[] { l, -1, e });
        return context.Emit(Child<Linear>(module, "out_proj"), OnnxEmitContext.Child(scope, "out_proj"), merged);
    }
}

/// <summary>A linear layer: x·Wᵀ + b (Wᵀ stored transposed).</summary>
internal sealed class LinearEmitter : OnnxEmitter<Linear>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, Linear module, string scope, IReadOnlyList<string> inputs)
    {
        using var s = NewDisposeScope();
        return new[] { context.Linear(scope, inputs[0], module.weight!.t(), module.bias) };
    }
}

/// <summary>A LayerNorm over the last axis (LayerNormalization, opset 17).</summary>
internal sealed class LayerNormEmitter : OnnxEmitter<LayerNorm>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, LayerNorm module, string scope, IReadOnlyList<string> inputs)
    {
        var g = context.Graph;
        long width = g.Shape(inputs[0])[^1];
        if (module.normalized_shape is not { Length: 1 } shape || shape[0] != width)
        {
            throw new NotSupportedException($"ONNX export: '{scope}' normalises over [{string.Join(", ", module.normalized_shape ?? Array.Empty<long>())}]; only the last axis ({width}) is supported.");
        }

        var scale = module.weight is { } w ? g.Initializer($"{scope}.weight", w) : g.Initializer($"{scope}.weight", Enumerable.Repeat(1f, (int)width).ToArray(), new[] { width });
        var bias = module.bias is { } b ? g.Initializer($"{scope}.bias", b) : g.Initializer($"{scope}.bias", new float[width], new[] { width });
        return new[] { g.LayerNormalization(scope, inputs[0], scale, bias, module.eps) };
    }
}
