using TorchSharp.Modules;
using UniAD.Core.Backbones;
using static TorchSharp.torch;
using static UniAD.Core.Export.ModuleParts;

namespace UniAD.Core.Export;

/// <summary>Convolutions with their BatchNorm folded in: w' = w·γ/√(var+ε), b' = β + (b − mean)·γ/√(var+ε), computed in float64.</summary>
internal static class ConvEmitter
{
    /// <summary>A convolution (and the evaluation-mode BatchNorm after it, folded) as one Conv node; pads are [top, left, bottom, right].</summary>
    public static string Emit(OnnxGraph graph, string scope, string x, Tensor weight, Tensor? bias, BatchNorm2d? norm, long stride, long[] pads, long groups)
    {
        var shape = weight.shape;
        var w = OnnxGraph.Values(weight);
        float[]? b = bias is null ? null : OnnxGraph.Values(bias);
        if (norm is not null)
        {
            (w, b) = Fold(w, b, norm, shape[0]);
        }

        var wName = graph.Initializer($"{scope}.weight", w, shape);
        var bName = b is null ? null : graph.Initializer($"{scope}.bias", b, new[] { shape[0] });
        return graph.Conv(scope, x, wName, bName, new[] { stride, stride }, pads, groups);
    }

    /// <summary>EfficientNet-PyTorch's convolution with static "same" padding (its fixed left, right, top, bottom become ONNX pads).</summary>
    public static string Emit(OnnxGraph graph, string scope, string x, Conv2dStaticSamePadding conv, BatchNorm2d? norm)
    {
        var p = conv.Padding; // left, right, top, bottom
        return Emit(graph, scope, x, conv.Weight, conv.Bias, norm, conv.Stride, new[] { p[2], p[0], p[3], p[1] }, conv.Groups);
    }

    /// <summary>A torchvision convolution (symmetric zero padding, no dilation), with an optional BatchNorm folded in.</summary>
    /// <exception cref="NotSupportedException">The convolution dilates, pads other than with zeros, or has unequal strides.</exception>
    public static string Emit(OnnxGraph graph, string scope, string x, Conv2d conv, BatchNorm2d? norm)
    {
        var stride = conv.stride;
        var padding = conv.padding ?? throw new NotSupportedException($"ONNX export: '{scope}' has no explicit padding.");
        if (conv.dilation.Any(d => d != 1) || conv.padding_mode != TorchSharp.PaddingModes.Zeros || stride.Length != 2 || stride[0] != stride[1] || padding.Length != 2)
        {
            throw new NotSupportedException($"ONNX export: '{scope}' is a convolution with dilation [{string.Join(", ", conv.dilation)}], padding mode {conv.padding_mode}, stride [{string.Join(", ", stride)}]; only plain zero-padded ones are supported.");
        }

        return Emit(graph, scope, x, conv.weight!, conv.bias, norm, stride[0], new[] { padding[0], padding[1], padding[0], padding[1] }, conv.groups);
    }

    private static (float[] Weight, float[] Bias) Fold(float[] weight, float[]? bias, BatchNorm2d norm, long channels)
    {
        var mean = OnnxGraph.Values(norm.running_mean ?? throw new NotSupportedException("ONNX export: a BatchNorm without running statistics."));
        var variance = OnnxGraph.Values(norm.running_var ?? throw new NotSupportedException("ONNX export: a BatchNorm without running statistics."));
        float[]? gamma = norm.weight is { } g ? OnnxGraph.Values(g) : null;
        float[]? beta = norm.bias is { } be ? OnnxGraph.Values(be) : null;
        double eps = norm.eps;
        int per = (int)(weight.LongLength / channels);
        var w = new float[weight.Length];
        var b = new float[channels];
        for (int c = 0; c < channels; c++)
        {
            double scale = (gamma?[c] ?? 1.0) / Math.Sqrt(variance[c] + eps);
            b[c] = (float)((((bias?[c] ?? 0.0) - mean[c]) * scale) + (beta?[c] ?? 0.0));
            for (int i = c * per; i < (c + 1) * per; i++)
            {
                w[i] = (float)(weight[i] * scale);
            }
        }

        return (w, b);
    }
}

/// <summary>EfficientNet features: stem, the MBConv blocks up to the deepest output, the outputs of the requested blocks.</summary>
internal sealed class EfficientNetEmitter : OnnxEmitter<EfficientNetFeatureExtractor>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, EfficientNetFeatureExtractor module, string scope, IReadOnlyList<string> inputs)
    {
        var g = context.Graph;
        var stemScope = OnnxEmitContext.Child(scope, "_conv_stem");
        var x = g.Silu(stemScope, ConvEmitter.Emit(g, stemScope, inputs[0], Child<Conv2dStaticSamePadding>(module, "_conv_stem"), Child<BatchNorm2d>(module, "_bn0")));
        var wanted = module.Outputs.Select(o => o.Block).ToList();
        var outputs = new string[wanted.Count];
        var blocks = Children(Child<nn.Module>(module, "_blocks"));
        for (int i = 0; i < blocks.Count; i++)
        {
            x = context.Emit(blocks[i], OnnxEmitContext.Child(scope, $"_blocks.{i}"), x)[0];
            if (wanted.IndexOf(i) is >= 0 and var slot)
            {
                outputs[slot] = x;
            }
        }

        return outputs;
    }
}

/// <summary>One MBConv block: expansion, depthwise convolution, squeeze-excitation, projection, residual sum (drop-connect is training-only).</summary>
internal sealed class MBConvBlockEmitter : OnnxEmitter<MBConvBlock>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, MBConvBlock module, string scope, IReadOnlyList<string> inputs)
    {
        var g = context.Graph;
        string Scope(string name) => OnnxEmitContext.Child(scope, name);
        var x = inputs[0];
        if (TryChild<Conv2dStaticSamePadding>(module, "_expand_conv") is { } expand)
        {
            x = g.Silu(Scope("_expand_conv"), ConvEmitter.Emit(g, Scope("_expand_conv"), x, expand, Child<BatchNorm2d>(module, "_bn0")));
        }

        x = g.Silu(Scope("_depthwise_conv"), ConvEmitter.Emit(g, Scope("_depthwise_conv"), x, Child<Conv2dStaticSamePadding>(module, "_depthwise_conv"), Child<BatchNorm2d>(module, "_bn1")));
        var squeezed = g.GlobalAveragePool(Scope("_se"), x);
        squeezed = g.Silu(Scope("_se_reduce"), ConvEmitter.Emit(g, Scope("_se_reduce"), squeezed, Child<Conv2dStaticSamePadding>(module, "_se_reduce"), null));
        squeezed = ConvEmitter.Emit(g, Scope("_se_expand"), squeezed, Child<Conv2dStaticSamePadding>(module, "_se_expand"), null);
        x = g.Mul(Scope("_se"), x, g.Unary(Scope("_se"), "Sigmoid", squeezed));
        x = ConvEmitter.Emit(g, Scope("_project_conv"), x, Child<Conv2dStaticSamePadding>(module, "_project_conv"), Child<BatchNorm2d>(module, "_bn2"));
        var spec = module.Spec;
        if (spec.Stride == 1 && spec.InputFilters == spec.OutputFilters)
        {
            x = g.Add(scope, x, inputs[0]);
        }

        return new[] { x };
    }
}

/// <summary>
/// ResNet features (torchvision's layout): stem, max pool, layers 1..4 up to the deepest output. For
/// <c>mlnet-resnet18</c> the input convention comes first, as <see cref="ResNetFeatureExtractor.ToNetworkInput"/>
/// computes it: channels reversed to B, G, R, times 255·std, plus 255·mean minus the mean image at the input size.
/// </summary>
internal sealed class ResNetEmitter : OnnxEmitter<ResNetFeatureExtractor>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, ResNetFeatureExtractor module, string scope, IReadOnlyList<string> inputs)
    {
        var g = context.Graph;
        var x = inputs[0];
        if (module.Variant == ResNetVariant.MlNetResNet18)
        {
            x = NetworkInput(context, module, scope, x);
        }

        var stem = OnnxEmitContext.Child(scope, "conv1");
        x = g.Unary(stem, "Relu", ConvEmitter.Emit(g, stem, x, Child<Conv2d>(module, "conv1"), Child<BatchNorm2d>(module, "bn1")));
        x = g.MaxPool(OnnxEmitContext.Child(scope, "maxpool"), x, 3, 2, new long[] { 1, 1, 1, 1 });
        var layers = new string?[5];
        for (int l = 1; l <= 4 && TryChild<nn.Module>(module, $"layer{l}") is { } layer; l++)
        {
            var blocks = Children(layer);
            for (int i = 0; i < blocks.Count; i++)
            {
                x = context.Emit(blocks[i], OnnxEmitContext.Child(scope, $"layer{l}.{i}"), x)[0];
            }

            layers[l] = x;
        }

        return module.Outputs.Select(o => layers[o.Layer] ?? throw new InvalidOperationException($"ONNX export: {module.ModelName} has no layer{o.Layer}.")).ToArray();
    }

    private static string NetworkInput(OnnxEmitContext context, ResNetFeatureExtractor module, string scope, string images)
    {
        var g = context.Graph;
        var size = context.InputSize;
        var inputScope = OnnxEmitContext.Child(scope, "network_input");
        var mean = module.InputMean;
        var std = module.InputStd;

        // The same float32 numbers ToNetworkInput computes: scale 255·std and offset 255·mean − M, per B, G, R channel.
        var scale = new[] { (float)(255 * std[2]), (float)(255 * std[1]), (float)(255 * std[0]) };
        var bgrOffset = new[] { (float)(255 * mean[2]), (float)(255 * mean[1]), (float)(255 * mean[0]) };
        float[] meanImage;
        using (var scope2 = NewDisposeScope())
        using (var noGrad = no_grad())
        {
            var stored = ModuleParts.Tensor(module, "mean_image").detach().cpu();
            meanImage = OnnxGraph.Values(MlNetBackbone.MeanImageAt(stored, size.Height, size.Width));
        }

        int plane = size.Height * size.Width;
        var offset = new float[3 * plane];
        for (int i = 0; i < offset.Length; i++)
        {
            offset[i] = bgrOffset[i / plane] - meanImage[i];
        }

        var bgr = g.Gather(inputScope, images, new long[] { 2, 1, 0 }, axis: 1);
        var scaled = g.Mul(inputScope, bgr, g.Initializer(OnnxEmitContext.Child(scope, "network_input.scale"), scale, new long[] { 1, 3, 1, 1 }));
        return g.Add(inputScope, scaled, g.Initializer(OnnxEmitContext.Child(scope, "network_input.offset"), offset, new long[] { 1, 3, size.Height, size.Width }));
    }
}

/// <summary>torchvision's basic block: two 3 x 3 convolutions, the identity or a 1 x 1 downsampling, ReLU after the sum.</summary>
internal sealed class BasicBlockEmitter : OnnxEmitter<BasicBlock>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, BasicBlock module, string scope, IReadOnlyList<string> inputs)
    {
        var g = context.Graph;
        string Scope(string name) => OnnxEmitContext.Child(scope, name);
        var y = g.Unary(Scope("conv1"), "Relu", ConvEmitter.Emit(g, Scope("conv1"), inputs[0], Child<Conv2d>(module, "conv1"), Child<BatchNorm2d>(module, "bn1")));
        y = ConvEmitter.Emit(g, Scope("conv2"), y, Child<Conv2d>(module, "conv2"), Child<BatchNorm2d>(module, "bn2"));
        return new[] { ResidualRelu(g, scope, module, inputs[0], y) };
    }

    /// <summary>ReLU(y + identity), the identity being the input or its <c>downsample</c> (1 x 1 convolution and BatchNorm).</summary>
    internal static string ResidualRelu(OnnxGraph g, string scope, nn.Module block, string input, string y)
    {
        var identity = input;
        if (TryChild<nn.Module>(block, "downsample") is { } down)
        {
            var parts = Children(down);
            var downScope = OnnxEmitContext.Child(scope, "downsample.0");
            identity = ConvEmitter.Emit(g, downScope, input, (Conv2d)parts[0], (BatchNorm2d)parts[1]);
        }

        return g.Unary(scope, "Relu", g.Add(scope, y, identity));
    }
}

/// <summary>torchvision's bottleneck (stride on the 3 x 3 convolution).</summary>
internal sealed class BottleneckEmitter : OnnxEmitter<Bottleneck>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, Bottleneck module, string scope, IReadOnlyList<string> inputs)
    {
        var g = context.Graph;
        string Scope(string name) => OnnxEmitContext.Child(scope, name);
        var y = g.Unary(Scope("conv1"), "Relu", ConvEmitter.Emit(g, Scope("conv1"), inputs[0], Child<Conv2d>(module, "conv1"), Child<BatchNorm2d>(module, "bn1")));
        y = g.Unary(Scope("conv2"), "Relu", ConvEmitter.Emit(g, Scope("conv2"), y, Child<Conv2d>(module, "conv2"), Child<BatchNorm2d>(module, "bn2")));
        y = ConvEmitter.Emit(g, Scope("conv3"), y, Child<Conv2d>(module, "conv3"), Child<BatchNorm2d>(module, "bn3"));
        return new[] { BasicBlockEmitter.ResidualRelu(g, scope, module, inputs[0], y) };
    }
}

/// <summary>The MFCN neck: every map resized to the output stride (bilinear, align_corners = true) and concatenated on channels.</summary>
internal sealed class MfcnNeckEmitter : OnnxEmitter<MfcnNeck>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, MfcnNeck module, string scope, IReadOnlyList<string> inputs)
    {
        var g = context.Graph;
        var resized = new string[inputs.Count];
        for (int i = 0; i < inputs.Count; i++)
        {
            var s = g.Shape(inputs[i]);
            long h = s[2] * module.InputStrides[i] / module.OutputStride, w = s[3] * module.InputStrides[i] / module.OutputStride;
            resized[i] = h == s[2] && w == s[3] ? inputs[i] : g.ResizeBilinearAlignCorners(OnnxEmitContext.Child(scope, $"resize{i}"), inputs[i], h, w);
        }

        return new[] { resized.Length == 1 ? resized[0] : g.Concat(scope, resized, 1) };
    }
}
