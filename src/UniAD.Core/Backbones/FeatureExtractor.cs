using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace UniAD.Core.Backbones;

/// <summary>One output of a feature extractor: which layer or block it is, its channels and its stride.</summary>
/// <param name="Layer">The requested output layer (1-based, as in the reference configs).</param>
/// <param name="Block">For EfficientNet, the 0-based block index whose output this is; for ResNet, the layer number.</param>
/// <param name="Channels">Channels of the feature map.</param>
/// <param name="Stride">Stride relative to the input image.</param>
public sealed record FeatureInfo(int Layer, int Block, int Channels, int Stride);

/// <summary>
/// A frozen, ImageNet-style CNN that returns intermediate feature maps (like timm's <c>features_only</c>).
/// It always runs in evaluation mode, keeps no gradients, and stops after the deepest requested output:
/// later blocks, the head and the classifier are neither built nor computed.
/// </summary>
public abstract class FeatureExtractor : Module<Tensor, Tensor[]>, IFusedWeightsCache
{
    /// <summary>Creates the extractor.</summary>
    protected FeatureExtractor(string name, IReadOnlyList<FeatureInfo> outputs)
        : base(name)
    {
        if (outputs.Count == 0)
        {
            throw new ArgumentException("A feature extractor needs at least one output layer.", nameof(outputs));
        }

        Outputs = outputs;
    }

    /// <summary>The outputs, in the order <see cref="Module{T, TResult}.forward"/> returns them.</summary>
    public IReadOnlyList<FeatureInfo> Outputs { get; }

    /// <summary>Channels of each output.</summary>
    public IReadOnlyList<int> Channels => Outputs.Select(o => o.Channels).ToArray();

    /// <summary>Stride of each output relative to the image.</summary>
    public IReadOnlyList<int> Strides => Outputs.Select(o => o.Stride).ToArray();

    /// <summary>The model's name, e.g. <c>efficientnet-b4</c> or <c>resnet18</c>.</summary>
    public abstract string ModelName { get; }

    /// <summary>
    /// True when the extractor still has random weights (none were loaded). Scores computed on random
    /// features are meaningless for real data.
    /// </summary>
    public bool IsRandom { get; private set; } = true;

    /// <summary>
    /// True for a key of the complete pretrained model that this extractor does not build (blocks or
    /// layers after the deepest output, the head, the classifier): such keys in a weights file are
    /// skipped and reported, not treated as errors.
    /// </summary>
    public abstract bool IsUncomputedKey(string key);

    /// <summary>
    /// On the CPU, how many images one backbone pass should take at most when a caller has more
    /// (<see cref="Models.UniADModel.ExtractFeatures"/> slices larger batches); 0 for no preference.
    /// </summary>
    internal virtual int CpuImagesPerPass => 0;

    /// <summary>Records that real weights were loaded.</summary>
    internal void MarkLoaded() => IsRandom = false;

    /// <summary>
    /// Drops tensors derived from the weights to speed up inference (EfficientNet: each BatchNorm folded
    /// into the convolution before it); they are computed again from the current weights at the next
    /// forward. Loading through this library (<see cref="BackboneWeights"/>, <see cref="Weights.StateDict.Load"/>),
    /// <c>load_state_dict</c>, <c>load</c> and moves with <c>to()</c> need no call; changing parameters or
    /// BatchNorm statistics in place by other means does.
    /// </summary>
    public virtual void InvalidateFusedWeights()
    {
    }

    /// <inheritdoc />
    public override (IList<string>, IList<string>) load_state_dict(Dictionary<string, Tensor> source, bool strict = true, IList<string>? skip = null)
    {
        try
        {
            return base.load_state_dict(source, strict, skip);
        }
        finally
        {
            FusedWeights.Invalidate(this);
        }
    }

    /// <inheritdoc />
    public override Module load(BinaryReader reader, bool strict = true, IList<string>? skip = null, Dictionary<string, bool>? loadedParameters = null)
    {
        try
        {
            return base.load(reader, strict, skip, loadedParameters);
        }
        finally
        {
            FusedWeights.Invalidate(this);
        }
    }

    /// <summary>Always evaluation mode: the backbone is frozen, so a request for training mode is ignored.</summary>
    public override void train(bool on = true) => base.train(false);

    /// <summary>Runs the images (B x 3 x H x W, normalized) and returns one feature map per output.</summary>
    /// <exception cref="ArgumentException">The input is not B x 3 x H x W floating point.</exception>
    public sealed override Tensor[] forward(Tensor images) => Run(images, Extract);

    /// <summary>
    /// Checks that <paramref name="images"/> is a non-empty floating-point B x 3 x H x W batch, then runs
    /// <paramref name="body"/> on it without gradients in a dispose scope; the returned maps outlive the scope.
    /// </summary>
    /// <exception cref="ArgumentException">The input is not B x 3 x H x W floating point.</exception>
    protected Tensor[] Run(Tensor images, Func<Tensor, Tensor[]> body)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(body);
        if (images.dim() != 4 || images.shape[1] != 3 || images.shape[0] == 0 || !images.is_floating_point())
        {
            throw new ArgumentException($"{ModelName} expects a non-empty floating-point batch B x 3 x H x W; got [{string.Join(", ", images.shape)}] {images.dtype}.", nameof(images));
        }

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var features = body(images);
        foreach (var f in features)
        {
            f.MoveToOuterDisposeScope();
        }

        return features;
    }

    /// <summary>Computes the outputs (called without gradients, inside a dispose scope).</summary>
    protected abstract Tensor[] Extract(Tensor images);

    /// <summary>Called by subclasses once their modules are registered: freezes every parameter and sets evaluation mode.</summary>
    protected void Freeze()
    {
        foreach (var p in parameters())
        {
            p.requires_grad = false;
        }

        base.train(false);
    }
}
