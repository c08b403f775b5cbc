using UniAD.Core.TorchSupport;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Backbones;

/// <summary>
/// A 2-D convolution with EfficientNet-PyTorch's STATIC "same" padding: the padding is fixed at
/// construction from the nominal input size, whatever size the input actually has. Parameters are
/// named <c>weight</c> and <c>bias</c>, as in the reference's <c>Conv2dStaticSamePadding</c>.
/// </summary>
public sealed class Conv2dStaticSamePadding : Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter? bias;
    private readonly long[] strides;
    private readonly long groups;
    private readonly long[] padding;
    private readonly long[]? symmetricPadding;
    private readonly long[]? kernelExtension;
    private readonly long[]? extendedPadding;
    private readonly bool pointwise;

    /// <summary>Creates the convolution for a square nominal input.</summary>
    public Conv2dStaticSamePadding(long inChannels, long outChannels, int kernelSize, int stride, int nominalInputSize, bool bias, long groups = 1)
        : this(inChannels, outChannels, kernelSize, stride, nominalInputSize, nominalInputSize, bias, groups)
    {
    }

    /// <summary>Creates the convolution; rows are padded for the nominal height, columns for the nominal width.</summary>
    public Conv2dStaticSamePadding(long inChannels, long outChannels, int kernelSize, int stride, int nominalInputHeight, int nominalInputWidth, bool bias, long groups = 1)
        : base(nameof(Conv2dStaticSamePadding))
    {
        weight = new Parameter(empty(outChannels, inChannels / groups, kernelSize, kernelSize, device: CPU));
        this.bias = bias ? new Parameter(zeros(outChannels, device: CPU)) : null;
        strides = new long[] { stride, stride };
        this.groups = groups;
        var (_, _, top, bottom) = EfficientNetSpec.SamePadding(nominalInputHeight, kernelSize, stride);
        var (left, right, _, _) = EfficientNetSpec.SamePadding(nominalInputWidth, kernelSize, stride);
        padding = new long[] { left, right, top, bottom };

        // Equal padding on both sides of each axis is the convolution's own zero padding, which saves
        // F.pad's copy of the input; only the uneven padding of some strided convolutions needs F.pad.
        symmetricPadding = left == right && top == bottom ? new long[] { top, left } : null;

        // A depthwise convolution with uneven padding (some strided ones) can instead use even padding, the
        // larger side on both, with its kernel extended by zero taps on the smaller side: each output then
        // sees the same inputs with the same weights. Dense convolutions (the stem) are faster with F.pad.
        if (symmetricPadding is null && groups > 1 && groups == inChannels)
        {
            kernelExtension = new long[] { Math.Max(0, right - left), Math.Max(0, left - right), Math.Max(0, bottom - top), Math.Max(0, top - bottom) };
            extendedPadding = new long[] { Math.Max(top, bottom), Math.Max(left, right) };
        }

        pointwise = kernelSize == 1 && stride == 1 && groups == 1;
        RegisterComponents();
        using var _ = no_grad();
        init.kaiming_uniform_(weight, Math.Sqrt(5));
    }

    /// <summary>The static padding (left, right, top, bottom).</summary>
    public IReadOnlyList<long> Padding => padding;

    /// <summary>The stride (the same on both axes).</summary>
    internal long Stride => strides[0];

    /// <summary>The number of groups (the channels, for a depthwise convolution).</summary>
    internal long Groups => groups;

    /// <summary>The weight parameter (out x in / groups x k x k).</summary>
    internal Parameter Weight => weight;

    /// <summary>The bias parameter, if any.</summary>
    internal Parameter? Bias => bias;

    /// <inheritdoc />
    public override Tensor forward(Tensor input) => Convolve(input, weight, bias);

    /// <summary>
    /// A weight (e.g. a BatchNorm-folded one) prepared for <see cref="ConvolvePrepared"/>: for a depthwise
    /// convolution with uneven padding, extended by zero taps so that even padding replaces F.pad's copy of
    /// the input; otherwise the weight itself.
    /// </summary>
    internal Tensor PrepareWeight(Tensor convWeight) => kernelExtension is null ? convWeight : F.pad(convWeight, kernelExtension);

    /// <summary>This convolution with a weight from <see cref="PrepareWeight"/>.</summary>
    internal Tensor ConvolvePrepared(Tensor input, Tensor preparedWeight, Tensor? convBias) => extendedPadding is null
        ? Convolve(input, preparedWeight, convBias)
        : F.conv2d(input, preparedWeight, convBias, strides: strides, padding: extendedPadding, groups: groups);

    /// <summary>This convolution's padding, stride and groups applied with the given weight and bias.</summary>
    internal Tensor Convolve(Tensor input, Tensor convWeight, Tensor? convBias)
    {
        if (pointwise && IsChannelsLast(input))
        {
            return Pointwise(input, convWeight, convBias);
        }

        if (symmetricPadding is not null)
        {
            return F.conv2d(input, convWeight, convBias, strides: strides, padding: symmetricPadding, groups: groups);
        }

        using var padded = F.pad(input, padding);
        return F.conv2d(padded, convWeight, convBias, strides: strides, groups: groups);
    }

    /// <summary>True for a 4-D tensor laid out channels-last (NHWC strides).</summary>
    private static bool IsChannelsLast(Tensor input)
    {
        if (input.dim() != 4)
        {
            return false;
        }

        using var nhwc = input.permute(0, 2, 3, 1);
        return nhwc.is_contiguous();
    }

    /// <summary>
    /// A 1 x 1, stride-1, ungrouped convolution of a channels-last input as the matrix product it is: every pixel's
    /// channel vector times the weight matrix. It replaces oneDNN's channels-last 1 x 1 kernel, which on some
    /// AVX-512 CPUs returns wrong values for some channel counts (measured on an AMD EPYC with AVX-512 under
    /// TorchSharp 0.107: 336 to 112 channels off by up to 70 % of the output's magnitude, NCHW exact; the
    /// regression test is <c>PointwiseConvolutionTests</c>). The result keeps the channels-last layout.
    /// </summary>
    private static Tensor Pointwise(Tensor input, Tensor convWeight, Tensor? convBias)
    {
        using var nhwc = input.permute(0, 2, 3, 1);
        using var matrix = convWeight.reshape(convWeight.shape[0], convWeight.shape[1]);
        using var product = F.linear(nhwc, matrix, convBias);
        return product.permute(0, 3, 1, 2);
    }
}

/// <summary>
/// EfficientNet's mobile inverted bottleneck block with squeeze-excitation (EfficientNet-PyTorch key names).
/// In evaluation mode without autograd each BatchNorm is folded into the convolution before it (see
/// <see cref="InvalidateFusedWeights"/>); the parameters and state-dict keys are those of the unfolded block.
/// </summary>
public sealed class MBConvBlock : Module<Tensor, Tensor>, IFusedWeightsCache
{
    private readonly Conv2dStaticSamePadding? _expand_conv;
    private readonly BatchNorm2d? _bn0;
    private readonly Conv2dStaticSamePadding _depthwise_conv;
    private readonly BatchNorm2d _bn1;
    private readonly Conv2dStaticSamePadding _se_reduce;
    private readonly Conv2dStaticSamePadding _se_expand;
    private readonly Conv2dStaticSamePadding _project_conv;
    private readonly BatchNorm2d _bn2;
    private readonly bool skip;
    private readonly FoldedConvBatchNorm? expandFolded;
    private readonly FoldedConvBatchNorm depthwiseFolded;
    private readonly FoldedConvBatchNorm projectFolded;

    /// <summary>Builds the block described by <paramref name="spec"/>.</summary>
    public MBConvBlock(MBConvBlockSpec spec)
        : base(nameof(MBConvBlock))
    {
        ArgumentNullException.ThrowIfNull(spec);
        Spec = spec;
        const double eps = 1e-3, momentum = 0.01;
        int expanded = spec.InputFilters * spec.ExpandRatio;
        if (spec.ExpandRatio != 1)
        {
            _expand_conv = new Conv2dStaticSamePadding(spec.InputFilters, expanded, 1, 1, spec.InputSize, bias: false);
            _bn0 = BatchNorm2d(expanded, eps, momentum);
        }

        _depthwise_conv = new Conv2dStaticSamePadding(expanded, expanded, spec.KernelSize, spec.Stride, spec.InputSize, spec.InputWidth, bias: false, groups: expanded);
        _bn1 = BatchNorm2d(expanded, eps, momentum);
        int squeezed = Math.Max(1, (int)(spec.InputFilters * spec.SeRatio));
        _se_reduce = new Conv2dStaticSamePadding(expanded, squeezed, 1, 1, 1, bias: true);
        _se_expand = new Conv2dStaticSamePadding(squeezed, expanded, 1, 1, 1, bias: true);
        _project_conv = new Conv2dStaticSamePadding(expanded, spec.OutputFilters, 1, 1, (int)Math.Ceiling(spec.InputSize / (double)spec.Stride), bias: false);
        _bn2 = BatchNorm2d(spec.OutputFilters, eps, momentum);
        skip = spec.Stride == 1 && spec.InputFilters == spec.OutputFilters;
        RegisterComponents();
        expandFolded = _expand_conv is null ? null : new FoldedConvBatchNorm(_expand_conv, _bn0!);
        depthwiseFolded = new FoldedConvBatchNorm(_depthwise_conv, _bn1);
        projectFolded = new FoldedConvBatchNorm(_project_conv, _bn2);
    }

    /// <summary>The block's architecture.</summary>
    public MBConvBlockSpec Spec { get; }

    /// <inheritdoc />
    public override Tensor forward(Tensor inputs)
    {
        using var scope = NewDisposeScope();

        // Without autograd, the activation, gating and residual sum overwrite tensors made here (never the
        // input), which saves allocating, and first touching, a new activation-sized tensor for each.
        bool inPlace = !is_grad_enabled();
        var x = inputs;
        if (expandFolded is not null)
        {
            x = Silu(expandFolded.Forward(x), inPlace);
        }

        x = Silu(depthwiseFolded.Forward(x), inPlace);
        var squeezed = F.adaptive_avg_pool2d(x, new long[] { 1, 1 });
        squeezed = _se_expand.forward(F.silu(_se_reduce.forward(squeezed)));
        x = inPlace ? x.mul_(sigmoid(squeezed)) : sigmoid(squeezed) * x;
        x = projectFolded.Forward(x);
        if (skip)
        {
            x = inPlace ? x.PlusInPlace(inputs) : x.Plus(inputs); // drop-connect is a training-time regulariser; the backbone is frozen
        }

        return x.MoveToOuterDisposeScope();
    }

    /// <summary>SiLU of a tensor the caller made and owns, overwriting it when <paramref name="inPlace"/>.</summary>
    internal static Tensor Silu(Tensor own, bool inPlace) => inPlace ? own.silu_() : F.silu(own);

    /// <summary>
    /// Drops the BatchNorm-folded weights used for inference; they are folded again from the current
    /// parameters at the next evaluation-mode forward. Loading through this library, <c>load_state_dict</c>
    /// and <c>load</c> of the owning network, and moves with <c>to()</c> need no call; changing parameters or
    /// BatchNorm statistics in place by other means does.
    /// </summary>
    public void InvalidateFusedWeights()
    {
        expandFolded?.Invalidate();
        depthwiseFolded.Invalidate();
        projectFolded.Invalidate();
    }

    /// <summary>How many times this block's convolutions were folded (for tests).</summary>
    internal int Folds => (expandFolded?.Folds ?? 0) + depthwiseFolded.Folds + projectFolded.Folds;

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            expandFolded?.Dispose();
            depthwiseFolded.Dispose();
            projectFolded.Dispose();
        }

        base.Dispose(disposing);
    }
}

/// <summary>
/// EfficientNet with EfficientNet-PyTorch's structure and state-dict keys (<c>_conv_stem</c>, <c>_bn0</c>,
/// <c>_blocks.{i}</c>, and with the head <c>_conv_head</c>, <c>_bn1</c>, <c>_fc</c>). It can be built
/// truncated after any block, which is what the feature extractor does. In evaluation mode without
/// autograd it runs faster: each BatchNorm is folded into the convolution before it, and on the CPU the
/// activations are kept in channels-last layout (see <see cref="InvalidateFusedWeights"/>).
/// </summary>
public sealed class EfficientNet : Module<Tensor, Tensor>, IFusedWeightsCache
{
    private readonly Conv2dStaticSamePadding _conv_stem;
    private readonly BatchNorm2d _bn0;
    private readonly ModuleList<MBConvBlock> _blocks;
    private readonly Conv2dStaticSamePadding? _conv_head;
    private readonly BatchNorm2d? _bn1;
    private readonly Linear? _fc;
    private readonly FoldedConvBatchNorm stemFolded;
    private readonly FoldedConvBatchNorm? headFolded;

    /// <summary>Builds the network up to and including block <paramref name="lastBlock"/> (all blocks when null); the head and classifier only when <paramref name="includeHead"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The block index is outside the variant's blocks, or a head is asked for on a truncated network.</exception>
    public EfficientNet(EfficientNetSpec spec, int? lastBlock = null, bool includeHead = false, int numClasses = 1000)
        : base(nameof(EfficientNet))
    {
        ArgumentNullException.ThrowIfNull(spec);
        int last = lastBlock ?? spec.Blocks.Count - 1;
        if (last < 0 || last >= spec.Blocks.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(lastBlock), lastBlock, $"{spec.ModelName} has blocks 0 to {spec.Blocks.Count - 1}.");
        }

        if (includeHead && last != spec.Blocks.Count - 1)
        {
            throw new ArgumentOutOfRangeException(nameof(includeHead), "The head needs every block.");
        }

        Spec = spec;
        _conv_stem = new Conv2dStaticSamePadding(3, spec.StemFilters, 3, 2, spec.Resolution, spec.ResolutionWidth, bias: false);
        _bn0 = BatchNorm2d(spec.StemFilters, 1e-3, 0.01);
        _blocks = new ModuleList<MBConvBlock>();
        foreach (var block in spec.Blocks.Take(last + 1))
        {
            _blocks.Add(new MBConvBlock(block));
        }

        if (includeHead)
        {
            int headInput = (int)Math.Ceiling(spec.Resolution / (double)spec.Blocks[^1].OutputStride);
            _conv_head = new Conv2dStaticSamePadding(spec.Blocks[^1].OutputFilters, spec.HeadFilters, 1, 1, headInput, bias: false);
            _bn1 = BatchNorm2d(spec.HeadFilters, 1e-3, 0.01);
            _fc = Linear(spec.HeadFilters, numClasses);
        }

        RegisterComponents();
        stemFolded = new FoldedConvBatchNorm(_conv_stem, _bn0);
        headFolded = _conv_head is null ? null : new FoldedConvBatchNorm(_conv_head, _bn1!);
    }

    /// <summary>The architecture.</summary>
    public EfficientNetSpec Spec { get; }

    /// <summary>Number of blocks built.</summary>
    public int BlockCount => _blocks.Count;

    /// <summary>
    /// Runs the stem and blocks, calling <paramref name="onBlock"/> with each block's index and output, and
    /// returns the last block's output (contiguous). The tensors passed to <paramref name="onBlock"/> may
    /// have channels-last strides (evaluation mode without autograd, on the CPU).
    /// </summary>
    public Tensor ForwardBlocks(Tensor images, Action<int, Tensor>? onBlock)
    {
        ArgumentNullException.ThrowIfNull(images);
        using var scope = NewDisposeScope();
        var input = stemFolded.CanFold && images.dim() == 4 && FusedWeights.PrefersChannelsLast(images) ? FusedWeights.ToChannelsLast(images) : images;
        var x = MBConvBlock.Silu(stemFolded.Forward(input), !is_grad_enabled());
        for (int i = 0; i < _blocks.Count; i++)
        {
            x = _blocks[i].forward(x);
            onBlock?.Invoke(i, x);
        }

        return x.contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>Classifier logits when built with the head; otherwise the last block's output.</summary>
    public override Tensor forward(Tensor images)
    {
        using var scope = NewDisposeScope();
        var x = ForwardBlocks(images, null);
        if (headFolded is not null)
        {
            x = MBConvBlock.Silu(headFolded.Forward(x), !is_grad_enabled());
            x = F.adaptive_avg_pool2d(x, new long[] { 1, 1 }).flatten(1);
            x = _fc!.forward(x);
        }

        return x.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Drops the BatchNorm-folded weights used for inference; they are folded again from the current
    /// parameters at the next evaluation-mode forward. Loading through this library
    /// (<see cref="Weights.StateDict.Load"/>, <see cref="BackboneWeights"/>), <c>load_state_dict</c>,
    /// <c>load</c> and moves with <c>to()</c> need no call; changing parameters or BatchNorm statistics in
    /// place by other means does.
    /// </summary>
    public void InvalidateFusedWeights()
    {
        stemFolded.Invalidate();
        headFolded?.Invalidate();
        foreach (var block in _blocks)
        {
            block.InvalidateFusedWeights();
        }
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
            InvalidateFusedWeights();
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
            InvalidateFusedWeights();
        }
    }

    /// <summary>How many times the network's convolutions were folded (for tests).</summary>
    internal int Folds => stemFolded.Folds + (headFolded?.Folds ?? 0) + _blocks.Sum(b => b.Folds);

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            stemFolded.Dispose();
            headFolded?.Dispose();
        }

        base.Dispose(disposing);
    }
}

/// <summary>
/// EfficientNet features for UniAD: outputs of the requested blocks (the reference's <c>outblocks</c>),
/// with their channels and strides. The paper uses <c>efficientnet-b4</c>, layers 1..4 = blocks 1, 5, 9,
/// 21 (24, 32, 56, 160 channels at strides 2, 4, 8, 16). State-dict keys are EfficientNet-PyTorch's.
/// </summary>
public sealed class EfficientNetFeatureExtractor : FeatureExtractor
{
    // Held through delegates, not as a Module field: a parent's RegisterComponents() would otherwise
    // register the wrapper too and prefix every key with its field name.
    private readonly Func<Tensor, Action<int, Tensor>?, Tensor> forwardBlocks;
    private readonly Action invalidateFusedWeights;
    private readonly Func<int> folds;
    private readonly int builtBlocks;
    private readonly int[] blocks;

    private EfficientNetFeatureExtractor(EfficientNetSpec spec, IReadOnlyList<FeatureInfo> outputs)
        : base(nameof(EfficientNetFeatureExtractor), outputs)
    {
        Spec = spec;
        blocks = outputs.Select(o => o.Block).ToArray();
        var model = new EfficientNet(spec, blocks.Max());
        forwardBlocks = model.ForwardBlocks;
        invalidateFusedWeights = model.InvalidateFusedWeights;
        folds = () => model.Folds;
        builtBlocks = model.BlockCount;
        // The network's children are registered directly, so that this module's state-dict keys are
        // EfficientNet-PyTorch's own (_conv_stem.weight, _blocks.0..., as under the reference's backbone.).
        foreach (var (name, child) in model.named_children())
        {
            register_module(name, child);
        }

        Freeze();
    }

    /// <summary>The architecture.</summary>
    public EfficientNetSpec Spec { get; }

    /// <inheritdoc />
    public override string ModelName => Spec.ModelName;

    /// <summary>Features of the reference's layers (1..5, e.g. b4: 1 → block 1, 4 → block 21).</summary>
    /// <exception cref="ArgumentException">Unknown variant, or a layer outside 1..5, repeated or out of order.</exception>
    public static EfficientNetFeatureExtractor FromLayers(string variant, IReadOnlyList<int> layers)
    {
        var spec = EfficientNetSpec.Get(variant);
        ArgumentNullException.ThrowIfNull(layers);
        CheckIncreasing(layers, 1, 5, "layer", spec.ModelName);
        return new EfficientNetFeatureExtractor(spec, layers.Select(l => Info(spec, l, spec.OfficialOutputBlocks[l - 1])).ToArray());
    }

    /// <summary>Features of explicit 0-based blocks (the reference's <c>outblocks</c>), optionally checked against expected strides.</summary>
    /// <exception cref="ArgumentException">Unknown variant, a block outside the network, repeated or out of order, or strides that do not match.</exception>
    public static EfficientNetFeatureExtractor FromBlocks(string variant, IReadOnlyList<int> outBlocks, IReadOnlyList<int>? expectedStrides = null) =>
        FromBlocks(EfficientNetSpec.Get(variant), outBlocks, expectedStrides);

    /// <summary>Features of explicit 0-based blocks of the network described by <paramref name="spec"/>.</summary>
    /// <exception cref="ArgumentException">A block outside the network, repeated or out of order, or strides that do not match.</exception>
    public static EfficientNetFeatureExtractor FromBlocks(EfficientNetSpec spec, IReadOnlyList<int> outBlocks, IReadOnlyList<int>? expectedStrides = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(outBlocks);
        CheckIncreasing(outBlocks, 0, spec.Blocks.Count - 1, "block", spec.ModelName);
        var outputs = outBlocks.Select((b, i) => Info(spec, i + 1, b)).ToArray();
        if (expectedStrides is not null && !expectedStrides.SequenceEqual(outputs.Select(o => o.Stride)))
        {
            throw new ArgumentException($"{spec.ModelName} blocks [{string.Join(", ", outBlocks)}] have strides [{string.Join(", ", outputs.Select(o => o.Stride))}], not the expected [{string.Join(", ", expectedStrides)}].", nameof(expectedStrides));
        }

        return new EfficientNetFeatureExtractor(spec, outputs);
    }

    /// <inheritdoc />
    public override bool IsUncomputedKey(string key) =>
        key.StartsWith("_conv_head.", StringComparison.Ordinal) || key.StartsWith("_bn1.", StringComparison.Ordinal) ||
        key.StartsWith("_fc.", StringComparison.Ordinal) ||
        (key.StartsWith("_blocks.", StringComparison.Ordinal) && int.TryParse(key.AsSpan(8, key.IndexOf('.', 8) < 0 ? key.Length - 8 : key.IndexOf('.', 8) - 8), out int block) && block >= builtBlocks && block < Spec.Blocks.Count);

    /// <inheritdoc />
    public override void InvalidateFusedWeights() => invalidateFusedWeights(); // the network's own and every block's

    /// <summary>Two images: measured on EfficientNet-B4 at 224 x 224, 8 images in passes of 2 took 34-37 ms per image on one thread, in one pass of 8 42-48 ms.</summary>
    internal override int CpuImagesPerPass => 2;

    /// <summary>The network's <see cref="EfficientNet.ForwardBlocks"/> (for tests).</summary>
    internal Tensor ForwardBlocks(Tensor images, Action<int, Tensor>? onBlock) => forwardBlocks(images, onBlock);

    /// <summary>How many times the network's convolutions were folded (for tests).</summary>
    internal int Folds => folds();

    /// <inheritdoc />
    protected override Tensor[] Extract(Tensor images)
    {
        var features = new Tensor[blocks.Length];
        var position = blocks.Select((b, i) => (b, i)).ToDictionary(p => p.b, p => p.i);
        forwardBlocks(images, (index, x) =>
        {
            if (position.TryGetValue(index, out int slot))
            {
                features[slot] = x.contiguous().MoveToOuterDisposeScope(); // out of ForwardBlocks' scope, in the usual layout
            }
        });
        return features;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            invalidateFusedWeights(); // releases the folded tensors
        }

        base.Dispose(disposing);
    }

    private static FeatureInfo Info(EfficientNetSpec spec, int layer, int block) =>
        new(layer, block, spec.Blocks[block].OutputFilters, spec.Blocks[block].OutputStride);

    internal static void CheckIncreasing(IReadOnlyList<int> values, int min, int max, string what, string model)
    {
        if (values.Count == 0)
        {
            throw new ArgumentException($"{model}: at least one output {what} is needed.");
        }

        for (int i = 0; i < values.Count; i++)
        {
            if (values[i] < min || values[i] > max)
            {
                throw new ArgumentException($"{model}: output {what} {values[i]} is outside {min}..{max}.");
            }

            if (i > 0 && values[i] <= values[i - 1])
            {
                throw new ArgumentException($"{model}: output {what}s must be strictly increasing, got [{string.Join(", ", values)}].");
            }
        }
    }
}
