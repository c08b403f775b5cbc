using System.Collections;
using static TorchSharp.torch;

namespace UniAD.Core.Weights;

/// <summary>
/// A name → tensor map read from a weights file. It owns its tensors: dispose it when done.
/// Keys keep the order in which they were added.
/// </summary>
public sealed class TensorDictionary : IReadOnlyDictionary<string, Tensor>, IDisposable
{
    private readonly Dictionary<string, Tensor> tensors = new(StringComparer.Ordinal);
    private readonly List<string> order = new();

    /// <summary>Where the tensors were read from (for messages), or null.</summary>
    public string? Source { get; init; }

    /// <inheritdoc />
    public int Count => tensors.Count;

    /// <inheritdoc />
    public IEnumerable<string> Keys => order;

    /// <inheritdoc />
    public IEnumerable<Tensor> Values => order.Select(k => tensors[k]);

    /// <inheritdoc />
    public Tensor this[string key] => tensors.TryGetValue(key, out var t)
        ? t
        : throw new KeyNotFoundException($"No tensor named '{key}'{(Source is null ? string.Empty : $" in '{Source}'")}.");

    /// <summary>Adds a tensor, taking ownership of it (it is detached from any dispose scope).</summary>
    /// <exception cref="ArgumentException">The name is already present.</exception>
    public void Add(string key, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(tensor);
        if (!tensors.TryAdd(key, tensor))
        {
            throw new ArgumentException($"Duplicate tensor name '{key}'.", nameof(key));
        }

        tensor.DetachFromDisposeScope();
        order.Add(key);
    }

    /// <inheritdoc />
    public bool ContainsKey(string key) => tensors.ContainsKey(key);

    /// <inheritdoc />
    public bool TryGetValue(string key, out Tensor value) => tensors.TryGetValue(key, out value!);

    /// <inheritdoc />
    public IEnumerator<KeyValuePair<string, Tensor>> GetEnumerator() =>
        order.Select(k => new KeyValuePair<string, Tensor>(k, tensors[k])).GetEnumerator();

    /// <inheritdoc />
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in tensors.Values)
        {
            t.Dispose();
        }

        tensors.Clear();
        order.Clear();
    }
}
