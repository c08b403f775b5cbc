using UniAD.Core.TorchSupport;
using TorchSharp;
using TorchSharp.Modules;
using UniAD.Core.Attention;
using MultiheadAttention = UniAD.Core.Attention.MultiheadAttention;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Reconstruction;

/// <summary>
/// Encoder layer of UniAD (DETR style): self-attention with the position embedding added to queries
/// and keys, then a feed-forward block; post-norm by default, pre-norm when <c>normalizeBefore</c>.
/// Inputs: source tokens (L x B x C), position embedding (L x C), optional additive mask (L x L).
/// </summary>
public sealed class TransformerEncoderLayer : Module<Tensor, Tensor, Tensor?, Tensor>
{
    private readonly MultiheadAttention self_attn;
    private readonly Linear linear1;
    private readonly SeededDropout dropout;
    private readonly Linear linear2;
    private readonly LayerNorm norm1;
    private readonly LayerNorm norm2;
    private readonly SeededDropout dropout1;
    private readonly SeededDropout dropout2;
    private readonly TransformerActivation activation;
    private readonly bool normalizeBefore;

    /// <summary>Creates the layer; every linear layer gets Xavier-uniform weights and zero biases.</summary>
    public TransformerEncoderLayer(int hiddenDim, int numHeads, int feedForwardDim, double dropoutRate, TransformerActivation activation, bool normalizeBefore, Generator? generator = null, DropoutRandom? dropoutRandom = null)
        : base(nameof(TransformerEncoderLayer))
    {
        dropoutRandom ??= new DropoutRandom(0);
        self_attn = new MultiheadAttention(hiddenDim, numHeads, dropoutRate, generator, dropoutRandom);
        linear1 = Linear(hiddenDim, feedForwardDim);
        dropout = new SeededDropout(dropoutRate, dropoutRandom);
        linear2 = Linear(feedForwardDim, hiddenDim);
        norm1 = LayerNorm(hiddenDim);
        norm2 = LayerNorm(hiddenDim);
        dropout1 = new SeededDropout(dropoutRate, dropoutRandom);
        dropout2 = new SeededDropout(dropoutRate, dropoutRandom);
        this.activation = activation;
        this.normalizeBefore = normalizeBefore;
        RegisterComponents();
        TorchInit.XavierLinear(linear1, generator);
        TorchInit.XavierLinear(linear2, generator);
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor src, Tensor pos, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        Tensor result;
        if (normalizeBefore)
        {
            var src2 = norm1.forward(src);
            var qk = src2.Plus(pos);
            src = src.Plus(dropout1.forward(self_attn.forward(qk, qk, src2, mask)));
            src2 = norm2.forward(src);
            result = src.Plus(dropout2.forward(FeedForward(src2)));
        }
        else
        {
            var qk = src.Plus(pos);
            src = norm1.forward(src.Plus(dropout1.forward(self_attn.forward(qk, qk, src, mask))));
            result = norm2.forward(src.Plus(dropout2.forward(FeedForward(src))));
        }

        return result.MoveToOuterDisposeScope();
    }

    private Tensor FeedForward(Tensor x) =>
        linear2.forward(dropout.forward(Activations.Apply(activation, linear1.forward(x))));
}

/// <summary>
/// Decoder layer of UniAD's layer-wise query decoder. The layer starts from its OWN learned query
/// embedding (<c>learned_embed</c>, (H·W) x C); its first attention attends the query to the encoder
/// output (<c>memory</c>), its second attends to <c>out</c>, the previous decoder layer's output (the
/// encoder output for the first layer); then a feed-forward block. Post-norm by default.
/// </summary>
public sealed class TransformerDecoderLayer : Module<Tensor, Tensor, Tensor, Tensor?, Tensor?, Tensor>
{
    private readonly Embedding learned_embed;
    private readonly MultiheadAttention self_attn;
    private readonly MultiheadAttention multihead_attn;
    private readonly Linear linear1;
    private readonly SeededDropout dropout;
    private readonly Linear linear2;
    private readonly LayerNorm norm1;
    private readonly LayerNorm norm2;
    private readonly LayerNorm norm3;
    private readonly SeededDropout dropout1;
    private readonly SeededDropout dropout2;
    private readonly SeededDropout dropout3;
    private readonly TransformerActivation activation;
    private readonly bool normalizeBefore;

    /// <summary>Creates the layer; the query embedding is N(0, 1), linear layers Xavier-uniform with zero biases.</summary>
    public TransformerDecoderLayer(int hiddenDim, GridSize featureSize, int numHeads, int feedForwardDim, double dropoutRate, TransformerActivation activation, bool normalizeBefore, Generator? generator = null, DropoutRandom? dropoutRandom = null)
        : base(nameof(TransformerDecoderLayer))
    {
        dropoutRandom ??= new DropoutRandom(0);
        learned_embed = Embedding(featureSize.Count, hiddenDim);
        self_attn = new MultiheadAttention(hiddenDim, numHeads, dropoutRate, generator, dropoutRandom);
        multihead_attn = new MultiheadAttention(hiddenDim, numHeads, dropoutRate, generator, dropoutRandom);
        linear1 = Linear(hiddenDim, feedForwardDim);
        dropout = new SeededDropout(dropoutRate, dropoutRandom);
        linear2 = Linear(feedForwardDim, hiddenDim);
        norm1 = LayerNorm(hiddenDim);
        norm2 = LayerNorm(hiddenDim);
        norm3 = LayerNorm(hiddenDim);
        dropout1 = new SeededDropout(dropoutRate, dropoutRandom);
        dropout2 = new SeededDropout(dropoutRate, dropoutRandom);
        dropout3 = new SeededDropout(dropoutRate, dropoutRandom);
        this.activation = activation;
        this.normalizeBefore = normalizeBefore;
        RegisterComponents();
        using (no_grad())
        {
            learned_embed.weight!.normal_(0.0, 1.0, generator);
        }

        TorchInit.XavierLinear(linear1, generator);
        TorchInit.XavierLinear(linear2, generator);
    }

    /// <summary>Runs the layer.</summary>
    /// <param name="output">The previous decoder layer's output (the encoder output for the first layer), L x B x C.</param>
    /// <param name="memory">The encoder output, L x B x C.</param>
    /// <param name="pos">Position embedding, L x C.</param>
    /// <param name="tgtMask">Mask of the attention to <paramref name="memory"/>, or null.</param>
    /// <param name="memoryMask">Mask of the attention to <paramref name="output"/>, or null.</param>
    public override Tensor forward(Tensor output, Tensor memory, Tensor pos, Tensor? tgtMask, Tensor? memoryMask)
    {
        using var scope = NewDisposeScope();
        // The learned queries are the same for every batch element: the first attention's query (and,
        // pre-norm, its LayerNorm) is computed once (L x 1 x C) and broadcast inside the attention.
        var embed = learned_embed.weight!.unsqueeze(1);
        var memoryKey = memory.Plus(pos);
        var outputKey = output.Plus(pos);
        Tensor result;
        Tensor tgt;
        if (normalizeBefore)
        {
            var tgt2 = norm1.forward(embed);
            tgt = embed.Plus(dropout1.forward(self_attn.forward(tgt2.Plus(pos), memoryKey, memory, tgtMask)));
            tgt2 = norm2.forward(tgt);
            tgt = tgt.Plus(dropout2.forward(multihead_attn.forward(tgt2.Plus(pos), outputKey, output, memoryMask)));
            tgt2 = norm3.forward(tgt);
            result = tgt.Plus(dropout3.forward(FeedForward(tgt2)));
        }
        else
        {
            tgt = norm1.forward(embed.Plus(dropout1.forward(self_attn.forward(embed.Plus(pos), memoryKey, memory, tgtMask))));
            tgt = norm2.forward(tgt.Plus(dropout2.forward(multihead_attn.forward(tgt.Plus(pos), outputKey, output, memoryMask))));
            result = norm3.forward(tgt.Plus(dropout3.forward(FeedForward(tgt))));
        }

        return result.MoveToOuterDisposeScope();
    }

    private Tensor FeedForward(Tensor x) =>
        linear2.forward(dropout.forward(Activations.Apply(activation, linear1.forward(x))));
}

/// <summary>Applies a <see cref="TransformerActivation"/>.</summary>
internal static class Activations
{
    public static Tensor Apply(TransformerActivation activation, Tensor x) => activation switch
    {
        TransformerActivation.Relu => F.relu(x),
        TransformerActivation.Gelu => F.gelu(x),
        _ => throw new ArgumentOutOfRangeException(nameof(activation), activation, "Unknown activation."),
    };
}
