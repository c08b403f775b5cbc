using Onnx;
using static TorchSharp.torch;

namespace UniAD.Core.Weights;

/// <summary>
/// A read-only view of an ONNX model's graph for importing weights: nodes by the tensor they produce,
/// consumers of each tensor, and float initializers as tensors. Parsing uses the OnnxSharp package's
/// protobuf types; every defect of the file becomes an <see cref="InvalidDataException"/> naming it.
/// </summary>
internal sealed class OnnxFile
{
    /// <summary>The largest initializer accepted, in elements.</summary>
    internal const long MaxInitializerElements = 1L << 28;

    private readonly Dictionary<string, NodeProto> producers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<NodeProto>> consumers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, TensorProto> initializers = new(StringComparer.Ordinal);

    private OnnxFile(string path, ModelProto model)
    {
        Path = path;
        Model = model;
        var graph = model.Graph ?? throw new InvalidDataException($"'{path}' is an ONNX model without a graph.");
        foreach (var init in graph.Initializer)
        {
            initializers[init.Name] = init;
        }

        foreach (var node in graph.Node)
        {
            foreach (var output in node.Output)
            {
                producers[output] = node;
            }

            foreach (var input in node.Input.Where(i => i.Length > 0))
            {
                if (!consumers.TryGetValue(input, out var list))
                {
                    consumers[input] = list = new List<NodeProto>();
                }

                list.Add(node);
            }
        }
    }

    /// <summary>The file's path (for messages).</summary>
    public string Path { get; }

    /// <summary>The parsed model.</summary>
    public ModelProto Model { get; }

    /// <summary>The graph's inputs that are not initializers (the real inputs).</summary>
    public IReadOnlyList<string> Inputs => Model.Graph.Input.Select(i => i.Name).Where(n => !initializers.ContainsKey(n)).ToArray();

    /// <summary>Reads and parses <paramref name="path"/>.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not an ONNX model.</exception>
    public static OnnxFile Read(string path) => new(path, Export.OnnxModelFile.Parse(path));

    /// <summary>The node that produces <paramref name="tensor"/>, or null for graph inputs and initializers.</summary>
    public NodeProto? Producer(string tensor) => producers.GetValueOrDefault(tensor);

    /// <summary>The nodes that read <paramref name="tensor"/>.</summary>
    public IReadOnlyList<NodeProto> Consumers(string tensor) =>
        consumers.TryGetValue(tensor, out var list) ? list : Array.Empty<NodeProto>();

    /// <summary>True when <paramref name="name"/> is an initializer.</summary>
    public bool IsInitializer(string name) => initializers.ContainsKey(name);

    /// <summary>The dimensions of initializer <paramref name="name"/>.</summary>
    /// <exception cref="InvalidDataException">No such initializer.</exception>
    public long[] Dims(string name) => Initializer(name).Dims.ToArray();

    /// <summary>Initializer <paramref name="name"/> as a float32 CPU tensor of its own shape.</summary>
    /// <exception cref="InvalidDataException">No such initializer, not float32, or its data does not match its shape.</exception>
    public Tensor FloatTensor(string name)
    {
        var init = Initializer(name);
        if (init.DataType != (int)TensorProto.Types.DataType.Float)
        {
            throw new InvalidDataException($"'{Path}': initializer '{name}' has data type {init.DataType}; only float32 (1) is supported.");
        }

        var dims = init.Dims.ToArray();
        long count = 1;
        foreach (var d in dims)
        {
            if (d < 0 || d > MaxInitializerElements || (count *= d) > MaxInitializerElements)
            {
                throw new InvalidDataException($"'{Path}': initializer '{name}' has an impossible shape [{string.Join(", ", dims)}].");
            }
        }

        float[] values;
        if (init.FloatData.Count > 0)
        {
            values = init.FloatData.ToArray();
        }
        else if (!init.RawData.IsEmpty)
        {
            var raw = init.RawData.Span;
            if (raw.Length != count * sizeof(float))
            {
                throw new InvalidDataException($"'{Path}': initializer '{name}' holds {raw.Length} bytes; its shape [{string.Join(", ", dims)}] needs {count * sizeof(float)}.");
            }

            values = new float[count];
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(raw.Slice(i * sizeof(float), sizeof(float)));
            }
        }
        else
        {
            values = Array.Empty<float>();
        }

        if (values.LongLength != count)
        {
            throw new InvalidDataException($"'{Path}': initializer '{name}' holds {values.Length} values; its shape [{string.Join(", ", dims)}] needs {count}.");
        }

        return tensor(values, dims, ScalarType.Float32, device: CPU);
    }

    /// <summary>An integer-list attribute of <paramref name="node"/>, or <paramref name="fallback"/> when absent.</summary>
    public static long[] Ints(NodeProto node, string attribute, long[] fallback) =>
        node.Attribute.FirstOrDefault(a => a.Name == attribute) is { } a ? a.Ints.ToArray() : fallback;

    /// <summary>An integer attribute of <paramref name="node"/>, or <paramref name="fallback"/> when absent.</summary>
    public static long Int(NodeProto node, string attribute, long fallback) =>
        node.Attribute.FirstOrDefault(a => a.Name == attribute) is { } a ? a.I : fallback;

    /// <summary>A float attribute of <paramref name="node"/>, or <paramref name="fallback"/> when absent.</summary>
    public static float Float(NodeProto node, string attribute, float fallback) =>
        node.Attribute.FirstOrDefault(a => a.Name == attribute) is { } a ? a.F : fallback;

    /// <summary>How a node is named in messages: its name (or first output) and operator.</summary>
    public static string Describe(NodeProto node) =>
        $"'{(node.Name.Length > 0 ? node.Name : node.Output.FirstOrDefault() ?? "?")}' ({node.OpType})";

    private TensorProto Initializer(string name) =>
        initializers.TryGetValue(name, out var init)
            ? init
            : throw new InvalidDataException($"'{Path}': '{name}' is not an initializer of the graph.");
}
