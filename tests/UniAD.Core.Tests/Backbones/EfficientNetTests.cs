using Microsoft.Extensions.Logging;
using UniAD.Core.Backbones;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Tests.Backbones;

public sealed class EfficientNetTests
{
    [Theory]
    [InlineData("b0", new[] { 0, 2, 4, 10, 15 })]
    [InlineData("b1", new[] { 1, 4, 7, 15, 22 })]
    [InlineData("b2", new[] { 1, 4, 7, 15, 22 })]
    [InlineData("b3", new[] { 1, 4, 7, 17, 25 })]
    [InlineData("b4", new[] { 1, 5, 9, 21, 31 })]
    [InlineData("b5", new[] { 2, 7, 12, 26, 38 })]
    [InlineData("b6", new[] { 2, 8, 14, 30, 44 })]
    public void Official_output_blocks_match_the_reference(string variant, int[] expected)
    {
        Assert.Equal(expected, EfficientNetSpec.Get(variant).OfficialOutputBlocks);
    }

    [Fact]
    public void B4_layers_have_the_papers_channels_and_strides()
    {
        using var extractor = EfficientNetFeatureExtractor.FromLayers("efficientnet-b4", new[] { 1, 2, 3, 4 });
        Assert.Equal(new[] { 24, 32, 56, 160 }, extractor.Channels);
        Assert.Equal(new[] { 2, 4, 8, 16 }, extractor.Strides);
        Assert.Equal(new[] { 1, 5, 9, 21 }, extractor.Outputs.Select(o => o.Block));
        Assert.Equal(272, extractor.Channels.Sum());

        // Stops after block 21: blocks 22..31, the head and the classifier are not built.
        var keys = extractor.state_dict().Keys.ToList();
        Assert.Contains(keys, k => k.StartsWith("_blocks.21.", StringComparison.Ordinal));
        Assert.DoesNotContain(keys, k => k.StartsWith("_blocks.22.", StringComparison.Ordinal) || k.StartsWith("_conv_head", StringComparison.Ordinal) || k.StartsWith("_fc", StringComparison.Ordinal));
        Assert.StartsWith("_conv_stem.", keys[0], StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("b0", 32, 1280, 16)]
    [InlineData("b4", 48, 1792, 32)]
    [InlineData("b7", 64, 2560, 55)]
    public void Compound_scaling_follows_efficientnet_pytorch(string variant, int stem, int head, int blocks)
    {
        var spec = EfficientNetSpec.Get(variant);
        Assert.Equal(stem, spec.StemFilters);
        Assert.Equal(head, spec.HeadFilters);
        Assert.Equal(blocks, spec.Blocks.Count);
    }

    [Theory]
    [InlineData(380, 3, 2, 0, 1)]
    [InlineData(95, 5, 2, 2, 2)]
    [InlineData(56, 5, 2, 1, 2)]
    [InlineData(24, 5, 1, 2, 2)]
    [InlineData(14, 1, 1, 0, 0)]
    public void Static_same_padding_is_computed_from_the_nominal_size(int size, int kernel, int stride, int before, int after)
    {
        var (left, right, top, bottom) = EfficientNetSpec.SamePadding(size, kernel, stride);
        Assert.Equal((before, after, before, after), (left, right, top, bottom));
    }

    [Theory]
    [InlineData(24, 5, 1)] // even padding 2, 2: the convolution's own padding
    [InlineData(95, 5, 2)] // 2, 2
    [InlineData(380, 3, 2)] // uneven 0, 1: F.pad
    [InlineData(56, 5, 2)] // uneven 1, 2
    public void Static_same_padding_gives_the_explicitly_padded_convolution(int nominal, int kernel, int stride)
    {
        using var conv = new Conv2dStaticSamePadding(6, 6, kernel, stride, nominal, bias: true, groups: 3);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = randn(new long[] { 2, 6, 20, 20 }, generator: new Generator(71));
        var expected = F.conv2d(F.pad(x, conv.Padding.ToArray()), conv.Weight, conv.Bias, strides: new long[] { stride, stride }, groups: 3);
        TensorAssert.Close(conv.forward(x), expected, 1e-6, 1e-6, "padding");
    }

    [Theory]
    [InlineData(380, 3, 2, 6)] // uneven 0, 1, depthwise: kernel extended to 4 x 4, even padding 1
    [InlineData(56, 5, 2, 6)] // uneven 1, 2, depthwise: 6 x 6, even padding 2
    [InlineData(48, 3, 2, 6)] // uneven 0, 1 on a smaller map
    [InlineData(380, 3, 2, 3)] // uneven but grouped, not depthwise: F.pad
    [InlineData(24, 5, 1, 6)] // even: the weight stays as it is
    public void Prepared_weights_give_the_explicitly_padded_convolution(int nominal, int kernel, int stride, int groups)
    {
        using var conv = new Conv2dStaticSamePadding(6, 6, kernel, stride, nominal, bias: true, groups: groups);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = randn(new long[] { 2, 6, 21, 20 }, generator: new Generator(72));
        var expected = F.conv2d(F.pad(x, conv.Padding.ToArray()), conv.Weight, conv.Bias, strides: new long[] { stride, stride }, groups: groups);
        var prepared = conv.PrepareWeight(conv.Weight);
        bool extended = groups == 6 && conv.Padding[0] != conv.Padding[1];
        Assert.Equal(extended ? kernel + Math.Abs(conv.Padding[1] - conv.Padding[0]) : kernel, prepared.shape[3]);
        TensorAssert.Close(conv.ConvolvePrepared(x, prepared, conv.Bias), expected, 1e-6, 1e-6, "prepared weight");
    }

    [Fact]
    public void Padding_mismatches_are_found_on_hand_worked_sizes()
    {
        // B4 (nominal 380) at 224: stem 380 / 224 and block 2 (stride 2) 190 / 112 are even both ways, so the
        // paddings agree up to block 5; block 6 (5 x 5, stride 2) sees 95 (odd: pad 4) against 56 (even: pad 3).
        // After it every strided convolution sees even sizes again (48 / 28, 24 / 14).
        var b4 = EfficientNetSpec.Get("b4");
        Assert.Empty(b4.PaddingMismatches(224, 224, 5));
        var single = Assert.Single(b4.PaddingMismatches(224, 224, 21));
        Assert.Equal(new PaddingMismatch(6, 5, 2, 95, 56, 56), single);
        Assert.Empty(b4.PaddingMismatches(380, 380, 31));

        // B0 (nominal 224) at 256: 128, 64, 32, 16 against 112, 56, 28, 14 at the strided blocks: all even.
        var b0 = EfficientNetSpec.Get("b0");
        Assert.Empty(b0.PaddingMismatches(256, 256, b0.Blocks.Count - 1));
        // 224 x 230: the width reaches block 1 (3 x 3, stride 2) as 115 (odd) against the nominal 112.
        Assert.Equal(new PaddingMismatch(1, 3, 2, 112, 112, 115), b0.PaddingMismatches(224, 230, 2)[0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => b0.PaddingMismatches(224, 224, b0.Blocks.Count));

        // Per axis: with the nominal size 224 x 230 (dynamic padding for that input) nothing differs; with 230 x 224 both
        // axes do (rows 224 against 230: block 1 sees 112 against 115; columns the reverse).
        Assert.Empty(b0.WithNominalResolution(224, 230).PaddingMismatches(224, 230, b0.Blocks.Count - 1));
        var swapped = b0.WithNominalResolution(230, 224).PaddingMismatches(224, 230, 2);
        Assert.Equal(new PaddingMismatch(1, 3, 2, 115, 112, 115) { NominalWidth = 112 }, swapped[0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => b0.WithNominalResolution(224, 0));
    }

    [Fact]
    public void Non_square_nominal_sizes_pad_rows_and_columns_separately()
    {
        // 3 x 3 stride 2: a nominal size of 112 (even) pads 0 before and 1 after, 115 (odd) pads 1 and 1.
        using var conv = new Conv2dStaticSamePadding(3, 3, 3, 2, nominalInputHeight: 112, nominalInputWidth: 115, bias: false);
        Assert.Equal(new long[] { 1, 1, 0, 1 }, conv.Padding.ToArray()); // left, right, top, bottom
        var spec = EfficientNetSpec.Get("b0").WithNominalResolution(100, 120);
        Assert.Equal((100, 120), (spec.Resolution, spec.ResolutionWidth));
        Assert.Equal((50, 60), (spec.Blocks[0].InputSize, spec.Blocks[0].InputWidth));
        Assert.All(EfficientNetSpec.Get("b4").Blocks, b => Assert.Equal(b.InputSize, b.InputWidth));
    }

    [Theory]
    [InlineData(64, 4, false)] // 64, 32, 16 at the stem and blocks 1, 3: even, like 224, 112, 56
    [InlineData(72, 5, true)] // block 5 (stride 2) sees 9 against the nominal 14
    public void Static_and_dynamic_padding_agree_exactly_when_no_convolution_pads_differently(int size, int lastBlock, bool differ)
    {
        var spec = EfficientNetSpec.Get("b0");
        Assert.Equal(differ, spec.PaddingMismatches(size, size, lastBlock).Count > 0);
        using var nominal = EfficientNetFeatureExtractor.FromBlocks(spec, new[] { lastBlock });
        using var dynamic = EfficientNetFeatureExtractor.FromBlocks(spec.WithNominalResolution(size), new[] { lastBlock });
        dynamic.load_state_dict(nominal.state_dict());
        using var scope = NewDisposeScope();
        var images = randn(new long[] { 1, 3, size, size }, generator: new TorchSharp.torch.Generator(5));
        var a = nominal.forward(images)[0];
        var b = dynamic.forward(images)[0];
        if (differ)
        {
            // An odd size padded as if even loses an output row and column (4 x 4 instead of 5 x 5 here).
            Assert.True(!a.shape.SequenceEqual(b.shape) || (a - b).abs().max().item<float>() > 1e-3, "the paddings differ but the features agree");
            return;
        }

        Assert.Equal(a.shape, b.shape);
        Assert.Equal(0.0, (a - b).abs().max().item<float>());
    }

    [Fact]
    public void Full_b0_has_the_known_parameter_count()
    {
        // EfficientNet-B0 with its 1000-class head has 5,288,548 parameters.
        using var full = new EfficientNet(EfficientNetSpec.Get("b0"), includeHead: true);
        Assert.Equal(5_288_548L, full.parameters().Sum(p => p.numel()));
        using var scope = NewDisposeScope();
        full.eval();
        Assert.Equal(new long[] { 1, 1000 }, full.forward(randn(1, 3, 64, 64)).shape);
    }

    [Fact]
    public void Extractor_is_frozen_and_stays_in_eval_mode()
    {
        using var extractor = EfficientNetFeatureExtractor.FromLayers("b0", new[] { 1, 2 });
        Assert.All(extractor.parameters(), p => Assert.False(p.requires_grad));
        extractor.train();
        Assert.False(extractor.training);
        Assert.All(extractor.modules(), m => Assert.False(m.training));

        using var scope = NewDisposeScope();
        var images = randn(2, 3, 64, 64, requires_grad: true);
        var features = extractor.forward(images);
        Assert.Equal(new long[] { 2, 16, 32, 32 }, features[0].shape);
        Assert.Equal(new long[] { 2, 24, 16, 16 }, features[1].shape);
        Assert.All(features, f => Assert.False(f.requires_grad));
    }

    [Theory]
    [InlineData(new[] { 0 })]
    [InlineData(new[] { 6 })]
    [InlineData(new[] { 2, 1 })]
    [InlineData(new int[0])]
    public void Impossible_layers_are_rejected(int[] layers)
    {
        var ex = Assert.Throws<ArgumentException>(() => EfficientNetFeatureExtractor.FromLayers("b4", layers));
        Assert.Contains("efficientnet-b4", ex.Message);
    }

    [Fact]
    public void Unknown_variant_and_bad_images_are_rejected()
    {
        Assert.Contains("b9", Assert.Throws<ArgumentException>(() => EfficientNetSpec.Get("b9")).Message);
        using var extractor = EfficientNetFeatureExtractor.FromLayers("b0", new[] { 1 });
        using var scope = NewDisposeScope();
        Assert.Contains("1, 4, 32, 32", Assert.Throws<ArgumentException>(() => extractor.forward(randn(1, 4, 32, 32))).Message);
        Assert.Throws<ArgumentException>(() => extractor.forward(ones(new long[] { 1, 3, 32, 32 }, dtype: ScalarType.Byte)));
    }

    [Fact]
    public void Random_backbone_warns_and_says_where_weights_come_from()
    {
        var logger = new TestLogger();
        using var extractor = Backbone.Create("efficientnet-b4", new[] { 1, 2, 3, 4 }, logger: logger);
        Assert.True(extractor.IsRandom);
        var warning = Assert.Single(logger.Entries, e => e.Level == LogLevel.Warning);
        Assert.Contains("RANDOM", warning.Message);
        Assert.Contains("meaningless", warning.Message);
        Assert.Contains("efficientnet-b4-6ed6700e.pth", warning.Message);
        Assert.Contains("resnet18", warning.Message);
    }
}
