using System.Text.Json;
using UniAD.Core.Backbones;
using UniAD.Core.Models;
using UniAD.Core.Reconstruction;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Models;

public sealed class UniADModelTests
{
    private static ReconstructionOptions SmallFor(MfcnNeck neck, int featureSize) => new()
    {
        InputChannels = neck.OutputChannels, InputStride = neck.OutputStride, FeatureSize = new GridSize(featureSize, featureSize),
        HiddenDim = 16, NumHeads = 2, NumEncoderLayers = 1, NumDecoderLayers = 1, FeedForwardDim = 32, NeighborSize = new GridSize(3, 3),
    };

    [Fact]
    public void Pipeline_runs_with_reference_key_names_and_a_frozen_backbone()
    {
        var backbone = EfficientNetFeatureExtractor.FromLayers("b0", new[] { 1, 2, 3, 4 });
        var neck = new MfcnNeck(backbone.Channels, backbone.Strides, 16);
        using var model = new UniADModel(backbone, neck, new UniADReconstruction(SmallFor(neck, 4)));
        Assert.Equal(new GridSize(64, 64), model.InputSize);
        var keys = model.state_dict().Keys.ToList();
        Assert.Contains("backbone._conv_stem.weight", keys);
        Assert.Contains("reconstruction.transformer.decoder.norm.weight", keys);
        Assert.DoesNotContain(keys, k => k.StartsWith("neck", StringComparison.Ordinal));

        model.train();
        Assert.True(model.Reconstruction.training);
        Assert.False(model.Backbone.training);

        using var scope = NewDisposeScope();
        using var output = model.forward(randn(2, 3, 64, 64));
        Assert.Equal(new long[] { 2, 192, 4, 4 }, output.FeatureAlign.shape);
        Assert.Equal(new long[] { 2, 192, 4, 4 }, output.FeatureRec.shape);
        Assert.Equal(new long[] { 2, 1, 64, 64 }, output.Pred.shape);
        Assert.Contains("2, 3, 32, 32", Assert.Throws<ArgumentException>(() => model.forward(randn(2, 3, 32, 32))).Message);
    }

    [Fact]
    public void Features_of_a_batch_sliced_into_backbone_passes_equal_the_features_image_by_image()
    {
        var backbone = EfficientNetFeatureExtractor.FromLayers("b0", new[] { 1, 2, 3, 4 });
        var neck = new MfcnNeck(backbone.Channels, backbone.Strides, 16);
        using var model = new UniADModel(backbone, neck, new UniADReconstruction(SmallFor(neck, 4)));
        model.eval();
        using var scope = NewDisposeScope();
        var images = randn(new long[] { 5, 3, 64, 64 }, generator: new Generator(4));
        var batch = model.ExtractFeatures(images); // 5 images: passes of 2, 2 and 1 on the CPU
        Assert.Equal(new long[] { 5, 192, 4, 4 }, batch.shape);
        for (int i = 0; i < 5; i++)
        {
            var single = model.ExtractFeatures(images.narrow(0, i, 1));
            Assert.True(batch.narrow(0, i, 1).allclose(single, rtol: 1e-5, atol: 1e-5), $"image {i}");
        }
    }

    [Fact]
    public void Parts_that_do_not_fit_are_rejected()
    {
        using var backbone = EfficientNetFeatureExtractor.FromLayers("b0", new[] { 1, 2 });
        using var neck = new MfcnNeck(new[] { 16, 24 }, new[] { 2, 4 }, 4);
        using var wrongNeck = new MfcnNeck(new[] { 16, 32 }, new[] { 2, 4 }, 4);
        Assert.Contains("[16, 32]", Assert.Throws<ArgumentException>(() => new UniADModel(backbone, wrongNeck, new UniADReconstruction(SmallFor(neck, 4)))).Message);
        using var recon = new UniADReconstruction(SmallFor(neck, 4) with { InputChannels = 41 });
        Assert.Contains("41 channels", Assert.Throws<ArgumentException>(() => new UniADModel(backbone, neck, recon)).Message);
    }

    [Fact]
    public void Reference_description_builds_the_described_network()
    {
        const string json = """
            { "net": [
                { "name": "backbone", "type": "models.backbones.resnet18", "kwargs": { "outlayers": [1, 2, 3], "outstrides": [4, 8, 16] } },
                { "name": "neck", "type": "models.necks.MFCN", "kwargs": { "outstrides": [16], "outplanes": [448] } },
                { "name": "reconstruction", "type": "models.reconstructions.UniAD", "kwargs": { "hidden_dim": 32, "nhead": 4,
                  "num_encoder_layers": 1, "num_decoder_layers": 1, "dim_feedforward": 64, "feature_size": [4, 4], "pos_embed_type": "sine",
                  "neighbor_mask": { "neighbor_size": [3, 3], "mask": [true, false, true] } } } ] }
            """;
        using var doc = JsonDocument.Parse(json);
        using var model = ReferenceCheckpoint.Build(doc.RootElement);
        Assert.Equal("resnet18", model.Backbone.ModelName);
        Assert.Equal(448, model.Reconstruction.Options.InputChannels);
        Assert.Equal(16, model.Reconstruction.Options.InputStride);
        Assert.False(model.Reconstruction.Options.MaskDecoderSelf);
        Assert.Equal(PositionEmbeddingType.Sine, model.Reconstruction.Options.PositionEmbedding);

        using var bad = JsonDocument.Parse(json.Replace("\"outplanes\": [448]", "\"outplanes\": [272]", StringComparison.Ordinal));
        Assert.Contains("272", Assert.Throws<FormatException>(() => ReferenceCheckpoint.Build(bad.RootElement)).Message);
        using var unknown = JsonDocument.Parse(json.Replace("resnet18", "vgg16", StringComparison.Ordinal));
        Assert.Contains("vgg16", Assert.Throws<FormatException>(() => ReferenceCheckpoint.Build(unknown.RootElement)).Message);
        using var noNeck = JsonDocument.Parse("""{ "net": [ { "name": "backbone" } ] }""");
        Assert.Throws<FormatException>(() => ReferenceCheckpoint.Build(noNeck.RootElement));
    }

    [Fact]
    public void Missing_or_invalid_files_are_named()
    {
        var dir = Directory.CreateTempSubdirectory("uniad-ref-").FullName;
        try
        {
            var config = Path.Combine(dir, "config.json");
            var missing = Path.Combine(dir, "missing.json");
            Assert.Contains(missing, Assert.Throws<FileNotFoundException>(() => ReferenceCheckpoint.Load("ckpt.pth.tar", missing)).Message);
            File.WriteAllText(config, "{ not json");
            Assert.Contains(config, Assert.Throws<FormatException>(() => ReferenceCheckpoint.Load("ckpt.pth.tar", config)).Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
