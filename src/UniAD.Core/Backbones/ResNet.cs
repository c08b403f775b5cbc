using UniAD.Core.TorchSupport;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Backbones;

/// <summary>The torchvision ResNet variants the reference offers.</summary>
public enum ResNetVariant
{
    /// <summary>ResNet-18 (basic blocks 2-2-2-2).</summary>
    ResNet18,

    /// <summary>ResNet-34 (basic blocks 3-4-6-3).</summary>
    ResNet34,

    /// <summary>ResNet-50 (bottlenecks 3-4-6-3).</summary>
    ResNet50,

    /// <summary>ResNet-101 (bottlenecks 3-4-23-3).</summary>
    ResNet101,

    /// <summary>Wide ResNet-50-2 (bottlenecks 3-4-6-3, twice the inner width).</summary>
    WideResNet50_2,

    /// <summary>
    /// ML.NET's ImageNet ResNet-18 (<c>mlnet-resnet18</c>: basic blocks 2-2-2-3, a CNTK export) with its input
    /// convention built in: see <see cref="MlNetResNet18"/>.
    /// </summary>
    MlNetResNet18,
}

/// <summary>torchvision's ResNet basic block (<c>conv1</c>, <c>bn1</c>, <c>conv2</c>, <c>bn2</c>, optional <c>downsample</c>).</summary>
public sealed class BasicBlock : Module<Tensor, Tensor>
{
    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly Conv2d conv2;
    private readonly BatchNorm2d bn2;
    private readonly Sequential? downsample;

    /// <summary>Creates the block.</summary>
    public BasicBlock(long inplanes, long planes, long stride, Sequential? downsample)
        : base(nameof(BasicBlock))
    {
        conv1 = Conv2d(inplanes, planes, 3, stride: stride, padding: 1, bias: false);
        bn1 = BatchNorm2d(planes);
        conv2 = Conv2d(planes, planes, 3, padding: 1, bias: false);
        bn2 = BatchNorm2d(planes);
        this.downsample = downsample;
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = F.relu(bn1.forward(conv1.forward(x)));
        y = bn2.forward(conv2.forward(y));
        var identity = downsample is null ? x : downsample.forward(x);
        return F.relu(y.PlusInPlace(identity)).MoveToOuterDisposeScope();
    }
}

/// <summary>torchvision's ResNet bottleneck (stride on the 3 x 3 convolution, "ResNet v1.5").</summary>
public sealed class Bottleneck : Module<Tensor, Tensor>
{
    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly Conv2d conv2;
    private readonly BatchNorm2d bn2;
    private readonly Conv2d conv3;
    private readonly BatchNorm2d bn3;
    private readonly Sequential? downsample;

    /// <summary>Creates the block; <paramref name="width"/> is the inner width (planes x width_per_group / 64).</summary>
    public Bottleneck(long inplanes, long planes, long width, long stride, Sequential? downsample)
        : base(nameof(Bottleneck))
    {
        conv1 = Conv2d(inplanes, width, 1, bias: false);
        bn1 = BatchNorm2d(width);
        conv2 = Conv2d(width, width, 3, stride: stride, padding: 1, bias: false);
        bn2 = BatchNorm2d(width);
        conv3 = Conv2d(width, planes * 4, 1, bias: false);
        bn3 = BatchNorm2d(planes * 4);
        this.downsample = downsample;
        RegisterComponents();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = F.relu(bn1.forward(conv1.forward(x)));
        y = F.relu(bn2.forward(conv2.forward(y)));
        y = bn3.forward(conv3.forward(y));
        var identity = downsample is null ? x : downsample.forward(x);
        return F.relu(y.PlusInPlace(identity)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// ResNet features with torchvision's structure and key names (<c>conv1</c>, <c>bn1</c>, <c>layer1</c>..<c>layer4</c>):
/// outputs of layers 1..4 at strides 4, 8, 16, 32. Layers after the deepest requested one, the pooling and
/// <c>fc</c> are not built.
/// </summary>
public sealed class ResNetFeatureExtractor : FeatureExtractor
{
    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly Sequential? layer1;
    private readonly Sequential? layer2;
    private readonly Sequential? layer3;
    private readonly Sequential? layer4;
#pragma warning disable IDE1006, SA1300 // PyTorch-style buffer name: it is the state-dict key
    private readonly Tensor? mean_image;
#pragma warning restore IDE1006, SA1300
    private readonly int[] layers;
    private readonly double[] inputMean;
    private readonly double[] inputStd;

    private ResNetFeatureExtractor(ResNetVariant variant, int[] layers, IReadOnlyList<FeatureInfo> outputs, IReadOnlyList<double> inputMean, IReadOnlyList<double> inputStd)
        : base(nameof(ResNetFeatureExtractor), outputs)
    {
        Variant = variant;
        this.layers = layers;
        this.inputMean = inputMean.ToArray();
        this.inputStd = inputStd.ToArray();
        if (variant == ResNetVariant.MlNetResNet18)
        {
            mean_image = zeros(1, 3, MlNetBackbone.MeanImageSize, MlNetBackbone.MeanImageSize, device: CPU);
        }

        var (bottleneck, repeats, widthPerGroup) = Architecture(variant);
        conv1 = Conv2d(3, 64, 7, stride: 2, padding: 3, bias: false);
        bn1 = BatchNorm2d(64);
        long inplanes = 64;
        Sequential MakeLayer(long planes, int blocks, long stride)
        {
            long expansion = bottleneck ? 4 : 1;
            var modules = new List<(string, Module<Tensor, Tensor>)>();
            for (int i = 0; i < blocks; i++)
            {
                long s = i == 0 ? stride : 1;
                Sequential? down = null;
                if (i == 0 && (stride != 1 || inplanes != planes * expansion))
                {
                    down = Sequential(("0", Conv2d(inplanes, planes * expansion, 1, stride: stride, bias: false)), ("1", BatchNorm2d(planes * expansion)));
                }

                modules.Add((i.ToString(System.Globalization.CultureInfo.InvariantCulture), bottleneck
                    ? new Bottleneck(inplanes, planes, planes * widthPerGroup / 64, s, down)
                    : new BasicBlock(inplanes, planes, s, down)));
                inplanes = planes * expansion;
            }

            return Sequential(modules);
        }

        int deepest = layers.Max();
        layer1 = MakeLayer(64, repeats[0], 1);
        layer2 = deepest >= 2 ? MakeLayer(128, repeats[1], 2) : null;
        layer3 = deepest >= 3 ? MakeLayer(256, repeats[2], 2) : null;
        layer4 = deepest >= 4 ? MakeLayer(512, repeats[3], 2) : null;
        RegisterComponents();
        Freeze();
    }

    /// <summary>The variant.</summary>
    public ResNetVariant Variant { get; }

    /// <summary>The per-channel mean (R, G, B) of the normalised images this extractor is fed (for the ONNX export of <see cref="ToNetworkInput"/>).</summary>
    internal IReadOnlyList<double> InputMean => inputMean;

    /// <summary>The per-channel standard deviation (R, G, B) of the normalised images this extractor is fed.</summary>
    internal IReadOnlyList<double> InputStd => inputStd;

    /// <inheritdoc />
    public override string ModelName => Variant switch
    {
        ResNetVariant.WideResNet50_2 => "wide_resnet50_2",
        ResNetVariant.MlNetResNet18 => MlNetBackbone.ModelName,
        _ => Variant.ToString().ToLowerInvariant(),
    };

    /// <summary>
    /// Features of layers 1..4 (strides 4, 8, 16, 32). The images are normalised RGB: each channel
    /// <c>(v / 255 − mean) / std</c> with <paramref name="inputMean"/> and <paramref name="inputStd"/> (default: ImageNet's,
    /// as the detector feeds them). Only <see cref="ResNetVariant.MlNetResNet18"/> looks at them: it turns the
    /// images back into its own convention (see <see cref="ToNetworkInput"/>); the torchvision variants take them as they are.
    /// </summary>
    /// <exception cref="ArgumentException">A layer outside 1..4, repeated or out of order; a mean or std that is not three finite values (std positive).</exception>
    public static ResNetFeatureExtractor FromLayers(ResNetVariant variant, IReadOnlyList<int> layers, IReadOnlyList<double>? inputMean = null, IReadOnlyList<double>? inputStd = null)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (!Enum.IsDefined(variant))
        {
            throw new ArgumentException($"Unknown ResNet variant {variant}.", nameof(variant));
        }

        EfficientNetFeatureExtractor.CheckIncreasing(layers, 1, 4, "layer", variant.ToString());
        var normalisation = new Data.PreprocessOptions { Mean = inputMean ?? Data.PreprocessOptions.ImageNetMean, Std = inputStd ?? Data.PreprocessOptions.ImageNetStd };
        normalisation.Validate();
        var (bottleneck, _, _) = Architecture(variant);
        long expansion = bottleneck ? 4 : 1;
        var outputs = layers.Select(l => new FeatureInfo(l, l, (int)(64 * (1 << (l - 1)) * expansion), 4 << (l - 1))).ToArray();
        return new ResNetFeatureExtractor(variant, layers.ToArray(), outputs, normalisation.Mean, normalisation.Std);
    }

    /// <summary>
    /// The input the network itself computes on. For the torchvision variants, the images as they are. For
    /// <see cref="ResNetVariant.MlNetResNet18"/>, CNTK's convention: channels B, G, R, values 0..255, minus the
    /// per-pixel mean image (<c>mean_image</c>, loaded with the weights) at the images' size
    /// (<see cref="MlNetBackbone.MeanImageAt"/>): <c>x[k] = 255 (img[2 − k] · std[2 − k] + mean[2 − k]) − M[k]</c>.
    /// </summary>
    /// <exception cref="ArgumentException">For ML.NET's ResNet, a side that is not a positive multiple of 32.</exception>
    public Tensor ToNetworkInput(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (mean_image is null)
        {
            return images.alias();
        }

        MlNetBackbone.CheckInputSize(images.shape[2], images.shape[3]);
        using var scope = NewDisposeScope();
        var bgrScale = tensor(new[] { 255 * inputStd[2], 255 * inputStd[1], 255 * inputStd[0] }, dtype: ScalarType.Float32, device: images.device).reshape(1, 3, 1, 1);
        var bgrOffset = tensor(new[] { 255 * inputMean[2], 255 * inputMean[1], 255 * inputMean[0] }, dtype: ScalarType.Float32, device: images.device).reshape(1, 3, 1, 1);
        var mean = MlNetBackbone.MeanImageAt(mean_image, images.shape[2], images.shape[3]).to(images.device);
        var offset = bgrOffset.Plus(mean.neg());
        return images.flip(1).mul(bgrScale).PlusInPlace(offset).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Runs the network on an input already in its own convention (<see cref="ToNetworkInput"/>'s result, e.g. a
    /// reference tensor) and returns the requested layers' outputs.
    /// </summary>
    /// <exception cref="ArgumentException">The input is not a floating-point B x 3 x H x W batch.</exception>
    public Tensor[] ForwardNetworkInput(Tensor networkInput) => Run(networkInput, Network);

    /// <summary>Parses torchvision's names (resnet18, resnet34, resnet50, resnet101, wide_resnet50_2) and ML.NET's <c>mlnet-resnet18</c>.</summary>
    /// <exception cref="ArgumentException">Unknown name.</exception>
    public static ResNetVariant ParseVariant(string name) => name.Trim().ToLowerInvariant() switch
    {
        "resnet18" => ResNetVariant.ResNet18,
        "resnet34" => ResNetVariant.ResNet34,
        "resnet50" => ResNetVariant.ResNet50,
        "resnet101" => ResNetVariant.ResNet101,
        "wide_resnet50_2" or "wideresnet50_2" or "wideresnet50" => ResNetVariant.WideResNet50_2,
        MlNetBackbone.ModelName => ResNetVariant.MlNetResNet18,
        _ => throw new ArgumentException($"Unknown ResNet '{name}'; expected resnet18, resnet34, resnet50, resnet101, wide_resnet50_2 or {MlNetBackbone.ModelName}.", nameof(name)),
    };

    /// <inheritdoc />
    public override bool IsUncomputedKey(string key) =>
        key.StartsWith("fc.", StringComparison.Ordinal) ||
        (key.StartsWith("layer", StringComparison.Ordinal) && key.Length > 6 && key[6] == '.' && key[5] - '0' > layers.Max() && key[5] - '0' <= 4);

    /// <inheritdoc />
    protected override Tensor[] Extract(Tensor images) => Network(mean_image is null ? images : ToNetworkInput(images));

    private Tensor[] Network(Tensor images)
    {
        var x = F.max_pool2d(F.relu(bn1.forward(conv1.forward(images))), 3, 2, 1);
        var outs = new Tensor?[5];
        var stages = new[] { layer1, layer2, layer3, layer4 };
        for (int i = 0; i < 4 && stages[i] is not null; i++)
        {
            x = stages[i]!.forward(x);
            outs[i + 1] = x;
        }

        return layers.Select(l => outs[l]!).ToArray();
    }

    private static (bool Bottleneck, int[] Repeats, long WidthPerGroup) Architecture(ResNetVariant variant) => variant switch
    {
        ResNetVariant.ResNet18 => (false, new[] { 2, 2, 2, 2 }, 64),
        ResNetVariant.ResNet34 => (false, new[] { 3, 4, 6, 3 }, 64),
        ResNetVariant.ResNet50 => (true, new[] { 3, 4, 6, 3 }, 64),
        ResNetVariant.ResNet101 => (true, new[] { 3, 4, 23, 3 }, 64),
        ResNetVariant.WideResNet50_2 => (true, new[] { 3, 4, 6, 3 }, 128),
        ResNetVariant.MlNetResNet18 => (false, new[] { 2, 2, 2, 3 }, 64),
        _ => throw new ArgumentOutOfRangeException(nameof(variant), variant, "Unknown ResNet variant."),
    };
}
