using System.Globalization;
using Onnx;
using UniAD.Core.Weights;
using static TorchSharp.torch;

namespace UniAD.Core.Backbones;

/// <summary>
/// The weights of a ResNet of basic blocks read from an ONNX graph, under torchvision's key names
/// (<c>conv1</c>, <c>bn1</c>, <c>layerL.i.conv1</c>, ..., <c>layerL.0.downsample.0/1</c>). Owns its tensors.
/// </summary>
public sealed class OnnxResNetWeights : IDisposable
{
    internal OnnxResNetWeights(TensorDictionary weights, IReadOnlyList<int> blocksPerLayer, IReadOnlyList<string> layerOutputs, string inputName, bool asymmetricPadding)
    {
        Weights = weights;
        BlocksPerLayer = blocksPerLayer;
        LayerOutputs = layerOutputs;
        InputName = inputName;
        AsymmetricPadding = asymmetricPadding;
    }

    /// <summary>The weights, keyed like torchvision's ResNet (BatchNorm statistics included).</summary>
    public TensorDictionary Weights { get; }

    /// <summary>Basic blocks found in each layer (torchvision's ResNet-18: 2, 2, 2, 2; ML.NET's: 2, 2, 2, 3).</summary>
    public IReadOnlyList<int> BlocksPerLayer { get; }

    /// <summary>The ONNX tensor name of each layer's output (layer 1 first), for running the graph with its stages exposed.</summary>
    public IReadOnlyList<string> LayerOutputs { get; }

    /// <summary>The graph's image input.</summary>
    public string InputName { get; }

    /// <summary>
    /// True when stride-2 convolutions or the max pool pad only top/left (CNTK's export:
    /// [top, left, bottom, right] = [p, p, p − 1, p − 1]). On inputs whose sides are multiples of 32 this
    /// gives exactly the symmetric result, since the extra bottom/right row is never read.
    /// </summary>
    public bool AsymmetricPadding { get; }

    /// <inheritdoc />
    public void Dispose() => Weights.Dispose();
}

/// <summary>
/// Maps an ONNX ResNet onto this library's torchvision-keyed <see cref="ResNetFeatureExtractor"/> by
/// following the graph's data flow from its input: stem convolution, BatchNorm, ReLU, max pool, then basic
/// blocks (3 x 3 convolution, BatchNorm, ReLU, 3 x 3 convolution, BatchNorm, residual sum with the block's
/// input or with a 1 x 1 strided convolution and BatchNorm of it, ReLU); a block whose first convolution
/// has stride 2 starts the next layer. Initializer names and order play no part. A graph that is not such a
/// ResNet fails with an <see cref="InvalidDataException"/> naming the first node that does not fit.
/// </summary>
public static class OnnxResNetImport
{
    /// <summary>BatchNorm epsilon of torchvision's ResNet (and of this library's).</summary>
    public const double BatchNormEpsilon = 1e-5;

    /// <summary>Reads the network weights of the ResNet in <paramref name="modelPath"/>.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not ONNX, or its graph is not a plain ResNet of basic blocks.</exception>
    public static OnnxResNetWeights Import(string modelPath)
    {
        var file = OnnxFile.Read(modelPath);
        var weights = new TensorDictionary { Source = modelPath };
        try
        {
            return Walk(file, weights);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads the per-pixel mean image of a CNTK-style preprocessing graph (ML.NET's <c>ResNetPreprocess.onnx</c>):
    /// split the R, G, B channels, concatenate them as B, G, R, subtract a 1 x 3 x H x W initializer. Returns that
    /// initializer (channels B, G, R) as a float32 tensor.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The graph is not that preprocessing.</exception>
    public static Tensor ReadCntkMeanImage(string preprocessingPath)
    {
        var file = OnnxFile.Read(preprocessingPath);
        var input = file.Inputs.Count == 1 ? file.Inputs[0] : throw Bad(file, $"it has {file.Inputs.Count} inputs; a preprocessing graph has one");
        var split = Single(file, input, "Split", "the R, G, B split");
        if (split.Output.Count != 3 || OnnxFile.Int(split, "axis", 0) != 1)
        {
            throw NotFit(file, split, "a Split of axis 1 into three channels");
        }

        var concat = Single(file, split.Output[0], "Concat", "the B, G, R concatenation");
        if (OnnxFile.Int(concat, "axis", 0) != 1 || !concat.Input.SequenceEqual(new[] { split.Output[2], split.Output[1], split.Output[0] }))
        {
            throw NotFit(file, concat, "a Concat of axis 1 of the channels in the order B, G, R");
        }

        var sub = Single(file, concat.Output[0], "Sub", "the mean-image subtraction");
        if (sub.Input.Count != 2 || sub.Input[0] != concat.Output[0] || !file.IsInitializer(sub.Input[1]))
        {
            throw NotFit(file, sub, "a Sub of a constant mean image from the B, G, R image");
        }

        var dims = file.Dims(sub.Input[1]);
        if (dims.Length != 4 || dims[0] != 1 || dims[1] != 3 || dims[2] <= 0 || dims[3] <= 0)
        {
            throw NotFit(file, sub, $"a 1 x 3 x H x W mean image, not [{string.Join(", ", dims)}]");
        }

        return file.FloatTensor(sub.Input[1]);
    }

    private static OnnxResNetWeights Walk(OnnxFile file, TensorDictionary weights)
    {
        var inputs = file.Inputs;
        if (inputs.Count != 1)
        {
            throw Bad(file, $"it has {inputs.Count} inputs; a ResNet has one image input");
        }

        bool asymmetric = false;
        var stem = Single(file, inputs[0], "Conv", "the stem convolution");
        var stemDims = ConvWeight(file, stem, kernel: 7, stride: 2, ref asymmetric);
        if (stemDims[1] != 3 || stemDims[0] != 64)
        {
            throw NotFit(file, stem, $"a 7 x 7 convolution from 3 to 64 channels, not [{string.Join(", ", stemDims)}]");
        }

        weights.Add("conv1.weight", file.FloatTensor(stem.Input[1]));
        var x = BatchNorm(file, Single(file, stem.Output[0], "BatchNormalization", "the stem's BatchNorm"), "bn1", weights);
        x = Single(file, x, "Relu", "the stem's ReLU").Output[0];
        var pool = Single(file, x, "MaxPool", "the stem's max pool");
        CheckPool(file, pool, ref asymmetric);
        x = pool.Output[0];

        var blocks = new List<int>();
        var layerOutputs = new List<string>();
        long channels = 64;
        while (true)
        {
            var next = file.Consumers(x);
            if (next.Count == 0 || next.Any(n => n.OpType is "AveragePool" or "GlobalAveragePool" or "Flatten" or "Gemm" or "ReduceMean"))
            {
                break;
            }

            var main = next.Where(n => n.OpType == "Conv" && OnnxFile.Ints(n, "kernel_shape", Array.Empty<long>()).SequenceEqual(new long[] { 3, 3 })).ToList();
            var shortcutConv = next.Where(n => n.OpType == "Conv" && OnnxFile.Ints(n, "kernel_shape", Array.Empty<long>()).SequenceEqual(new long[] { 1, 1 })).ToList();
            var residual = next.Where(n => n.OpType == "Add").ToList();
            var unexpected = next.Except(main).Except(shortcutConv).Except(residual).FirstOrDefault();
            if (unexpected is not null || main.Count != 1 || shortcutConv.Count + residual.Count != 1)
            {
                throw NotFit(file, unexpected ?? next[0], "a basic block: a 3 x 3 convolution and either the residual sum or a 1 x 1 shortcut convolution reading the previous block's output");
            }

            long stride = OnnxFile.Ints(main[0], "strides", new long[] { 1, 1 })[0];
            if (stride == 2 || blocks.Count == 0)
            {
                blocks.Add(0);
                layerOutputs.Add(string.Empty);
                if (stride == 2)
                {
                    channels *= 2;
                }
            }

            int layer = blocks.Count;
            if (layer > 4)
            {
                throw NotFit(file, main[0], "at most four layers (a fifth stride-2 block was found)");
            }

            string prefix = string.Create(CultureInfo.InvariantCulture, $"layer{layer}.{blocks[^1]}");
            var conv1Dims = ConvWeight(file, main[0], kernel: 3, stride: stride, ref asymmetric);
            if (conv1Dims[0] != channels)
            {
                throw NotFit(file, main[0], $"a convolution to {channels} channels in layer {layer}, not {conv1Dims[0]}");
            }

            weights.Add(prefix + ".conv1.weight", file.FloatTensor(main[0].Input[1]));
            var y = BatchNorm(file, Single(file, main[0].Output[0], "BatchNormalization", "the block's first BatchNorm"), prefix + ".bn1", weights);
            y = Single(file, y, "Relu", "the block's first ReLU").Output[0];
            var conv2 = Single(file, y, "Conv", "the block's second convolution");
            ConvWeight(file, conv2, kernel: 3, stride: 1, ref asymmetric);
            weights.Add(prefix + ".conv2.weight", file.FloatTensor(conv2.Input[1]));
            y = BatchNorm(file, Single(file, conv2.Output[0], "BatchNormalization", "the block's second BatchNorm"), prefix + ".bn2", weights);
            var add = Single(file, y, "Add", "the block's residual sum");
            if (add.Input.Count != 2)
            {
                throw NotFit(file, add, "a sum of two tensors");
            }

            string other = add.Input[0] == y ? add.Input[1] : add.Input[0];
            if (shortcutConv.Count == 1)
            {
                var down = shortcutConv[0];
                ConvWeight(file, down, kernel: 1, stride: stride, ref asymmetric);
                weights.Add(prefix + ".downsample.0.weight", file.FloatTensor(down.Input[1]));
                var downOut = BatchNorm(file, Single(file, down.Output[0], "BatchNormalization", "the shortcut's BatchNorm"), prefix + ".downsample.1", weights);
                if (other != downOut)
                {
                    throw NotFit(file, add, "the residual sum of the main path and the shortcut's BatchNorm");
                }
            }
            else if (other != x || !ReferenceEquals(residual[0], add) || stride != 1)
            {
                throw NotFit(file, add, "the residual sum of the main path and the block's input (a block without a shortcut convolution keeps stride 1)");
            }

            x = Single(file, add.Output[0], "Relu", "the block's final ReLU").Output[0];
            blocks[^1]++;
            layerOutputs[^1] = x;
        }

        if (blocks.Count == 0)
        {
            throw Bad(file, "no basic block follows the stem");
        }

        return new OnnxResNetWeights(weights, blocks, layerOutputs, inputs[0], asymmetric);
    }

    private static NodeProto Single(OnnxFile file, string tensor, string opType, string what)
    {
        var next = file.Consumers(tensor);
        if (next.Count != 1 || next[0].OpType != opType)
        {
            var culprit = next.FirstOrDefault(n => n.OpType != opType) ?? next.FirstOrDefault();
            throw culprit is null
                ? Bad(file, $"tensor '{tensor}' is read by no node where {what} ({opType}) was expected")
                : NotFit(file, culprit, $"{what} ({opType}) as the only reader of '{tensor}'" + (next.Count > 1 ? $" ({next.Count} nodes read it)" : string.Empty));
        }

        return next[0];
    }

    private static long[] ConvWeight(OnnxFile file, NodeProto conv, long kernel, long stride, ref bool asymmetric)
    {
        if (conv.Input.Count < 2 || !file.IsInitializer(conv.Input[1]))
        {
            throw NotFit(file, conv, "a convolution with constant weights");
        }

        if (conv.Input.Count > 2 && conv.Input[2].Length > 0)
        {
            throw NotFit(file, conv, "a convolution without bias (torchvision's ResNet has none)");
        }

        var dims = file.Dims(conv.Input[1]);
        var strides = OnnxFile.Ints(conv, "strides", new long[] { 1, 1 });
        bool groupsOk = OnnxFile.Int(conv, "group", 1) == 1 && OnnxFile.Ints(conv, "dilations", new long[] { 1, 1 }).All(d => d == 1);
        if (dims.Length != 4 || dims[2] != kernel || dims[3] != kernel || !strides.SequenceEqual(new[] { stride, stride }) || !groupsOk)
        {
            throw NotFit(file, conv, $"a {kernel} x {kernel} convolution of stride {stride} without groups or dilation");
        }

        CheckPads(file, conv, kernel / 2, stride, ref asymmetric);
        return dims;
    }

    private static void CheckPool(OnnxFile file, NodeProto pool, ref bool asymmetric)
    {
        if (!OnnxFile.Ints(pool, "kernel_shape", Array.Empty<long>()).SequenceEqual(new long[] { 3, 3 }) || !OnnxFile.Ints(pool, "strides", new long[] { 1, 1 }).SequenceEqual(new long[] { 2, 2 }))
        {
            throw NotFit(file, pool, "a 3 x 3 max pool of stride 2");
        }

        CheckPads(file, pool, 1, 2, ref asymmetric);
    }

    private static void CheckPads(OnnxFile file, NodeProto node, long pad, long stride, ref bool asymmetric)
    {
        var autoPad = node.Attribute.FirstOrDefault(a => a.Name == "auto_pad");
        if (autoPad is not null && autoPad.S.Length > 0 && autoPad.S.ToStringUtf8() != "NOTSET")
        {
            throw NotFit(file, node, "explicit pads (auto_pad is not supported)");
        }

        var pads = OnnxFile.Ints(node, "pads", new long[] { 0, 0, 0, 0 });
        if (pads.SequenceEqual(new[] { pad, pad, pad, pad }))
        {
            return;
        }

        // CNTK pads stride-2 layers on the top and left only; on sides that are multiples of 32 the extra
        // bottom/right padding of the symmetric form is never read, so both give the same result.
        if (stride == 2 && pad > 0 && pads.SequenceEqual(new[] { pad, pad, pad - 1, pad - 1 }))
        {
            asymmetric = true;
            return;
        }

        throw NotFit(file, node, $"pads [{pad}, {pad}, {pad}, {pad}]" + (stride == 2 && pad > 0 ? $" or [{pad}, {pad}, {pad - 1}, {pad - 1}]" : string.Empty) + $", not [{string.Join(", ", pads)}]");
    }

    private static string BatchNorm(OnnxFile file, NodeProto bn, string prefix, TensorDictionary weights)
    {
        if (bn.Input.Count != 5 || bn.Input.Skip(1).Any(i => !file.IsInitializer(i)))
        {
            throw NotFit(file, bn, "a BatchNormalization with constant scale, bias, mean and variance");
        }

        double eps = OnnxFile.Float(bn, "epsilon", 1e-5f);
        if (Math.Abs(eps - BatchNormEpsilon) > 1e-9)
        {
            throw NotFit(file, bn, $"a BatchNormalization of epsilon {BatchNormEpsilon} (torchvision's), not {eps}");
        }

        weights.Add(prefix + ".weight", Vector(file, bn, bn.Input[1]));
        weights.Add(prefix + ".bias", Vector(file, bn, bn.Input[2]));
        weights.Add(prefix + ".running_mean", Vector(file, bn, bn.Input[3]));
        weights.Add(prefix + ".running_var", Vector(file, bn, bn.Input[4]));
        return bn.Output[0];
    }

    private static Tensor Vector(OnnxFile file, NodeProto bn, string name)
    {
        var t = file.FloatTensor(name);
        if (t.dim() == 1)
        {
            return t;
        }

        // Some exporters store per-channel constants as C x 1 x 1.
        if (t.shape.Skip(1).All(d => d == 1))
        {
            var flat = t.reshape(t.shape[0]);
            t.Dispose();
            return flat;
        }

        t.Dispose();
        throw NotFit(file, bn, $"per-channel vectors, not '{name}' of shape [{string.Join(", ", file.Dims(name))}]");
    }

    private static InvalidDataException NotFit(OnnxFile file, NodeProto node, string expected) =>
        new($"'{file.Path}' is not a plain ResNet of basic blocks: node {OnnxFile.Describe(node)} does not fit; expected {expected}.");

    private static InvalidDataException Bad(OnnxFile file, string why) =>
        new($"'{file.Path}' is not a plain ResNet of basic blocks: {why}.");
}
