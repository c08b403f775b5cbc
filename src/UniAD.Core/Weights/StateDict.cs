using System.Collections;
using TorchSharp.PyBridge;
using UniAD.Core.Backbones;
using static TorchSharp.torch;

namespace UniAD.Core.Weights;

/// <summary>The outcome of <see cref="StateDict.Load"/>.</summary>
/// <param name="Loaded">Keys copied into the module.</param>
/// <param name="Ignored">Keys of the state dict the module does not have and that were allowed to be skipped.</param>
public sealed record StateDictLoadReport(IReadOnlyList<string> Loaded, IReadOnlyList<string> Ignored);

/// <summary>Reads weight files (PyTorch <c>.pth</c> zip/pickle, <c>.safetensors</c>) and loads state dicts into modules with strict, readable checks.</summary>
public static class StateDict
{
    /// <summary>Reads a weights file, choosing the format by content: safetensors, or a PyTorch zip checkpoint.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is neither format, or is truncated or corrupt.</exception>
    public static TensorDictionary Read(string path)
    {
        RequireFile(path);
        return IsZip(path) ? ReadPyTorch(path) : ReadSafetensors(path);
    }

    /// <summary>
    /// Reads a file written by PyTorch's <c>torch.save</c>: a bare state dict, or a checkpoint dict whose
    /// <paramref name="entry"/> (default <c>state_dict</c>) holds it. Non-tensor values are skipped.
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a PyTorch checkpoint, or is truncated or corrupt.</exception>
    public static TensorDictionary ReadPyTorch(string path, string entry = "state_dict")
    {
        RequireFile(path);
        Hashtable table;
        try
        {
            using var scope = NewDisposeScope();
            table = PyTorchUnpickler.UnpickleStateDict(path);
            foreach (var value in Flatten(table))
            {
                value.DetachFromDisposeScope();
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            throw new InvalidDataException($"'{path}' is not a readable PyTorch checkpoint ({ex.GetType().Name}: {ex.Message}).", ex);
        }

        if (table[entry] is Hashtable inner)
        {
            DisposeTensors(table, except: inner);
            table = inner;
        }

        var result = new TensorDictionary { Source = path };
        foreach (DictionaryEntry item in table)
        {
            if (item.Key is string key && item.Value is Tensor t)
            {
                result.Add(key, t);
            }
            else if (item.Value is IDisposable d)
            {
                d.Dispose();
            }
        }

        if (result.Count == 0)
        {
            throw new InvalidDataException($"'{path}' holds no tensors (neither a state dict nor a checkpoint with a '{entry}' entry).");
        }

        return result;
    }

    /// <summary>Reads a <c>.safetensors</c> file (tensors only; see <see cref="SafetensorsFile"/> for its metadata).</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not valid safetensors.</exception>
    public static TensorDictionary ReadSafetensors(string path) => SafetensorsFile.Read(path).Tensors;

    /// <summary>
    /// Writes tensors to a <c>.safetensors</c> file atomically: the data goes to a temporary file in the
    /// same folder, which then replaces <paramref name="path"/>, so a failure never leaves a partial file.
    /// </summary>
    /// <exception cref="ArgumentException">The path is empty.</exception>
    /// <exception cref="DirectoryNotFoundException">The target folder does not exist.</exception>
    public static void SaveSafetensors(IReadOnlyDictionary<string, Tensor> tensors, string path) => SafetensorsFile.Write(path, tensors);

    /// <summary>
    /// Copies <paramref name="source"/> into <paramref name="module"/>'s parameters and buffers. Every
    /// module key must be present with the same shape; a key the module lacks is an error unless
    /// <paramref name="ignoreUnexpected"/> accepts it. On any mismatch nothing is copied and the
    /// exception lists every offending key.
    /// </summary>
    /// <param name="module">The module to fill.</param>
    /// <param name="source">Name → tensor; names must be the module's own state-dict keys.</param>
    /// <param name="ignoreUnexpected">Accepts keys the module lacks that may be skipped (reported in <see cref="StateDictLoadReport.Ignored"/>).</param>
    /// <param name="allowMissing">Accepts module keys the source may lack; those keep their current values (e.g. BatchNorm's <c>num_batches_tracked</c>).</param>
    /// <exception cref="StateDictMismatchException">Missing, unexpected or wrongly shaped keys.</exception>
    public static StateDictLoadReport Load(nn.Module module, IReadOnlyDictionary<string, Tensor> source, Func<string, bool>? ignoreUnexpected = null, Func<string, bool>? allowMissing = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(source);
        var target = module.state_dict();
        var missing = target.Keys.Where(k => !source.ContainsKey(k) && allowMissing?.Invoke(k) != true).ToList();
        var unexpectedAll = source.Keys.Where(k => !target.ContainsKey(k)).ToList();
        var ignored = unexpectedAll.Where(k => ignoreUnexpected?.Invoke(k) == true).ToList();
        var unexpected = unexpectedAll.Except(ignored).ToList();
        var shapes = target
            .Where(kv => source.TryGetValue(kv.Key, out var s) && !s.shape.SequenceEqual(kv.Value.shape))
            .Select(kv => $"{kv.Key}: expected [{string.Join(", ", kv.Value.shape)}], got [{string.Join(", ", source[kv.Key].shape)}]")
            .ToList();
        if (missing.Count > 0 || unexpected.Count > 0 || shapes.Count > 0)
        {
            throw new StateDictMismatchException(module.GetName(), (source as TensorDictionary)?.Source, missing, unexpected, shapes);
        }

        try
        {
            using var noGrad = no_grad();
            foreach (var (key, t) in target)
            {
                if (source.TryGetValue(key, out var value))
                {
                    t.copy_(value);
                }
            }
        }
        finally
        {
            FusedWeights.Invalidate(module); // tensors derived from the weights, e.g. EfficientNet's BatchNorm-folded ones
        }

        return new StateDictLoadReport(target.Keys.Where(source.ContainsKey).ToList(), ignored);
    }

    private static IEnumerable<Tensor> Flatten(Hashtable table)
    {
        foreach (DictionaryEntry item in table)
        {
            if (item.Value is Tensor t)
            {
                yield return t;
            }
            else if (item.Value is Hashtable inner)
            {
                foreach (var n in Flatten(inner))
                {
                    yield return n;
                }
            }
        }
    }

    private static void DisposeTensors(Hashtable table, Hashtable except)
    {
        foreach (DictionaryEntry item in table)
        {
            if (item.Value is Tensor t)
            {
                t.Dispose();
            }
            else if (item.Value is Hashtable inner && !ReferenceEquals(inner, except))
            {
                DisposeTensors(inner, except);
            }
        }
    }

    private static void RequireFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Weights file '{path}' does not exist.", path);
        }
    }

    private static bool IsZip(string path)
    {
        using var stream = File.OpenRead(path);
        Span<byte> head = stackalloc byte[4];
        return stream.Read(head) == 4 && head[0] == (byte)'P' && head[1] == (byte)'K' && head[2] == 3 && head[3] == 4;
    }
}
