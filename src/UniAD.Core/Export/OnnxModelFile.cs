using Google.Protobuf;
using Onnx;

// Free of TorchSharp types, like OnnxModelInfo.cs: a TorchSharp-free scorer reads files the same way.
namespace UniAD.Core.Export;

/// <summary>Reads an ONNX file into the OnnxSharp package's protobuf types; every defect of the file becomes an <see cref="InvalidDataException"/> naming it.</summary>
internal static class OnnxModelFile
{
    /// <summary>Files larger than this are refused before parsing (protobuf's own limit is 2 GiB).</summary>
    internal const long MaxBytes = 1L << 31;

    /// <summary>Reads and parses <paramref name="path"/>, which must hold a graph with nodes.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not an ONNX model.</exception>
    public static ModelProto Parse(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"ONNX file '{path}' does not exist.", path);
        }

        var length = new FileInfo(path).Length;
        if (length == 0 || length > MaxBytes)
        {
            throw new InvalidDataException($"'{path}' is not an ONNX model: its size is {length} bytes.");
        }

        ModelProto model;
        try
        {
            using var stream = File.OpenRead(path);
            model = ModelProto.Parser.ParseFrom(stream);
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw new InvalidDataException($"'{path}' is not an ONNX model (protobuf: {ex.Message}).", ex);
        }

        if (model.Graph is null || model.Graph.Node.Count == 0 || model.IrVersion <= 0)
        {
            throw new InvalidDataException($"'{path}' is not an ONNX model (no IR version or no graph nodes).");
        }

        return model;
    }
}
