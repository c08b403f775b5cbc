using System.Text.Json;
using TorchSharp;
using UniAD.Core.Reconstruction;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Reconstruction;

public sealed class UniADReconstructionTests
{
    private static readonly ReconstructionOptions Small = new()
    {
        InputChannels = 12,
        FeatureSize = new GridSize(4, 5),
        HiddenDim = 8,
        NumHeads = 2,
        NumEncoderLayers = 1,
        NumDecoderLayers = 2,
        FeedForwardDim = 16,
        NeighborSize = new GridSize(3, 3),
        InputStride = 4,
    };

    [Fact]
    public void Paper_network_has_the_reference_parameter_count()
    {
        // By hand: input_proj 272*256+256 = 69,888; output_proj 256*272+272 = 69,904; position tables
        // (14+14)*128 = 3,584; encoder layer = attention 263,168 + linear1 263,168 + linear2 262,400
        // + 2 norms 1,024 = 789,760 (x4); decoder layer = query 50,176 + 2 attentions 526,336
        // + linears 525,568 + 3 norms 1,536 = 1,103,616 (x4); decoder norm 512. Total 7,717,392.
        using var model = new UniADReconstruction(new ReconstructionOptions());
        Assert.Equal(7_717_392L, model.parameters().Sum(p => p.numel()));
        var keys = model.state_dict().Keys.ToHashSet();
        Assert.Contains("pos_embed.row_embed.weight", keys);
        Assert.Contains("pos_embed.col_embed.weight", keys);
        Assert.Contains("transformer.encoder.layers.3.self_attn.in_proj_weight", keys);
        Assert.Contains("transformer.decoder.layers.3.learned_embed.weight", keys);
        Assert.Contains("transformer.decoder.layers.0.multihead_attn.out_proj.bias", keys);
        Assert.Contains("transformer.decoder.layers.0.norm3.weight", keys);
        Assert.Contains("transformer.decoder.norm.weight", keys);
        Assert.DoesNotContain("transformer.encoder.norm.weight", keys);
        Assert.Contains("input_proj.weight", keys);
        Assert.Contains("output_proj.bias", keys);
    }

    [Fact]
    public void Pre_norm_adds_the_encoder_norm_and_sine_has_no_parameters()
    {
        using var model = new UniADReconstruction(Small with { NormalizeBefore = true, PositionEmbedding = PositionEmbeddingType.Sine, Activation = TransformerActivation.Gelu });
        var keys = model.state_dict().Keys.ToList();
        Assert.Contains("transformer.encoder.norm.weight", keys);
        Assert.DoesNotContain(keys, k => k.StartsWith("pos_embed", StringComparison.Ordinal));
        model.eval();
        using var scope = NewDisposeScope();
        using var output = model.forward(randn(2, 12, 4, 5, generator: new Generator(1)));
        Assert.Equal(new long[] { 2, 1, 16, 20 }, output.Pred.shape);
        Assert.False(output.FeatureRec.isnan().any().item<bool>());
    }

    [Fact]
    public void Initialisation_follows_the_reference_and_the_seed()
    {
        using var a = new UniADReconstruction(Small);
        using var b = new UniADReconstruction(Small);
        using var c = new UniADReconstruction(Small with { Seed = 5 });
        var sa = a.state_dict();
        var sb = b.state_dict();
        var sc = c.state_dict();
        Assert.All(sa.Keys, k => Assert.Equal(0f, (sa[k] - sb[k]).abs().max().item<float>()));
        Assert.True((sa["input_proj.weight"] - sc["input_proj.weight"]).abs().max().item<float>() > 0);

        // Xavier-uniform bound sqrt(6 / (12 + 8)) for input_proj, zero biases, U(0, 1) position tables.
        double bound = Math.Sqrt(6.0 / 20);
        Assert.True(sa["input_proj.weight"].abs().max().item<float>() <= bound);
        Assert.Equal(0f, sa["input_proj.bias"].abs().max().item<float>());
        Assert.Equal(0f, sa["transformer.encoder.layers.0.self_attn.in_proj_bias"].abs().max().item<float>());
        Assert.Equal(0f, sa["transformer.encoder.layers.0.self_attn.out_proj.bias"].abs().max().item<float>());
        var row = sa["pos_embed.row_embed.weight"];
        Assert.True(row.min().item<float>() >= 0 && row.max().item<float>() < 1);
        // Query embeddings N(0, 1): 20 x 8 = 160 draws; the sample std of N(0,1) stays within 0.7..1.3.
        var std = sa["transformer.decoder.layers.0.learned_embed.weight"].std().item<float>();
        Assert.InRange(std, 0.7f, 1.3f);
    }

    [Fact]
    public void Jitter_changes_training_output_only_and_is_seeded()
    {
        var options = Small with { Dropout = 0.0, FeatureJitter = new FeatureJitterOptions { Scale = 20, Probability = 1 } };
        using var scope = NewDisposeScope();
        var x = randn(2, 12, 4, 5, generator: new Generator(2));
        using var model = new UniADReconstruction(options);
        model.eval();
        var clean = model.Reconstruct(x);
        model.train();
        var jittered = model.Reconstruct(x);
        Assert.True((jittered - clean).abs().max().item<float>() > 1e-3f);

        using var twin = new UniADReconstruction(options);
        twin.train();
        Assert.Equal(0f, (twin.Reconstruct(x) - jittered).abs().max().item<float>());

        using var never = new UniADReconstruction(options with { FeatureJitter = new FeatureJitterOptions { Probability = 0 } });
        never.train();
        Assert.Equal(0f, (never.Reconstruct(x) - clean).abs().max().item<float>());
    }

    [Fact]
    public void Bottleneck_dropout_drops_projected_tokens_in_training_only()
    {
        var options = Small with { Dropout = 0.0, FeatureJitter = null, BottleneckDropout = 0.5, Seed = 9 };
        using var scope = NewDisposeScope();
        var x = randn(2, 12, 4, 5, generator: new Generator(3));
        using var model = new UniADReconstruction(options);
        using var plain = new UniADReconstruction(options with { BottleneckDropout = 0 });

        // No weights of its own: the same seed gives the same state, and scoring (eval) is unchanged, bit for bit.
        var (sm, sp) = (model.state_dict(), plain.state_dict());
        Assert.Equal(sp.Keys.Order(), sm.Keys.Order());
        Assert.All(sp.Keys, k => Assert.Equal(0f, (sm[k] - sp[k]).abs().max().item<float>()));
        model.eval();
        plain.eval();
        var clean = model.Reconstruct(x);
        Assert.Equal(0f, (plain.Reconstruct(x) - clean).abs().max().item<float>());

        // Training, by hand: input_proj's tokens times the first mask of the network's seeded dropout stream
        // (seed ^ 0x5DEECE66D; the blocks' own dropout is 0 and draws nothing), then the same transformer and output_proj.
        model.train();
        var parts = model.named_children().ToDictionary(c => c.name, c => c.module);
        var tokens = x.flatten(2).permute(2, 0, 1);
        var hidden = ((nn.Module<Tensor, Tensor>)parts["input_proj"]).forward(tokens);
        var mask = new UniAD.Core.TorchSupport.DropoutRandom(9 ^ 0x5DEECE66DL).Mask(hidden.shape, 0.5);
        double dropped = mask.eq(0).to(float64).mean().item<double>();
        Assert.InRange(dropped, 0.4, 0.6); // 320 draws
        Assert.Equal(0L, (mask.eq(0) | mask.eq(2)).logical_not().sum().item<long>());
        var pos = ((nn.Module<Device, Tensor>)parts["pos_embed"]).forward(CPU);
        var decoded = ((nn.Module<Tensor, Tensor, Tensor>)parts["transformer"]).forward(hidden * mask, pos);
        var expected = ((nn.Module<Tensor, Tensor>)parts["output_proj"]).forward(decoded).permute(1, 2, 0).reshape(2, 12, 4, 5);
        var noisy = model.Reconstruct(x);
        Assert.True((noisy - expected).abs().max().item<float>() < 1e-5f);
        Assert.True((noisy - clean).abs().max().item<float>() > 1e-3f);

        // Seeded: reseeding repeats the draw; the plain network in training equals its eval output.
        model.ReseedNoise(9);
        Assert.Equal(0f, (model.Reconstruct(x) - noisy).abs().max().item<float>());
        plain.train();
        Assert.Equal(0f, (plain.Reconstruct(x) - clean).abs().max().item<float>());
    }

    [Fact]
    public void Wrong_inputs_are_rejected_with_the_shapes_in_the_message()
    {
        using var model = new UniADReconstruction(Small);
        using var scope = NewDisposeScope();
        var ex = Assert.Throws<ArgumentException>(() => model.forward(randn(2, 10, 4, 5)));
        Assert.Contains("B x 12 x 4 x 5", ex.Message);
        Assert.Contains("2, 10, 4, 5", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => model.forward(randn(2, 12, 5, 4)));
        Assert.Contains("2, 12, 5, 4", ex.Message);
        Assert.Throws<ArgumentException>(() => model.forward(randn(12, 4, 5)));
        Assert.Throws<ArgumentException>(() => model.forward(zeros(new long[] { 0, 12, 4, 5 })));
        Assert.Throws<ArgumentException>(() => model.forward(ones(new long[] { 1, 12, 4, 5 }, dtype: int32)));
    }

    public static TheoryData<ReconstructionOptions, string> ImpossibleOptions => new()
    {
        { Small with { NumHeads = 3 }, "NumHeads = 3 does not divide HiddenDim = 8" },
        { Small with { HiddenDim = 0 }, "HiddenDim = 0" },
        { Small with { InputChannels = -1 }, "InputChannels = -1" },
        { Small with { NeighborSize = new GridSize(9, 9) }, "covers the whole 4x5" },
        { Small with { NeighborSize = new GridSize(0, 3) }, "neighbourhood size must be positive" },
        { Small with { Dropout = 1.0 }, "Dropout = 1" },
        { Small with { BottleneckDropout = -0.1 }, "BottleneckDropout = -0.1 must lie in [0, 1)" },
        { Small with { FeatureJitter = new FeatureJitterOptions { Probability = 1.5 } }, "Probability = 1.5" },
        { Small with { FeatureJitter = new FeatureJitterOptions { Scale = double.NaN } }, "Scale = NaN" },
        { Small with { NumDecoderLayers = 0 }, "NumDecoderLayers = 0" },
    };

    [Theory]
    [MemberData(nameof(ImpossibleOptions))]
    public void Impossible_options_are_rejected(ReconstructionOptions options, string fragment)
    {
        var ex = Assert.Throws<ArgumentException>(() => new UniADReconstruction(options));
        Assert.Contains(fragment, ex.Message);
    }

    [Fact]
    public void Reference_config_is_read_in_both_layouts()
    {
        const string trainer = """
            { "inplanes": [272], "instride": [16], "feature_size": [14, 14], "hidden_dim": 256, "nhead": 8,
              "num_encoder_layers": 4, "num_decoder_layers": 4, "dim_feedforward": 1024, "dropout": 0.1,
              "activation": "relu", "normalize_before": false, "pos_embed_type": "learned",
              "feature_jitter": { "scale": 20.0, "prob": 1.0 },
              "neighbor_mask": { "neighbor_size": [7, 7], "mask": [false, true, true] } }
            """;
        using var doc = JsonDocument.Parse(trainer);
        var options = ReconstructionOptions.FromReferenceConfig(doc.RootElement);
        Assert.Equal(new ReconstructionOptions { MaskEncoder = false }, options);

        using var fixture = JsonDocument.Parse("""{ "inplanes": 24, "neighbor_size": null, "neighbor_mask": [true, true, true], "pos_embed_type": "sine" }""");
        var fromFixture = ReconstructionOptions.FromReferenceConfig(fixture.RootElement);
        Assert.Null(fromFixture.NeighborSize);
        Assert.Equal(PositionEmbeddingType.Sine, fromFixture.PositionEmbedding);
        Assert.Equal(24, fromFixture.InputChannels);

        using var bad = JsonDocument.Parse("""{ "activation": "tanh" }""");
        var ex = Assert.Throws<FormatException>(() => ReconstructionOptions.FromReferenceConfig(bad.RootElement));
        Assert.Contains("tanh", ex.Message);
    }

    [Fact]
    public void Repeated_forwards_leak_no_tensors()
    {
        using var model = new UniADReconstruction(Small);
        model.eval();
        using var x = randn(2, 12, 4, 5);
        void Step()
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            using var output = model.forward(x);
        }

        Step(); // warm caches (neighbor mask)
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 20; i++)
        {
            Step();
        }

        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }
}
