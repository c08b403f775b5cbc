using System.Buffers.Binary;
using System.Text;
using UniAD.Core.Weights;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Weights;

public sealed class SafetensorsFileTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("uniad-st-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Fact]
    public void Round_trip_keeps_values_dtypes_shapes_and_metadata()
    {
        var path = Path.Combine(dir, "m.safetensors");
        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>
        {
            ["f32"] = randn(3, 4),
            ["f64"] = tensor(new[] { 1.5, -2.25 }),
            ["i64"] = tensor(new long[] { long.MaxValue, -7 }),
            ["u8"] = tensor(new byte[] { 0, 255, 9 }),
            ["bool"] = tensor(new[] { true, false }),
            ["scalar"] = tensor(3.25f),
            ["strided"] = randn(4, 3).t(),
        };
        SafetensorsFile.Write(path, tensors, new Dictionary<string, string> { ["format"] = "test", ["json"] = "{\"a\": 1}" });
        Assert.Empty(Directory.GetFiles(dir, "*.tmp"));

        var (read, metadata) = SafetensorsFile.Read(path);
        using (read)
        {
            Assert.Equal("test", metadata["format"]);
            Assert.Equal("{\"a\": 1}", metadata["json"]);
            Assert.Equal(tensors.Keys.Order(StringComparer.Ordinal), read.Keys.Order(StringComparer.Ordinal));
            foreach (var (k, v) in tensors)
            {
                Assert.Equal(v.dtype, read[k].dtype);
                Assert.Equal(v.shape, read[k].shape);
                Assert.True(v.eq(read[k]).all().item<bool>(), k);
            }
        }

        Assert.Equal("test", SafetensorsFile.ReadMetadata(path)["format"]);

        // The data section starts 8-byte aligned, and the header length is little-endian.
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(0, (8 + BinaryPrimitives.ReadInt64LittleEndian(bytes)) % 8);
    }

    [Fact]
    public void Broken_files_give_errors_naming_the_path()
    {
        var good = Path.Combine(dir, "good.safetensors");
        using (var t = randn(10, 10))
        {
            SafetensorsFile.Write(good, new Dictionary<string, Tensor> { ["w"] = t });
        }

        var bytes = File.ReadAllBytes(good);
        var truncated = Path.Combine(dir, "truncated.safetensors");
        File.WriteAllBytes(truncated, bytes[..^40]);
        Assert.Contains(truncated, Assert.Throws<InvalidDataException>(() => SafetensorsFile.Read(truncated)).Message);

        var tiny = Path.Combine(dir, "tiny.safetensors");
        File.WriteAllBytes(tiny, new byte[] { 1, 2, 3 });
        Assert.Contains(tiny, Assert.Throws<InvalidDataException>(() => SafetensorsFile.Read(tiny)).Message);

        var garbage = Path.Combine(dir, "garbage.safetensors");
        var header = Encoding.UTF8.GetBytes("{ not json }");
        var data = new byte[8 + header.Length];
        BinaryPrimitives.WriteInt64LittleEndian(data, header.Length);
        header.CopyTo(data, 8);
        File.WriteAllBytes(garbage, data);
        Assert.Contains("corrupt", Assert.Throws<InvalidDataException>(() => SafetensorsFile.Read(garbage)).Message);

        var missing = Path.Combine(dir, "missing.safetensors");
        Assert.Throws<FileNotFoundException>(() => SafetensorsFile.Read(missing));
        Assert.Throws<DirectoryNotFoundException>(() => SafetensorsFile.Write(Path.Combine(dir, "no", "x.safetensors"), new Dictionary<string, Tensor>()));
    }

    [Fact]
    public void Reads_the_reference_fixture_files()
    {
        using var t = StateDict.ReadSafetensors(Path.Combine(Fixtures.EmbeddedRoot, "reconstruction", "small_learned", "tensors.safetensors"));
        Assert.Equal(new long[] { 2, 40, 6, 8 }, t["feature_align"].shape);
        Assert.Equal(ScalarType.Float32, t["feature_rec"].dtype);
    }
}
