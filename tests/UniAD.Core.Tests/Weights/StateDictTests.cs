using TorchSharp;
using UniAD.Core.Reconstruction;
using UniAD.Core.Weights;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Weights;

public sealed class StateDictTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("uniad-sd-").FullName;

    private static readonly ReconstructionOptions Tiny = new()
    {
        InputChannels = 6, FeatureSize = new GridSize(3, 4), HiddenDim = 4, NumHeads = 2,
        NumEncoderLayers = 1, NumDecoderLayers = 1, FeedForwardDim = 8, NeighborSize = null,
    };

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Fact]
    public void Mismatch_lists_missing_unexpected_and_wrongly_shaped_keys_and_copies_nothing()
    {
        using var model = new UniADReconstruction(Tiny);
        var before = model.state_dict()["input_proj.bias"].clone();
        using var source = new TensorDictionary { Source = "test.pth" };
        foreach (var (k, v) in model.state_dict())
        {
            if (k != "output_proj.bias")
            {
                source.Add(k, k == "input_proj.weight" ? zeros(5, 6) : full_like(v, 0.25));
            }
        }

        source.Add("transformer.extra.weight", zeros(1));
        var ex = Assert.Throws<StateDictMismatchException>(() => StateDict.Load(model, source));
        Assert.Equal(new[] { "output_proj.bias" }, ex.Missing);
        Assert.Equal(new[] { "transformer.extra.weight" }, ex.Unexpected);
        Assert.Single(ex.ShapeMismatches);
        Assert.Contains("input_proj.weight: expected [4, 6], got [5, 6]", ex.Message);
        Assert.Contains("output_proj.bias", ex.Message);
        Assert.Contains("transformer.extra.weight", ex.Message);
        Assert.Contains("test.pth", ex.Message);
        Assert.Equal(0f, (model.state_dict()["input_proj.bias"] - before).abs().max().item<float>());
        before.Dispose();
    }

    [Fact]
    public void Ignored_keys_are_reported_and_values_copied()
    {
        using var model = new UniADReconstruction(Tiny);
        using var source = new TensorDictionary();
        foreach (var (k, v) in model.state_dict())
        {
            source.Add(k, full_like(v, 0.5));
        }

        source.Add("head.fc.weight", zeros(2));
        var report = StateDict.Load(model, source, k => k.StartsWith("head.", StringComparison.Ordinal));
        Assert.Equal(new[] { "head.fc.weight" }, report.Ignored);
        Assert.Equal(model.state_dict().Count, report.Loaded.Count);
        Assert.All(model.state_dict().Values, t => Assert.Equal(0.5f, t.mean().item<float>(), 6));
    }

    [Fact]
    public void Safetensors_round_trip_reproduces_the_model()
    {
        using var model = new UniADReconstruction(Tiny);
        var path = Path.Combine(dir, "model.safetensors");
        StateDict.SaveSafetensors(model.state_dict(), path);
        Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
        using var copy = new UniADReconstruction(Tiny with { Seed = 99 });
        using (var read = StateDict.Read(path))
        {
            StateDict.Load(copy, read);
        }

        model.eval();
        copy.eval();
        using var scope = NewDisposeScope();
        var x = randn(2, 6, 3, 4);
        Assert.Equal(0f, (model.Reconstruct(x) - copy.Reconstruct(x)).abs().max().item<float>());
    }

    [Fact]
    public void Bad_files_give_clear_errors_naming_the_path()
    {
        var missing = Path.Combine(dir, "nope.pth");
        var ex1 = Assert.Throws<FileNotFoundException>(() => StateDict.Read(missing));
        Assert.Contains(missing, ex1.Message);

        var text = Path.Combine(dir, "notes.pth");
        File.WriteAllText(text, "this is not a checkpoint");
        var ex2 = Assert.Throws<InvalidDataException>(() => StateDict.Read(text));
        Assert.Contains(text, ex2.Message);

        var empty = Path.Combine(dir, "empty.pth");
        File.WriteAllBytes(empty, Array.Empty<byte>());
        Assert.Throws<InvalidDataException>(() => StateDict.Read(empty));

        var truncated = Path.Combine(dir, "truncated.pth");
        var original = File.ReadAllBytes(Path.Combine(Fixtures.EmbeddedRoot, "reconstruction", "small_learned", "state_dict.pth"));
        File.WriteAllBytes(truncated, original[..(original.Length / 2)]);
        var ex3 = Assert.Throws<InvalidDataException>(() => StateDict.ReadPyTorch(truncated));
        Assert.Contains(truncated, ex3.Message);
    }
}
