using UniAD.Core.Backbones;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Backbones;

public sealed class ResNetTests
{
    // torchvision's published parameter counts minus the fc layer (512·1000 + 1000 or 2048·1000 + 1000).
    [Theory]
    [InlineData(ResNetVariant.ResNet18, 11_689_512L - 513_000L)]
    [InlineData(ResNetVariant.ResNet34, 21_797_672L - 513_000L)]
    [InlineData(ResNetVariant.ResNet50, 25_557_032L - 2_049_000L)]
    [InlineData(ResNetVariant.ResNet101, 44_549_160L - 2_049_000L)]
    [InlineData(ResNetVariant.WideResNet50_2, 68_883_240L - 2_049_000L)]
    public void Backbone_without_classifier_has_torchvisions_parameter_count(ResNetVariant variant, long expected)
    {
        using var extractor = ResNetFeatureExtractor.FromLayers(variant, new[] { 1, 2, 3, 4 });
        Assert.Equal(expected, extractor.parameters().Sum(p => p.numel()));
    }

    [Fact]
    public void Layers_have_torchvision_names_channels_and_strides()
    {
        using var extractor = ResNetFeatureExtractor.FromLayers(ResNetVariant.ResNet50, new[] { 1, 2, 3 });
        Assert.Equal(new[] { 256, 512, 1024 }, extractor.Channels);
        Assert.Equal(new[] { 4, 8, 16 }, extractor.Strides);
        var keys = extractor.state_dict().Keys.ToHashSet();
        Assert.Contains("conv1.weight", keys);
        Assert.Contains("bn1.running_var", keys);
        Assert.Contains("layer1.0.downsample.0.weight", keys);
        Assert.Contains("layer3.5.conv3.weight", keys);
        Assert.DoesNotContain(keys, k => k.StartsWith("layer4", StringComparison.Ordinal) || k.StartsWith("fc", StringComparison.Ordinal));
        Assert.True(extractor.IsUncomputedKey("layer4.0.conv1.weight"));
        Assert.True(extractor.IsUncomputedKey("fc.weight"));
        Assert.False(extractor.IsUncomputedKey("layer5.0.conv1.weight"));

        using var scope = NewDisposeScope();
        var features = extractor.forward(randn(1, 3, 64, 64));
        Assert.Equal(new long[] { 1, 256, 16, 16 }, features[0].shape);
        Assert.Equal(new long[] { 1, 1024, 4, 4 }, features[2].shape);
    }

    [Theory]
    [InlineData("resnet18", ResNetVariant.ResNet18)]
    [InlineData("wide_resnet50_2", ResNetVariant.WideResNet50_2)]
    public void Names_parse(string name, ResNetVariant expected) => Assert.Equal(expected, ResNetFeatureExtractor.ParseVariant(name));

    [Fact]
    public void Unknown_name_is_rejected() => Assert.Contains("resnet152", Assert.Throws<ArgumentException>(() => ResNetFeatureExtractor.ParseVariant("resnet152")).Message);
}
