using System.Buffers.Binary;
using Google.Protobuf;
using Onnx;
using static TorchSharp.torch;

namespace UniAD.Core.Export;

/// <summary>
/// Builds one ONNX graph (opset <see cref="OnnxExport.Opset"/>) node by node: typed helpers for the operators the
/// emitters use, float32 and int64 initializers, and the static shape of every value whose shape the helpers can
/// work out (the batch dimension is −1; later ones are known because the input size is fixed). Value and node names
/// are derived from the emitting module's scope (e.g. <c>backbone._blocks.3</c>) and made unique in emission order,
/// so the same modules give the same graph, byte for byte.
/// </summary>
internal sealed class OnnxGraph
{
    /// <summary>The batch dimension in <see cref="Shape"/>: dynamic.</summary>
    public const long Batch = -1;

    private readonly GraphProto graph;
    private readonly Dictionary<string, long[]> shapes = new(StringComparer.Ordinal);
    private readonly HashSet<string> names = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> constants = new(StringComparer.Ordinal);

    /// <summary>Creates an empty graph called <paramref name="name"/>.</summary>
    public OnnxGraph(string name)
    {
        graph = new GraphProto { Name = name };
    }

    /// <summary>The graph built so far.</summary>
    public GraphProto Proto => graph;

    /// <summary>Declares a graph input (float32 unless <paramref name="type"/> says otherwise); <see cref="Batch"/> dimensions become the dimension parameter <paramref name="batchName"/>.</summary>
    public string Input(string name, long[] shape, string batchName, TensorProto.Types.DataType type = TensorProto.Types.DataType.Float)
    {
        Claim(name);
        graph.Input.Add(ValueInfo(name, shape, batchName, type));
        shapes[name] = shape;
        return name;
    }

    /// <summary>Declares <paramref name="value"/> as the float32 graph output <paramref name="name"/> (through an Identity node).</summary>
    public void Output(string value, string name, string batchName)
    {
        var shape = Shape(value);
        Claim(name);
        graph.Node.Add(NewNode("Identity", name, new[] { value }, new[] { name }));
        shapes[name] = shape;
        graph.Output.Add(ValueInfo(name, shape, batchName));
    }

    /// <summary>The static shape of <paramref name="value"/> (<see cref="Batch"/> for the batch).</summary>
    /// <exception cref="InvalidOperationException">The shape of the value is not known (an emitter bug).</exception>
    public long[] Shape(string value) =>
        shapes.TryGetValue(value, out var shape) ? shape : throw new InvalidOperationException($"ONNX export: the shape of '{value}' is not known.");

    /// <summary>Adds a float32 initializer holding <paramref name="values"/> (row-major) of <paramref name="shape"/>.</summary>
    public string Initializer(string name, float[] values, long[] shape)
    {
        long count = shape.Aggregate(1L, (a, d) => a * d);
        if (count != values.LongLength)
        {
            throw new ArgumentException($"Initializer '{name}': {values.Length} values for shape [{string.Join(", ", shape)}].", nameof(values));
        }

        var bytes = new byte[values.LongLength * sizeof(float)];
        for (long i = 0; i < values.LongLength; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan((int)(i * sizeof(float)), sizeof(float)), values[i]);
        }

        return AddInitializer(name, TensorProto.Types.DataType.Float, shape, bytes);
    }

    /// <summary>Adds a float32 initializer with the values and shape of <paramref name="tensor"/> (copied to the CPU).</summary>
    public string Initializer(string name, Tensor tensor) => Initializer(name, Values(tensor), tensor.shape);

    /// <summary>An int64 constant (shared between uses of the same values).</summary>
    public string Int64(params long[] values)
    {
        var key = string.Join(",", values);
        if (constants.TryGetValue(key, out var existing))
        {
            return existing;
        }

        var bytes = new byte[values.Length * sizeof(long)];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(i * sizeof(long), sizeof(long)), values[i]);
        }

        var name = AddInitializer($"const.int64.{(values.Length == 0 ? "empty" : string.Join("_", values).Replace('-', 'm'))}", TensorProto.Types.DataType.Int64, new long[] { values.Length }, bytes);
        constants[key] = name;
        return name;
    }

    /// <summary>A float32 scalar constant (shared between uses of the same value).</summary>
    public string Scalar(float value)
    {
        var key = "f:" + BitConverter.SingleToInt32Bits(value).ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (constants.TryGetValue(key, out var existing))
        {
            return existing;
        }

        var name = Initializer($"const.float.{value.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}", new[] { value }, Array.Empty<long>());
        constants[key] = name;
        return name;
    }

    /// <summary>A tensor's values as float32, row-major (copied to the CPU).</summary>
    public static float[] Values(Tensor tensor)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return tensor.detach().cpu().to(ScalarType.Float32).contiguous().data<float>().ToArray();
    }

    // ---- Operators. Every helper returns the name of its (first) output and records its shape. ----

    /// <summary>A 2-D convolution; <paramref name="pads"/> is ONNX's [top, left, bottom, right].</summary>
    public string Conv(string scope, string x, string weight, string? bias, long[] strides, long[] pads, long groups)
    {
        var inShape = Shape(x);
        var w = Shape(weight);
        long h = ((inShape[2] + pads[0] + pads[2] - w[2]) / strides[0]) + 1;
        long wd = ((inShape[3] + pads[1] + pads[3] - w[3]) / strides[1]) + 1;
        var inputs = bias is null ? new[] { x, weight } : new[] { x, weight, bias };
        return Op(scope, "Conv", inputs, new[] { inShape[0], w[0], h, wd },
            Ints("kernel_shape", w[2], w[3]), Ints("strides", strides), Ints("pads", pads), Ints("dilations", 1, 1), Int("group", groups));
    }

    /// <summary>Max pooling without dilation; <paramref name="pads"/> is [top, left, bottom, right].</summary>
    public string MaxPool(string scope, string x, long kernel, long stride, long[] pads)
    {
        var s = Shape(x);
        long h = ((s[2] + pads[0] + pads[2] - kernel) / stride) + 1, w = ((s[3] + pads[1] + pads[3] - kernel) / stride) + 1;
        return Op(scope, "MaxPool", new[] { x }, new[] { s[0], s[1], h, w }, Ints("kernel_shape", kernel, kernel), Ints("strides", stride, stride), Ints("pads", pads));
    }

    /// <summary>Average pooling with a kh x kw window, stride 1, no padding (PyTorch's <c>avg_pool2d(x, [kh, kw], 1)</c>).</summary>
    public string AveragePool(string scope, string x, long kernelHeight, long kernelWidth)
    {
        var s = Shape(x);
        return Op(scope, "AveragePool", new[] { x }, new[] { s[0], s[1], s[2] - kernelHeight + 1, s[3] - kernelWidth + 1 },
            Ints("kernel_shape", kernelHeight, kernelWidth), Ints("strides", 1, 1), Ints("pads", 0, 0, 0, 0));
    }

    /// <summary>Average pooling with a k x k window, stride 1, padding k / 2 that does not count (PyTorch's <c>avg_pool2d(x, k, 1, k / 2, count_include_pad: false)</c>).</summary>
    public string AveragePoolSame(string scope, string x, long kernel)
    {
        long pad = kernel / 2;
        return Op(scope, "AveragePool", new[] { x }, Shape(x),
            Ints("kernel_shape", kernel, kernel), Ints("strides", 1, 1), Ints("pads", pad, pad, pad, pad), Int("count_include_pad", 0));
    }

    /// <summary>Reflection padding of an N x C x H x W tensor: <paramref name="top"/>/<paramref name="bottom"/> rows and <paramref name="left"/>/<paramref name="right"/> columns (PyTorch's <c>pad(..., Reflect)</c>).</summary>
    public string PadReflect(string scope, string x, long top, long left, long bottom, long right)
    {
        var s = Shape(x);
        return Op(scope, "Pad", new[] { x, Int64(0, 0, top, left, 0, 0, bottom, right) }, new[] { s[0], s[1], s[2] + top + bottom, s[3] + left + right }, Str("mode", "reflect"));
    }

    /// <summary>Bilinear resize of an N x C x H x W tensor to <paramref name="height"/> x <paramref name="width"/> with half-pixel centres (PyTorch's <c>interpolate(mode: bilinear, align_corners: false)</c>).</summary>
    public string ResizeBilinearHalfPixel(string scope, string x, long height, long width) => Resize(scope, x, height, width, "half_pixel");

    /// <summary>The mean of the <paramref name="k"/> largest values of each row of an N x M tensor (TopK, then ReduceMean): N values.</summary>
    public string TopKMean(string scope, string x, long k)
    {
        var s = Shape(x);
        var values = Unique($"{scope}/TopK");
        var indices = Unique($"{scope}/TopK_indices");
        var node = NewNode("TopK", values, new[] { x, Int64(k) }, new[] { values, indices });
        node.Attribute.Add(new[] { Int("axis", -1), Int("largest", 1), Int("sorted", 0) });
        graph.Node.Add(node);
        shapes[values] = new[] { s[0], k };
        shapes[indices] = new[] { s[0], k };
        return Reduce(scope, "ReduceMean", values, new long[] { 1 }, keepDims: false);
    }

    /// <summary>Mean over the spatial dimensions, keeping them (N x C x 1 x 1).</summary>
    public string GlobalAveragePool(string scope, string x)
    {
        var s = Shape(x);
        return Op(scope, "GlobalAveragePool", new[] { x }, new[] { s[0], s[1], 1L, 1L });
    }

    /// <summary>Bilinear resize of an N x C x H x W tensor to <paramref name="height"/> x <paramref name="width"/> with align_corners = true (PyTorch's <c>UpsamplingBilinear2d</c>).</summary>
    public string ResizeBilinearAlignCorners(string scope, string x, long height, long width) => Resize(scope, x, height, width, "align_corners");

    private string Resize(string scope, string x, long height, long width, string coordinates)
    {
        var s = Shape(x);
        // Resize (opset 17) wants the sizes of every axis; the batch is dynamic, so they are Shape(x)[0:2] ++ [h, w].
        var shape = Op(scope, "Shape", new[] { x }, new long[] { 4 });
        var leading = Op(scope, "Slice", new[] { shape, Int64(0), Int64(2), Int64(0) }, new long[] { 2 });
        var sizes = Op(scope, "Concat", new[] { leading, Int64(height, width) }, new long[] { 4 }, Int("axis", 0));
        return Op(scope, "Resize", new[] { x, string.Empty, string.Empty, sizes }, new[] { s[0], s[1], height, width },
            Str("mode", "linear"), Str("coordinate_transformation_mode", coordinates));
    }

    /// <summary>Concatenation along <paramref name="axis"/>.</summary>
    public string Concat(string scope, IReadOnlyList<string> xs, int axis)
    {
        var shape = (long[])Shape(xs[0]).Clone();
        shape[axis] = xs.Sum(x => Shape(x)[axis]);
        return Op(scope, "Concat", xs.ToArray(), shape, Int("axis", axis));
    }

    /// <summary>Elements of <paramref name="x"/> along <paramref name="axis"/> in the order of <paramref name="indices"/>.</summary>
    public string Gather(string scope, string x, long[] indices, int axis)
    {
        var shape = (long[])Shape(x).Clone();
        shape[axis] = indices.Length;
        return Op(scope, "Gather", new[] { x, Int64(indices) }, shape, Int("axis", axis));
    }

    /// <summary>Rows of <paramref name="x"/> (along axis 0) chosen by the int64 values of <paramref name="indices"/> (a 1-D value).</summary>
    public string GatherRows(string scope, string x, string indices)
    {
        var shape = (long[])Shape(x).Clone();
        shape[0] = Shape(indices)[0];
        return Op(scope, "Gather", new[] { x, indices }, shape, Int("axis", 0));
    }

    /// <summary>Matrix product with NumPy broadcasting of the leading dimensions.</summary>
    public string MatMul(string scope, string a, string b)
    {
        var sa = Shape(a);
        var sb = Shape(b);
        int rank = Math.Max(sa.Length, sb.Length);
        var shape = new long[rank];
        for (int i = 0; i < rank - 2; i++)
        {
            long da = i - (rank - sa.Length) >= 0 ? sa[i - (rank - sa.Length)] : 1;
            long db = i - (rank - sb.Length) >= 0 ? sb[i - (rank - sb.Length)] : 1;
            shape[i] = Broadcast(da, db);
        }

        shape[rank - 2] = sa[^2];
        shape[rank - 1] = sb[^1];
        return Op(scope, "MatMul", new[] { a, b }, shape);
    }

    /// <summary>a + b (broadcasting).</summary>
    public string Add(string scope, string a, string b) => Binary(scope, "Add", a, b);

    /// <summary>The operator domain of ONNX Runtime's contrib operators (<see cref="DynamicQuantizeMatMul"/>).</summary>
    public const string MicrosoftDomain = "com.microsoft";

    /// <summary>The largest magnitude of the int8 weights of <see cref="DynamicQuantizeMatMul"/>: 7 bits, so that two u8 x s8 products summed in 16 bits (AVX2's vpmaddubsw) never saturate.</summary>
    public const int QuantizedWeightLimit = 63;

    /// <summary>
    /// x·W + b as ONNX Runtime's <c>com.microsoft.DynamicQuantizeMatMul</c>: <paramref name="weight"/> (in x out, float)
    /// stored as int8 with one symmetric scale per output column (max |w| / <see cref="QuantizedWeightLimit"/>, zero point 0),
    /// <paramref name="x"/> quantized to uint8 per tensor by the runtime.
    /// </summary>
    public string DynamicQuantizeMatMul(string scope, string x, Tensor weight, Tensor? bias)
    {
        var w = Values(weight);
        long rows = weight.shape[0], cols = weight.shape[1];
        var scales = new float[cols];
        for (long i = 0; i < rows; i++)
        {
            for (long j = 0; j < cols; j++)
            {
                scales[j] = Math.Max(scales[j], Math.Abs(w[(i * cols) + j]));
            }
        }

        for (long j = 0; j < cols; j++)
        {
            scales[j] = scales[j] > 0 ? scales[j] / QuantizedWeightLimit : 1f;
        }

        var q = new byte[w.LongLength];
        for (long i = 0; i < rows; i++)
        {
            for (long j = 0; j < cols; j++)
            {
                q[(i * cols) + j] = unchecked((byte)(sbyte)Math.Clamp(Math.Round(w[(i * cols) + j] / scales[j], MidpointRounding.ToEven), -QuantizedWeightLimit, QuantizedWeightLimit));
            }
        }

        var inputs = new List<string>
        {
            x,
            AddInitializer($"{scope}.weight_int8", TensorProto.Types.DataType.Int8, new[] { rows, cols }, q),
            Initializer($"{scope}.weight_scale", scales, new[] { cols }),
            AddInitializer($"{scope}.weight_zero_point", TensorProto.Types.DataType.Int8, new[] { cols }, new byte[cols]),
        };
        if (bias is not null)
        {
            inputs.Add(Initializer($"{scope}.bias", bias));
        }

        var shape = (long[])Shape(x).Clone();
        shape[^1] = cols;
        return OpIn(MicrosoftDomain, scope, "DynamicQuantizeMatMul", inputs.ToArray(), shape);
    }

    /// <summary>Whether a node of the graph uses <paramref name="domain"/> (its opset must then be imported).</summary>
    public bool UsesDomain(string domain) => graph.Node.Any(n => n.Domain == domain);

    /// <summary>a − b (broadcasting).</summary>
    public string Sub(string scope, string a, string b) => Binary(scope, "Sub", a, b);

    /// <summary>a · b (broadcasting).</summary>
    public string Mul(string scope, string a, string b) => Binary(scope, "Mul", a, b);

    /// <summary>a / b (broadcasting).</summary>
    public string Div(string scope, string a, string b) => Binary(scope, "Div", a, b);

    /// <summary>An element-wise unary operator (Relu, Sigmoid, Sqrt, Erf, ...).</summary>
    public string Unary(string scope, string op, string x) => Op(scope, op, new[] { x }, Shape(x));

    /// <summary>SiLU (swish): x · sigmoid(x).</summary>
    public string Silu(string scope, string x) => Mul(scope, x, Unary(scope, "Sigmoid", x));

    /// <summary>Reshape to <paramref name="target"/> (ONNX's rules: 0 copies the input's dimension, −1 is inferred).</summary>
    public string Reshape(string scope, string x, long[] target)
    {
        var s = Shape(x);
        var shape = new long[target.Length];
        int inferred = -1;
        for (int i = 0; i < target.Length; i++)
        {
            shape[i] = target[i] == 0 ? s[i] : target[i];
            if (target[i] == -1)
            {
                inferred = i;
            }
        }

        if (inferred >= 0)
        {
            // With a dynamic batch the inferred dimension is the batch (every call site is written so).
            shape[inferred] = s.Contains(Batch) ? Batch : s.Aggregate(1L, (a, d) => a * d) / shape.Where((_, i) => i != inferred).Aggregate(1L, (a, d) => a * d);
        }

        return Op(scope, "Reshape", new[] { x, Int64(target) }, shape);
    }

    /// <summary>Permutes the dimensions.</summary>
    public string Transpose(string scope, string x, params long[] perm)
    {
        var s = Shape(x);
        return Op(scope, "Transpose", new[] { x }, perm.Select(p => s[p]).ToArray(), Ints("perm", perm));
    }

    /// <summary>Softmax along the last axis.</summary>
    public string Softmax(string scope, string x) => Op(scope, "Softmax", new[] { x }, Shape(x), Int("axis", -1));

    /// <summary>Layer normalisation over the last axis (LayerNormalization, opset 17).</summary>
    public string LayerNormalization(string scope, string x, string scale, string bias, double epsilon) =>
        Op(scope, "LayerNormalization", new[] { x, scale, bias }, Shape(x), Int("axis", -1), Float("epsilon", (float)epsilon));

    /// <summary>Sum over <paramref name="axes"/>, keeping them (ReduceSum takes its axes as an input since opset 13).</summary>
    public string ReduceSumKeepDims(string scope, string x, params long[] axes)
    {
        var shape = (long[])Shape(x).Clone();
        foreach (var a in axes)
        {
            shape[a] = 1;
        }

        return Op(scope, "ReduceSum", new[] { x, Int64(axes) }, shape, Int("keepdims", 1));
    }

    /// <summary>ReduceMax or ReduceMean over <paramref name="axes"/> (an attribute up to opset 17).</summary>
    public string Reduce(string scope, string op, string x, long[] axes, bool keepDims)
    {
        var s = Shape(x);
        var shape = keepDims
            ? s.Select((d, i) => axes.Contains(i) ? 1 : d).ToArray()
            : s.Where((_, i) => !axes.Contains(i)).ToArray();
        return Op(scope, op, new[] { x }, shape, Ints("axes", axes), Int("keepdims", keepDims ? 1 : 0));
    }

    // ---- Plumbing. ----

    private string Binary(string scope, string op, string a, string b)
    {
        var sa = Shape(a);
        var sb = Shape(b);
        int rank = Math.Max(sa.Length, sb.Length);
        var shape = new long[rank];
        for (int i = 0; i < rank; i++)
        {
            long da = i - (rank - sa.Length) >= 0 ? sa[i - (rank - sa.Length)] : 1;
            long db = i - (rank - sb.Length) >= 0 ? sb[i - (rank - sb.Length)] : 1;
            shape[i] = Broadcast(da, db);
        }

        return Op(scope, op, new[] { a, b }, shape);
    }

    private static long Broadcast(long a, long b) =>
        a == b ? a
        : a == 1 ? b
        : b == 1 ? a
        : a == Batch || b == Batch ? Batch
        : throw new InvalidOperationException($"ONNX export: dimensions {a} and {b} do not broadcast.");

    private string Op(string scope, string op, string[] inputs, long[] shape, params AttributeProto[] attributes) =>
        OpIn(string.Empty, scope, op, inputs, shape, attributes);

    /// <summary>A node of operator <paramref name="op"/> in <paramref name="domain"/> ("" for the standard ONNX operators).</summary>
    private string OpIn(string domain, string scope, string op, string[] inputs, long[] shape, params AttributeProto[] attributes)
    {
        var output = Unique($"{scope}/{op}");
        var node = NewNode(op, output, inputs, new[] { output });
        node.Domain = domain;
        node.Attribute.Add(attributes);
        graph.Node.Add(node);
        shapes[output] = shape;
        return output;
    }

    private static NodeProto NewNode(string op, string name, IEnumerable<string> inputs, IEnumerable<string> outputs)
    {
        var node = new NodeProto { OpType = op, Name = name };
        node.Input.Add(inputs);
        node.Output.Add(outputs);
        return node;
    }

    private string AddInitializer(string name, TensorProto.Types.DataType type, long[] shape, byte[] bytes)
    {
        var unique = Unique(name);
        var proto = new TensorProto { Name = unique, DataType = (int)type, RawData = ByteString.CopyFrom(bytes) };
        proto.Dims.Add(shape);
        graph.Initializer.Add(proto);
        shapes[unique] = shape;
        return unique;
    }

    private string Unique(string name)
    {
        var candidate = name;
        for (int i = 1; !names.Add(candidate); i++)
        {
            candidate = $"{name}_{i}";
        }

        return candidate;
    }

    private void Claim(string name)
    {
        if (!names.Add(name))
        {
            throw new InvalidOperationException($"ONNX export: the name '{name}' is already used.");
        }
    }

    private static ValueInfoProto ValueInfo(string name, long[] shape, string batchName, TensorProto.Types.DataType type = TensorProto.Types.DataType.Float)
    {
        var tensorShape = new TensorShapeProto();
        foreach (var d in shape)
        {
            tensorShape.Dim.Add(d == Batch ? new TensorShapeProto.Types.Dimension { DimParam = batchName } : new TensorShapeProto.Types.Dimension { DimValue = d });
        }

        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = tensorShape } },
        };
    }

    private static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    private static AttributeProto Float(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    private static AttributeProto Str(string name, string value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };

    private static AttributeProto Ints(string name, params long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.Add(values);
        return a;
    }
}
