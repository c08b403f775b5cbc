using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;
using UniAD.Core.Files;

namespace UniAD.Core.Weights;

/// <summary>
/// Reads and writes the safetensors format (an 8-byte little-endian header length, a JSON header with
/// each tensor's dtype, shape and byte range plus an optional <c>__metadata__</c> string map, then the raw
/// little-endian data) including its metadata, which this library uses to keep a model's description
/// next to its weights in one standard file.
/// </summary>
public static class SafetensorsFile
{
    private const long MaxHeaderBytes = 100L * 1024 * 1024;

    private static readonly Dictionary<ScalarType, string> Names = new()
    {
        [ScalarType.Float32] = "F32", [ScalarType.Float64] = "F64", [ScalarType.Float16] = "F16", [ScalarType.BFloat16] = "BF16",
        [ScalarType.Int64] = "I64", [ScalarType.Int32] = "I32", [ScalarType.Int16] = "I16", [ScalarType.Int8] = "I8",
        [ScalarType.Byte] = "U8", [ScalarType.Bool] = "BOOL",
    };

    private static readonly Dictionary<string, ScalarType> Types = Names.ToDictionary(kv => kv.Value, kv => kv.Key, StringComparer.Ordinal);

    /// <summary>Bytes per element of each stored dtype name.</summary>
    private static readonly Dictionary<string, long> ElementBytes = new(StringComparer.Ordinal)
    {
        ["F32"] = 4, ["F64"] = 8, ["F16"] = 2, ["BF16"] = 2, ["I64"] = 8, ["I32"] = 4, ["I16"] = 2, ["I8"] = 1, ["U8"] = 1, ["BOOL"] = 1,
    };

    /// <summary>Most dimensions a stored tensor may have (libtorch's own limit is 64).</summary>
    private const int MaxDimensions = 16;

    /// <summary>Writes tensors and metadata atomically (a temporary file in the same folder replaces <paramref name="path"/>).</summary>
    /// <exception cref="ArgumentException">A tensor has a dtype safetensors cannot store, or the path is empty.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    public static void Write(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var full = Path.GetFullPath(path);
        using var scope = NewDisposeScope();
        var header = new JsonObject();
        if (metadata is { Count: > 0 })
        {
            var meta = new JsonObject();
            foreach (var (k, v) in metadata)
            {
                meta[k] = v;
            }

            header["__metadata__"] = meta;
        }

        var data = new List<Tensor>();
        long offset = 0;
        foreach (var (name, tensor) in tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (!Names.TryGetValue(tensor.dtype, out var dtype))
            {
                throw new ArgumentException($"Tensor '{name}' has dtype {tensor.dtype}, which safetensors cannot store.", nameof(tensors));
            }

            var cpu = tensor.detach().cpu().contiguous();
            long size = cpu.numel() * cpu.ElementSize;
            header[name] = new JsonObject
            {
                ["dtype"] = dtype,
                ["shape"] = new JsonArray(cpu.shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + size),
            };
            data.Add(cpu);
            offset += size;
        }

        var headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padding = (8 - (headerBytes.Length % 8)) % 8; // keeps the data aligned, as the reference writer does
        AtomicFile.Write(full, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(length, headerBytes.Length + padding);
            stream.Write(length);
            stream.Write(headerBytes);
            for (int i = 0; i < padding; i++)
            {
                stream.WriteByte((byte)' ');
            }

            foreach (var t in data)
            {
                stream.Write(t.bytes);
            }
        });
    }

    /// <summary>Reads every tensor (on the CPU) and the metadata.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not valid safetensors (truncated, bad header, ranges outside the data).</exception>
    public static (TensorDictionary Tensors, IReadOnlyDictionary<string, string> Metadata) Read(string path)
    {
        using var stream = Open(path, out var header, out long dataStart);
        var metadata = ReadMetadata(header, path);
        var result = new TensorDictionary { Source = path };
        try
        {
            long dataLength = stream.Length - dataStart;
            foreach (var property in header.EnumerateObject().Where(p => p.Name != "__metadata__"))
            {
                var (dtype, shape, begin, end) = Describe(property, path);
                if (begin < 0 || end < begin || end > dataLength)
                {
                    throw new InvalidDataException($"'{path}': tensor '{property.Name}' claims bytes {begin}..{end} of a {dataLength}-byte data section (truncated file?).");
                }

                var t = empty(shape, dtype: dtype, device: CPU); // filled through .bytes: always on the CPU
                if (t.numel() * t.ElementSize != end - begin)
                {
                    t.Dispose();
                    throw new InvalidDataException($"'{path}': tensor '{property.Name}' has {end - begin} bytes for shape [{string.Join(", ", shape)}] {dtype}.");
                }

                stream.Position = dataStart + begin;
                stream.ReadExactly(t.bytes);
                result.Add(property.Name, t);
            }

            return (result, metadata);
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>Reads only the metadata (the header), without loading tensors.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The header is not valid.</exception>
    public static IReadOnlyDictionary<string, string> ReadMetadata(string path)
    {
        using var stream = Open(path, out var header, out _);
        return ReadMetadata(header, path);
    }

    private static FileStream Open(string path, out JsonElement header, out long dataStart)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Safetensors file '{path}' does not exist.", path);
        }

        var stream = File.OpenRead(path);
        try
        {
            Span<byte> length = stackalloc byte[8];
            if (stream.Read(length) != 8)
            {
                throw new InvalidDataException($"'{path}' is too short to be a safetensors file ({stream.Length} bytes).");
            }

            long headerLength = BinaryPrimitives.ReadInt64LittleEndian(length);
            if (headerLength <= 0 || headerLength > MaxHeaderBytes || headerLength > stream.Length - 8)
            {
                throw new InvalidDataException($"'{path}' is not a safetensors file (header length {headerLength} for a {stream.Length}-byte file).");
            }

            var bytes = new byte[headerLength];
            stream.ReadExactly(bytes);
            try
            {
                header = JsonDocument.Parse(bytes).RootElement.Clone();
            }
            catch (JsonException ex)
            {
                throw new InvalidDataException($"'{path}' has a corrupt safetensors header: {ex.Message}", ex);
            }

            if (header.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"'{path}' has a safetensors header that is not a JSON object.");
            }

            dataStart = 8 + headerLength;
            return stream;
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    private static Dictionary<string, string> ReadMetadata(JsonElement header, string path)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (header.TryGetProperty("__metadata__", out var meta))
        {
            if (meta.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"'{path}': __metadata__ is not an object.");
            }

            foreach (var p in meta.EnumerateObject())
            {
                result[p.Name] = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : throw new InvalidDataException($"'{path}': metadata '{p.Name}' is not a string.");
            }
        }

        return result;
    }

    private static (ScalarType Type, long[] Shape, long Begin, long End) Describe(JsonProperty property, string path)
    {
        try
        {
            var v = property.Value;
            var dtype = v.GetProperty("dtype").GetString() ?? string.Empty;
            if (!Types.TryGetValue(dtype, out var type))
            {
                throw new InvalidDataException($"'{path}': tensor '{property.Name}' has unsupported dtype '{dtype}'.");
            }

            var shape = v.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var offsets = v.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            if (offsets.Length != 2 || shape.Any(d => d < 0))
            {
                throw new InvalidDataException($"'{path}': tensor '{property.Name}' has a bad shape or offsets.");
            }

            // The byte count of the shape, checked against overflow and the offsets before anything is allocated.
            long bytes = ElementBytes[dtype];
            foreach (long d in shape)
            {
                if (d != 0 && bytes > long.MaxValue / d)
                {
                    throw new InvalidDataException($"'{path}': tensor '{property.Name}' has shape [{string.Join(", ", shape)}], whose size overflows 64 bits.");
                }

                bytes *= d;
            }

            if (shape.Length > MaxDimensions || bytes != offsets[1] - offsets[0])
            {
                throw new InvalidDataException($"'{path}': tensor '{property.Name}' has {offsets[1] - offsets[0]} bytes for shape [{string.Join(", ", shape)}] {dtype} ({bytes} expected, at most {MaxDimensions} dimensions).");
            }

            return (type, shape, offsets[0], offsets[1]);
        }
        catch (Exception ex) when (ex is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"'{path}': tensor '{property.Name}' has an incomplete description.", ex);
        }
    }
}
