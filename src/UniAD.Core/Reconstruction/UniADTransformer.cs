using UniAD.Core.TorchSupport;
using TorchSharp;
using TorchSharp.Modules;
using UniAD.Core.Attention;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace UniAD.Core.Reconstruction;

/// <summary>A stack of encoder layers (<c>layers.{i}</c>) with a final LayerNorm (<c>norm</c>) in pre-norm mode only.</summary>
public sealed class TransformerEncoder : Module<Tensor, Tensor, Tensor?, Tensor>
{
    private readonly ModuleList<TransformerEncoderLayer> layers;
    private readonly LayerNorm? norm;

    /// <summary>Creates <see cref="ReconstructionOptions.NumEncoderLayers"/> encoder layers.</summary>
    public TransformerEncoder(ReconstructionOptions options, Generator? generator = null, DropoutRandom? dropoutRandom = null)
        : base(nameof(TransformerEncoder))
    {
        layers = new ModuleList<TransformerEncoderLayer>();
        for (int i = 0; i < options.NumEncoderLayers; i++)
        {
            layers.Add(new TransformerEncoderLayer(options.HiddenDim, options.NumHeads, options.FeedForwardDim, options.Dropout, options.Activation, options.NormalizeBefore, generator, dropoutRandom));
        }

        norm = options.NormalizeBefore ? LayerNorm(options.HiddenDim) : null;
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor src, Tensor pos, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var output = src;
        foreach (var layer in layers)
        {
            output = layer.forward(output, pos, mask);
        }

        if (norm is not null)
        {
            output = norm.forward(output);
        }

        return output.MoveToOuterDisposeScope();
    }
}

/// <summary>The layer-wise query decoder: decoder layers (<c>layers.{i}</c>) and a final LayerNorm (<c>norm</c>).</summary>
public sealed class TransformerDecoder : Module<Tensor, Tensor, Tensor?, Tensor?, Tensor>
{
    private readonly ModuleList<TransformerDecoderLayer> layers;
    private readonly LayerNorm norm;

    /// <summary>Creates the decoder layers.</summary>
    public TransformerDecoder(ReconstructionOptions options, Generator? generator = null, DropoutRandom? dropoutRandom = null)
        : base(nameof(TransformerDecoder))
    {
        layers = new ModuleList<TransformerDecoderLayer>();
        for (int i = 0; i < options.NumDecoderLayers; i++)
        {
            layers.Add(new TransformerDecoderLayer(options.HiddenDim, options.FeatureSize, options.NumHeads, options.FeedForwardDim, options.Dropout, options.Activation, options.NormalizeBefore, generator, dropoutRandom));
        }

        norm = LayerNorm(options.HiddenDim);
        RegisterComponents();
    }

    /// <summary>Decodes from the encoder output <paramref name="memory"/> (L x B x C).</summary>
    public override Tensor forward(Tensor memory, Tensor pos, Tensor? tgtMask, Tensor? memoryMask)
    {
        using var scope = NewDisposeScope();
        var output = memory;
        foreach (var layer in layers)
        {
            output = layer.forward(output, memory, pos, tgtMask, memoryMask);
        }

        return norm.forward(output).MoveToOuterDisposeScope();
    }
}

/// <summary>UniAD's transformer (<c>encoder</c>, <c>decoder</c>) with the neighbor masks it applies.</summary>
public sealed class UniADTransformer : Module<Tensor, Tensor, Tensor>
{
    private readonly TransformerEncoder encoder;
    private readonly TransformerDecoder decoder;
    private readonly ReconstructionOptions options;

    /// <summary>Creates the encoder and decoder of <paramref name="options"/>.</summary>
    public UniADTransformer(ReconstructionOptions options, Generator? generator = null, DropoutRandom? dropoutRandom = null)
        : base(nameof(UniADTransformer))
    {
        this.options = options;
        encoder = new TransformerEncoder(options, generator, dropoutRandom);
        decoder = new TransformerDecoder(options, generator, dropoutRandom);
        RegisterComponents();
    }

    /// <summary>Encodes then decodes the tokens (L x B x C) with position embedding <paramref name="pos"/> (L x C).</summary>
    public override Tensor forward(Tensor src, Tensor pos)
    {
        using var scope = NewDisposeScope();
        Tensor? mask = options.NeighborSize is { } neighbor ? NeighborMask.GetCached(options.FeatureSize, neighbor, src.device) : null;
        var posBatch = pos.unsqueeze(1);
        var memory = encoder.forward(src, posBatch, options.MaskEncoder ? mask : null);
        var output = decoder.forward(memory, posBatch, options.MaskDecoderSelf ? mask : null, options.MaskDecoderCross ? mask : null);
        return output.MoveToOuterDisposeScope();
    }
}
