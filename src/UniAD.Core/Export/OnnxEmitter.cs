using TorchSharp;
using UniAD.Core.Reconstruction;
using static TorchSharp.torch;

namespace UniAD.Core.Export;

/// <summary>
/// Writes the ONNX nodes of one module type. Emitters are looked up by the module's exact type
/// (<see cref="OnnxEmitContext.Emit"/>), so a new module type is supported by adding one emitter to
/// <see cref="OnnxEmitters.All"/>; an unregistered type fails with a <see cref="NotSupportedException"/> naming it.
/// </summary>
internal interface IOnnxEmitter
{
    /// <summary>The module type this emitter handles (exactly; subclasses need their own emitter).</summary>
    Type ModuleType { get; }

    /// <summary>Emits <paramref name="module"/> on <paramref name="inputs"/> and returns the names of its outputs.</summary>
    IReadOnlyList<string> Emit(OnnxEmitContext context, nn.Module module, string scope, IReadOnlyList<string> inputs);
}

/// <summary>An emitter for modules of type <typeparamref name="TModule"/>.</summary>
internal abstract class OnnxEmitter<TModule> : IOnnxEmitter
    where TModule : nn.Module
{
    /// <inheritdoc />
    public Type ModuleType => typeof(TModule);

    /// <inheritdoc />
    public IReadOnlyList<string> Emit(OnnxEmitContext context, nn.Module module, string scope, IReadOnlyList<string> inputs) =>
        Emit(context, (TModule)module, scope, inputs);

    /// <summary>Emits the typed module.</summary>
    protected abstract IReadOnlyList<string> Emit(OnnxEmitContext context, TModule module, string scope, IReadOnlyList<string> inputs);
}

/// <summary>What the emitters share: the graph, the emitter registry and the facts of the export (input size, the reconstruction's options).</summary>
internal sealed class OnnxEmitContext
{
    private readonly Dictionary<Type, IOnnxEmitter> emitters;

    /// <summary>Creates a context over <paramref name="graph"/> with the given emitters.</summary>
    public OnnxEmitContext(OnnxGraph graph, IEnumerable<IOnnxEmitter> emitters, GridSize inputSize, OnnxQuantization quantization = OnnxQuantization.None)
    {
        Graph = graph;
        InputSize = inputSize;
        Quantization = quantization;
        this.emitters = emitters.ToDictionary(e => e.ModuleType);
    }

    /// <summary>The graph being built.</summary>
    public OnnxGraph Graph { get; }

    /// <summary>The fixed input size of the exported model.</summary>
    public GridSize InputSize { get; }

    /// <summary>How the reconstruction's linear layers are written (<see cref="Linear"/>).</summary>
    public OnnxQuantization Quantization { get; }

    /// <summary>
    /// x·W + b for a reconstruction layer (<paramref name="weightT"/>: in x out, the transposed PyTorch weight): float32
    /// MatMul and Add, or with <see cref="OnnxQuantization.DynamicInt8"/> one <c>DynamicQuantizeMatMul</c> with int8 weights.
    /// </summary>
    public string Linear(string scope, string x, Tensor weightT, Tensor? bias)
    {
        var g = Graph;
        if (Quantization == OnnxQuantization.DynamicInt8)
        {
            return g.DynamicQuantizeMatMul(scope, x, weightT, bias);
        }

        var y = g.MatMul(scope, x, g.Initializer($"{scope}.weight_t", weightT));
        return bias is null ? y : g.Add(scope, y, g.Initializer($"{scope}.bias", bias));
    }

    /// <summary>
    /// The options of the reconstruction network being emitted (set by its emitter for its layers, whose
    /// activation, norm placement and masks come from them), or null outside it.
    /// </summary>
    public ReconstructionOptions? Reconstruction { get; set; }

    /// <summary>Emits <paramref name="module"/> with the emitter of its exact type.</summary>
    /// <exception cref="NotSupportedException">No emitter handles the module's type.</exception>
    public IReadOnlyList<string> Emit(nn.Module module, string scope, params string[] inputs)
    {
        ArgumentNullException.ThrowIfNull(module);
        var type = module.GetType();
        if (!emitters.TryGetValue(type, out var emitter))
        {
            throw new NotSupportedException(
                $"ONNX export does not support the module type '{type.FullName}' (at '{(scope.Length == 0 ? "the model" : scope)}'). " +
                $"Supported: {string.Join(", ", emitters.Keys.Select(t => t.Name).Order(StringComparer.Ordinal))}.");
        }

        return emitter.Emit(this, module, scope, inputs);
    }

    /// <summary>The reconstruction options, which a transformer layer needs.</summary>
    /// <exception cref="NotSupportedException">A transformer part is exported outside a reconstruction network.</exception>
    public ReconstructionOptions RequireReconstruction(string scope) => Reconstruction ??
        throw new NotSupportedException($"ONNX export: '{scope}' can only be exported as part of a {nameof(UniADReconstruction)}.");

    /// <summary>A scope below <paramref name="scope"/>.</summary>
    public static string Child(string scope, string name) => scope.Length == 0 ? name : $"{scope}.{name}";
}

/// <summary>Typed access to a module's registered children and parameters by their (state-dict) names.</summary>
internal static class ModuleParts
{
    /// <summary>The child module <paramref name="name"/> of type <typeparamref name="T"/>.</summary>
    /// <exception cref="InvalidOperationException">No such child, or of another type.</exception>
    public static T Child<T>(nn.Module module, string name)
        where T : nn.Module =>
        TryChild<T>(module, name) ?? throw new InvalidOperationException($"ONNX export: {module.GetType().Name} has no child '{name}' of type {typeof(T).Name}.");

    /// <summary>The child module <paramref name="name"/> of type <typeparamref name="T"/>, or null when there is none.</summary>
    public static T? TryChild<T>(nn.Module module, string name)
        where T : nn.Module
    {
        foreach (var (childName, child) in module.named_children())
        {
            if (childName == name)
            {
                return child as T ?? throw new InvalidOperationException($"ONNX export: {module.GetType().Name}.{name} is a {child.GetType().Name}, not a {typeof(T).Name}.");
            }
        }

        return null;
    }

    /// <summary>The children of a list-like module (ModuleList, Sequential) in order.</summary>
    public static IReadOnlyList<nn.Module> Children(nn.Module module) => module.named_children().Select(c => c.module).ToArray();

    /// <summary>The module's own parameter or buffer <paramref name="name"/>.</summary>
    /// <exception cref="InvalidOperationException">No such tensor.</exception>
    public static Tensor Tensor(nn.Module module, string name)
    {
        foreach (var (n, p) in module.named_parameters(recurse: false))
        {
            if (n == name)
            {
                return p;
            }
        }

        foreach (var (n, b) in module.named_buffers(recurse: false))
        {
            if (n == name)
            {
                return b;
            }
        }

        throw new InvalidOperationException($"ONNX export: {module.GetType().Name} has no parameter or buffer '{name}'.");
    }
}
