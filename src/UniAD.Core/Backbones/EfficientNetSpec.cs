namespace UniAD.Core.Backbones;

/// <summary>One MBConv block of an EfficientNet after width and depth scaling.</summary>
/// <param name="Index">0-based position in <c>_blocks</c>.</param>
/// <param name="Stage">1-based stage (1..7).</param>
/// <param name="KernelSize">Depthwise kernel size.</param>
/// <param name="Stride">Depthwise stride.</param>
/// <param name="ExpandRatio">Expansion ratio (1 = no expansion conv).</param>
/// <param name="InputFilters">Input channels.</param>
/// <param name="OutputFilters">Output channels.</param>
/// <param name="SeRatio">Squeeze-excitation ratio.</param>
/// <param name="InputSize">Nominal input height the static padding of rows is computed from (also the width, unless <see cref="InputWidth"/> says otherwise).</param>
/// <param name="OutputStride">Stride of the block's output relative to the image.</param>
public sealed record MBConvBlockSpec(int Index, int Stage, int KernelSize, int Stride, int ExpandRatio, int InputFilters, int OutputFilters, double SeRatio, int InputSize, int OutputStride)
{
    /// <summary>Nominal input width the static padding of columns is computed from; <see cref="InputSize"/> for the square nominal sizes of the published variants.</summary>
    public int InputWidth { get; init; } = InputSize;
}

/// <summary>A convolution whose static "same" padding differs from the padding the actual input size would give (<see cref="EfficientNetSpec.PaddingMismatches"/>).</summary>
/// <param name="Block">The block whose depthwise convolution it is, or −1 for the stem.</param>
/// <param name="KernelSize">Kernel size.</param>
/// <param name="Stride">Stride.</param>
/// <param name="NominalSize">The nominal input height the static padding of rows is computed from.</param>
/// <param name="ActualHeight">The input height the convolution actually sees.</param>
/// <param name="ActualWidth">The input width the convolution actually sees.</param>
public sealed record PaddingMismatch(int Block, int KernelSize, int Stride, int NominalSize, int ActualHeight, int ActualWidth)
{
    /// <summary>The nominal input width the static padding of columns is computed from (<see cref="NominalSize"/> for square nominal sizes).</summary>
    public int NominalWidth { get; init; } = NominalSize;

    /// <inheritdoc />
    public override string ToString() =>
        $"{(Block < 0 ? "stem" : $"block {Block} depthwise")} {KernelSize} x {KernelSize} stride {Stride}: nominal {(NominalWidth == NominalSize ? NominalSize.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"{NominalSize} x {NominalWidth}")}, actual {ActualHeight} x {ActualWidth}";
}

/// <summary>
/// The EfficientNet-PyTorch architecture description of one variant (b0..b7): compound scaling of the
/// base blocks, static "same" padding computed from the variant's nominal resolution, and the reference's
/// official output blocks.
/// </summary>
public sealed record EfficientNetSpec
{
    // (repeat, kernel, stride, expand, in, out, se) of the seven base stages.
    private static readonly (int Repeat, int Kernel, int Stride, int Expand, int In, int Out, double Se)[] BaseStages =
    {
        (1, 3, 1, 1, 32, 16, 0.25), (2, 3, 2, 6, 16, 24, 0.25), (2, 5, 2, 6, 24, 40, 0.25), (3, 3, 2, 6, 40, 80, 0.25),
        (3, 5, 1, 6, 80, 112, 0.25), (4, 5, 2, 6, 112, 192, 0.25), (1, 3, 1, 6, 192, 320, 0.25),
    };

    private static readonly Dictionary<string, (double Width, double Depth, int Resolution)> Scaling = new(StringComparer.Ordinal)
    {
        ["b0"] = (1.0, 1.0, 224), ["b1"] = (1.0, 1.1, 240), ["b2"] = (1.1, 1.2, 260), ["b3"] = (1.2, 1.4, 300),
        ["b4"] = (1.4, 1.8, 380), ["b5"] = (1.6, 2.2, 456), ["b6"] = (1.8, 2.6, 528), ["b7"] = (2.0, 3.1, 600),
    };

    private EfficientNetSpec(string variant, double width, double depth, int resolution, int resolutionWidth)
    {
        Variant = variant;
        WidthCoefficient = width;
        DepthCoefficient = depth;
        Resolution = resolution;
        ResolutionWidth = resolutionWidth;
        StemFilters = RoundFilters(32, width);
        HeadFilters = RoundFilters(1280, width);

        var blocks = new List<MBConvBlockSpec>();
        int size = (int)Math.Ceiling(resolution / 2.0); // after the stride-2 stem
        int sizeWidth = (int)Math.Ceiling(resolutionWidth / 2.0);
        int stride = 2;
        for (int s = 0; s < BaseStages.Length; s++)
        {
            var b = BaseStages[s];
            int input = RoundFilters(b.In, width), output = RoundFilters(b.Out, width);
            int repeats = (int)Math.Ceiling(depth * b.Repeat);
            for (int r = 0; r < repeats; r++)
            {
                int blockStride = r == 0 ? b.Stride : 1;
                stride *= blockStride;
                blocks.Add(new MBConvBlockSpec(blocks.Count, s + 1, b.Kernel, blockStride, b.Expand, r == 0 ? input : output, output, b.Se, size, stride) { InputWidth = sizeWidth });
                size = (int)Math.Ceiling(size / (double)blockStride);
                sizeWidth = (int)Math.Ceiling(sizeWidth / (double)blockStride);
            }
        }

        Blocks = blocks;
        // The reference's layers 1..5 are the last blocks of stages 1, 2, 3, 5 and 7.
        OfficialOutputBlocks = new[] { 1, 2, 3, 5, 7 }.Select(stage => blocks.Last(x => x.Stage == stage).Index).ToArray();
    }

    /// <summary>The variant, <c>b0</c> to <c>b7</c>.</summary>
    public string Variant { get; }

    /// <summary>The model name as EfficientNet-PyTorch writes it, e.g. <c>efficientnet-b4</c>.</summary>
    public string ModelName => "efficientnet-" + Variant;

    /// <summary>Width multiplier.</summary>
    public double WidthCoefficient { get; }

    /// <summary>Depth multiplier.</summary>
    public double DepthCoefficient { get; }

    /// <summary>Nominal resolution (the height); the static padding of every convolution is computed from it, not from the actual input.</summary>
    public int Resolution { get; }

    /// <summary>Nominal width: <see cref="Resolution"/> for the published variants, another value only through <see cref="WithNominalResolution(int, int)"/>.</summary>
    public int ResolutionWidth { get; }

    /// <summary>Stem output channels.</summary>
    public int StemFilters { get; }

    /// <summary>Head (<c>_conv_head</c>) output channels.</summary>
    public int HeadFilters { get; }

    /// <summary>Every block, in order.</summary>
    public IReadOnlyList<MBConvBlockSpec> Blocks { get; }

    /// <summary>The reference's output blocks for layers 1..5 (b4: 1, 5, 9, 21, 31).</summary>
    public IReadOnlyList<int> OfficialOutputBlocks { get; }

    /// <summary>The spec of a variant: <c>b0</c>..<c>b7</c>, also accepted as <c>efficientnet-b4</c> or <c>efficientnet_b4</c>.</summary>
    /// <exception cref="ArgumentException">Unknown variant.</exception>
    public static EfficientNetSpec Get(string variant)
    {
        ArgumentNullException.ThrowIfNull(variant);
        var key = variant.Trim().ToLowerInvariant().Replace("efficientnet", string.Empty, StringComparison.Ordinal).TrimStart('-', '_');
        return Scaling.TryGetValue(key, out var s)
            ? new EfficientNetSpec(key, s.Width, s.Depth, s.Resolution, s.Resolution)
            : throw new ArgumentException($"Unknown EfficientNet variant '{variant}'; expected b0 to b7.", nameof(variant));
    }

    /// <summary>
    /// The spec with the static padding computed for another nominal resolution. With the actual input
    /// size this reproduces "dynamic" same padding, which is NOT what the reference does; it exists to
    /// show, in tests, that the padding decides the numbers.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The resolution is not positive.</exception>
    public EfficientNetSpec WithNominalResolution(int resolution) => WithNominalResolution(resolution, resolution);

    /// <summary>
    /// The spec with the static padding of rows computed for the nominal height <paramref name="height"/> and that of
    /// columns for the nominal width <paramref name="width"/>: with the actual size of a non-square input, "dynamic"
    /// same padding on each axis.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive.</exception>
    public EfficientNetSpec WithNominalResolution(int height, int width)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        return new EfficientNetSpec(Variant, WidthCoefficient, DepthCoefficient, height, width);
    }

    /// <summary>
    /// The convolutions up to block <paramref name="lastBlock"/> (the stem and every block's depthwise
    /// convolution; 1 x 1 convolutions never pad) whose static "same" padding, computed from this spec's nominal
    /// sizes, differs from "dynamic" same padding computed from the actual sizes an
    /// <paramref name="inputHeight"/> x <paramref name="inputWidth"/> image has at that convolution. Empty when
    /// the two give the same numbers, e.g. when every strided convolution sees even sizes both ways (for stride
    /// 2 the padding depends only on whether the size is odd; for stride 1 it is k − 1 whatever the size).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive, or the block is not in 0..Blocks.Count − 1.</exception>
    public IReadOnlyList<PaddingMismatch> PaddingMismatches(int inputHeight, int inputWidth, int lastBlock)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inputHeight);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inputWidth);
        if (lastBlock < 0 || lastBlock >= Blocks.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(lastBlock), lastBlock, $"{ModelName} has blocks 0 to {Blocks.Count - 1}.");
        }

        var mismatches = new List<PaddingMismatch>();
        int height = inputHeight, width = inputWidth;
        void Check(int block, int nominal, int nominalWidth, int kernel, int stride)
        {
            var fixedRows = SamePadding(nominal, kernel, stride);
            var fixedColumns = SamePadding(nominalWidth, kernel, stride);
            var rows = SamePadding(height, kernel, stride);
            var columns = SamePadding(width, kernel, stride);
            if (rows.Top != fixedRows.Top || rows.Bottom != fixedRows.Bottom || columns.Left != fixedColumns.Left || columns.Right != fixedColumns.Right)
            {
                mismatches.Add(new PaddingMismatch(block, kernel, stride, nominal, height, width) { NominalWidth = nominalWidth });
            }

            height = (int)Math.Ceiling(height / (double)stride);
            width = (int)Math.Ceiling(width / (double)stride);
        }

        Check(-1, Resolution, ResolutionWidth, 3, 2);
        foreach (var block in Blocks.Take(lastBlock + 1))
        {
            Check(block.Index, block.InputSize, block.InputWidth, block.KernelSize, block.Stride);
        }

        return mismatches;
    }

    /// <summary>
    /// EfficientNet-PyTorch's filter rounding: filters x width, rounded to a multiple of 8 (at least 8),
    /// plus 8 when the rounding lost more than 10 %.
    /// </summary>
    public static int RoundFilters(int filters, double width)
    {
        const int divisor = 8;
        double scaled = filters * width;
        int rounded = Math.Max(divisor, (int)(scaled + (divisor / 2.0)) / divisor * divisor);
        if (rounded < 0.9 * scaled)
        {
            rounded += divisor;
        }

        return rounded;
    }

    /// <summary>
    /// Static "same" padding (left, right, top, bottom) of a k x k convolution with stride s on an input of
    /// nominal size i: pad = max((ceil(i / s) − 1)·s + k − i, 0), floor half before, the rest after.
    /// </summary>
    public static (int Left, int Right, int Top, int Bottom) SamePadding(int inputSize, int kernel, int stride)
    {
        int output = (int)Math.Ceiling(inputSize / (double)stride);
        int pad = Math.Max(((output - 1) * stride) + kernel - inputSize, 0);
        return (pad / 2, pad - (pad / 2), pad / 2, pad - (pad / 2));
    }
}
