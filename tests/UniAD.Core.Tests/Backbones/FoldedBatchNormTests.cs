using TorchSharp;
using TorchSharp.Modules;
using UniAD.Core.Backbones;
using UniAD.Core.Models;
using UniAD.Core.Reconstruction;
using UniAD.Core.Weights;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Backbones;

/// <summary>
/// EfficientNet inference with each BatchNorm folded into its convolution (and channels-last activations on the
/// CPU): the same numbers as the unfolded network, the same state dict, and a cache that follows the weights.
/// The unfolded reference is the same module run with autograd on, which never folds.
/// </summary>
public sealed class FoldedBatchNormTests
{
    private const double Tolerance = 1e-5;

    /// <summary>Random weights everywhere, with BatchNorm statistics and affine parameters far from their defaults.</summary>
    private static TensorDictionary RandomWeights(nn.Module module, int seed)
    {
        var generator = new Generator((ulong)seed);
        var dict = new TensorDictionary { Source = $"random {seed}" };
        foreach (var (key, t) in module.state_dict())
        {
            Tensor value;
            if (!t.is_floating_point())
            {
                value = t.clone();
            }
            else if (key.EndsWith("running_var", StringComparison.Ordinal))
            {
                value = rand(t.shape, generator: generator) * 1.5 + 0.5; // 0.5 .. 2
            }
            else if (key.EndsWith("running_mean", StringComparison.Ordinal))
            {
                value = randn(t.shape, generator: generator) * 0.3;
            }
            else if (t.dim() == 1 && IsBatchNormWeight(key))
            {
                value = rand(t.shape, generator: generator) + 0.5; // gamma 0.5 .. 1.5
            }
            else if (t.dim() == 1)
            {
                value = randn(t.shape, generator: generator) * 0.2; // BatchNorm beta and convolution biases
            }
            else
            {
                long fanIn = t.numel() / t.shape[0];
                value = randn(t.shape, generator: generator) * (1.0 / Math.Sqrt(fanIn));
            }

            dict.Add(key, value.to(t.dtype));
        }

        return dict;
    }

    private static bool IsBatchNormWeight(string key) =>
        key.EndsWith("weight", StringComparison.Ordinal) && key.Split('.')[^2].StartsWith("_bn", StringComparison.Ordinal);

    /// <summary>The unfolded network's block outputs: evaluation mode with autograd on never folds.</summary>
    private static Tensor[] Unfolded(EfficientNet net, Tensor images, IReadOnlyList<int> blocks)
    {
        var outputs = new Tensor[blocks.Count];
        using var grad = enable_grad();
        net.ForwardBlocks(images, (i, x) =>
        {
            int slot = blocks.ToList().IndexOf(i);
            if (slot >= 0)
            {
                outputs[slot] = x.detach().MoveToOuterDisposeScope(); // out of ForwardBlocks' scope
            }
        });
        return outputs;
    }

    private static EfficientNet ReferenceFor(FeatureExtractor extractor, string variant, int lastBlock)
    {
        var net = new EfficientNet(EfficientNetSpec.Get(variant), lastBlock);
        net.load_state_dict(extractor.state_dict());
        net.eval();
        return net;
    }

    private static void AssertFeaturesMatch(FeatureExtractor extractor, EfficientNet reference, Tensor images, string what)
    {
        using var scope = NewDisposeScope();
        var folded = extractor.forward(images);
        var unfolded = Unfolded(reference, images, extractor.Outputs.Select(o => o.Block).ToArray());
        for (int i = 0; i < folded.Length; i++)
        {
            Assert.True(folded[i].is_contiguous(), $"{what}: output {i} is not contiguous");
            Assert.True(unfolded[i].abs().max().to(float64).item<double>() > 1e-2, $"{what}: output {i} vanished; the comparison would prove nothing");
            TensorAssert.CloseToMax(folded[i], unfolded[i], Tolerance, $"{what} output {i}");
        }
    }

    [Theory]
    [InlineData(ScalarType.Float32, Tolerance)]
    [InlineData(ScalarType.Float64, 1e-12)] // the fold itself is exact: what float32 shows is rounding
    public void Folded_network_matches_the_unfolded_one_with_random_batchnorm_statistics(ScalarType dtype, double tolerance)
    {
        // b0 with its head: the stem, blocks with and without expansion, strided blocks with uneven padding, the head.
        using var net = new EfficientNet(EfficientNetSpec.Get("b0"), includeHead: true);
        using (var weights = RandomWeights(net, 11))
        {
            StateDict.Load(net, weights);
        }

        net.eval();
        net.to(dtype);
        using var scope = NewDisposeScope();
        var images = randn(new long[] { 2, 3, 64, 64 }, generator: new Generator(12)).to(dtype);
        var unfoldedBlocks = Unfolded(net, images, Enumerable.Range(0, net.BlockCount).ToArray());
        Tensor unfoldedLogits;
        using (enable_grad())
        {
            unfoldedLogits = net.forward(images).detach();
        }

        using var noGrad = no_grad();
        var foldedBlocks = new Tensor[net.BlockCount];
        var last = net.ForwardBlocks(images, (i, x) => foldedBlocks[i] = x.alias().MoveToOuterDisposeScope());
        Assert.True(last.is_contiguous());
        for (int i = 0; i < net.BlockCount; i++)
        {
            Assert.True(unfoldedBlocks[i].abs().max().to(float64).item<double>() > 1e-2, $"block {i} vanished");
            TensorAssert.CloseToMax(foldedBlocks[i], unfoldedBlocks[i], tolerance, $"block {i}");
        }

        TensorAssert.CloseToMax(net.forward(images), unfoldedLogits, tolerance, "logits");
    }

    [Fact]
    public void Every_pair_is_folded_once_stem_included_and_again_only_after_a_load()
    {
        // The extractor's network object is not one of its registered modules (its own training flag is never
        // cleared); what decides folding is each BatchNorm's own mode, so the stem folds too.
        using var extractor = EfficientNetFeatureExtractor.FromLayers("b0", new[] { 1, 2, 3 });
        int pairs = 1 + extractor.Spec.Blocks.Take(5).Sum(b => b.ExpandRatio == 1 ? 2 : 3); // stem + blocks 0..4
        using var images = randn(1, 3, 64, 64);
        void Forward()
        {
            using var scope = NewDisposeScope();
            extractor.forward(images);
        }

        Forward();
        Assert.Equal(pairs, extractor.Folds);
        Forward();
        Forward();
        Assert.Equal(pairs, extractor.Folds);
        using (var weights = RandomWeights(extractor, 81))
        {
            BackboneWeights.Load(extractor, weights, "random");
        }

        Forward();
        Assert.Equal(2 * pairs, extractor.Folds);
    }

    [Fact]
    public void Float32_activations_stay_channels_last_on_the_cpu_and_float64_ones_do_not()
    {
        using var extractor = EfficientNetFeatureExtractor.FromLayers("b0", new[] { 1, 2 });
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var layouts = new List<bool>();
        extractor.ForwardBlocks(randn(2, 3, 64, 64), (_, x) => layouts.Add(IsChannelsLast(x)));
        Assert.Equal(3, layouts.Count);
        Assert.All(layouts, Assert.True);

        layouts.Clear();
        extractor.to(float64); // float64 keeps NCHW
        extractor.ForwardBlocks(randn(2, 3, 64, 64, float64), (_, x) => layouts.Add(x.is_contiguous()));
        Assert.All(layouts, Assert.True);
    }

    private static bool IsChannelsLast(Tensor x)
    {
        var s = x.stride();
        return s[1] == 1 && s[3] == x.shape[1] && s[2] == x.shape[1] * x.shape[3];
    }

    [Fact]
    public void Extractor_features_match_the_unfolded_network_and_come_back_contiguous()
    {
        using var extractor = EfficientNetFeatureExtractor.FromLayers("b0", new[] { 1, 2, 3, 4 });
        using (var weights = RandomWeights(extractor, 21))
        {
            BackboneWeights.Load(extractor, weights, "random");
        }

        using var reference = ReferenceFor(extractor, "b0", 10);
        using var images = randn(new long[] { 2, 3, 64, 64 }, generator: new Generator(22));
        AssertFeaturesMatch(extractor, reference, images, "b0");
    }

    public enum LoadRoute
    {
        BackboneWeightsLoad,
        StateDictLoadOnTheWholeModel,
        LoadStateDict,
        LoadStateDictOnTheWholeModel,
        TorchSharpLoadFromFile,
        TorchSharpLoadOfTheWholeModel,
    }

    [Theory]
    [InlineData(LoadRoute.BackboneWeightsLoad)]
    [InlineData(LoadRoute.StateDictLoadOnTheWholeModel)]
    [InlineData(LoadRoute.LoadStateDict)]
    [InlineData(LoadRoute.LoadStateDictOnTheWholeModel)]
    [InlineData(LoadRoute.TorchSharpLoadFromFile)]
    [InlineData(LoadRoute.TorchSharpLoadOfTheWholeModel)]
    public void Loading_new_weights_drops_the_folded_ones(LoadRoute route)
    {
        var extractor = EfficientNetFeatureExtractor.FromLayers("b0", new[] { 1, 2 });
        var neck = new MfcnNeck(extractor.Channels, extractor.Strides, 4);
        using var model = new UniADModel(extractor, neck, new UniADReconstruction(new ReconstructionOptions
        {
            InputChannels = neck.OutputChannels, InputStride = 4, FeatureSize = new GridSize(16, 16), HiddenDim = 8, NumHeads = 2,
            NumEncoderLayers = 1, NumDecoderLayers = 1, FeedForwardDim = 16, NeighborSize = null,
        }));
        using var images = randn(new long[] { 1, 3, 64, 64 }, generator: new Generator(31));
        using (var first = RandomWeights(extractor, 32))
        {
            BackboneWeights.Load(extractor, first, "first");
        }

        Tensor before;
        using (var scope = NewDisposeScope())
        {
            before = extractor.forward(images)[1].DetachFromDisposeScope(); // folds the first weights
        }

        using var second = RandomWeights(extractor, 33);
        var path = Path.Combine(Path.GetTempPath(), $"uniad-fold-{Guid.NewGuid():N}.bin");
        try
        {
            switch (route)
            {
                case LoadRoute.BackboneWeightsLoad:
                    BackboneWeights.Load(extractor, second, "second");
                    break;
                case LoadRoute.StateDictLoadOnTheWholeModel:
                    StateDict.Load(model, Prefixed(second, "backbone.", model));
                    break;
                case LoadRoute.LoadStateDict:
                    extractor.load_state_dict(second.ToDictionary(kv => kv.Key, kv => kv.Value));
                    break;
                case LoadRoute.LoadStateDictOnTheWholeModel:
                    model.load_state_dict(Prefixed(second, "backbone.", model));
                    break;
                case LoadRoute.TorchSharpLoadFromFile:
                    SaveWith(second, extractor, path, e => e.save(path));
                    extractor.load(path);
                    break;
                case LoadRoute.TorchSharpLoadOfTheWholeModel:
                    SaveWith(second, extractor, path, _ => model.save(path));
                    model.load(path);
                    break;
            }
        }
        finally
        {
            File.Delete(path);
        }

        using var reference = ReferenceFor(extractor, "b0", 2);
        AssertFeaturesMatch(extractor, reference, images, route.ToString());
        using var after = extractor.forward(images)[1];
        Assert.True((after - before).abs().max().item<float>() > 1e-2, "the new weights changed nothing");
        before.Dispose();
    }

    /// <summary>The whole model's state with the backbone's entries taken from <paramref name="backbone"/>.</summary>
    private static Dictionary<string, Tensor> Prefixed(IReadOnlyDictionary<string, Tensor> backbone, string prefix, nn.Module model)
    {
        var dict = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        foreach (var (k, v) in backbone)
        {
            dict[prefix + k] = v;
        }

        return dict;
    }

    /// <summary>Puts <paramref name="weights"/> into the extractor, saves, and leaves the extractor's folded cache stale on purpose.</summary>
    private static void SaveWith(IReadOnlyDictionary<string, Tensor> weights, FeatureExtractor extractor, string path, Action<FeatureExtractor> save)
    {
        var old = extractor.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        StateDict.Load(extractor, weights);
        save(extractor);
        using (no_grad())
        {
            foreach (var (k, t) in extractor.state_dict())
            {
                t.copy_(old[k]); // in place, behind the cache's back: the file holds the new weights, the extractor the old ones
            }
        }

        extractor.InvalidateFusedWeights();
        using (var scope = NewDisposeScope())
        {
            extractor.forward(ones(1, 3, 32, 32)); // folds the old weights again
        }

        foreach (var t in old.Values)
        {
            t.Dispose();
        }
    }

    [Fact]
    public void Moving_with_to_refolds_for_the_new_dtype_and_device()
    {
        using var extractor = EfficientNetFeatureExtractor.FromLayers("b0", new[] { 1, 2, 3 });
        using (var weights = RandomWeights(extractor, 41))
        {
            BackboneWeights.Load(extractor, weights, "random");
        }

        using var images = randn(new long[] { 2, 3, 64, 64 }, generator: new Generator(42));
        using (var scope = NewDisposeScope())
        {
            extractor.forward(images); // folds float32 weights
        }

        extractor.to(float64);
        using var imagesDouble = images.to(float64);
        using (var scope = NewDisposeScope())
        {
            var features = extractor.forward(imagesDouble);
            Assert.All(features, f => Assert.Equal(ScalarType.Float64, f.dtype));
        }

        using (var reference = ReferenceFor(extractor, "b0", 4))
        {
            reference.to(float64);
            AssertFeaturesMatch(extractor, reference, imagesDouble, "float64");
        }

        extractor.to(CPU).to(float32);
        using (var reference = ReferenceFor(extractor, "b0", 4))
        {
            AssertFeaturesMatch(extractor, reference, images, "back to float32");
        }
    }

    [Fact]
    public void Training_mode_statistics_updates_reach_the_next_evaluation()
    {
        using var net = new EfficientNet(EfficientNetSpec.Get("b0"), 3);
        using (var weights = RandomWeights(net, 51))
        {
            StateDict.Load(net, weights);
        }

        using var images = randn(new long[] { 2, 3, 64, 64 }, generator: new Generator(52));
        net.eval();
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            net.forward(images); // folds
        }

        net.train();
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            net.forward(images * 3 + 1); // updates every running mean and variance in place
        }

        net.eval();
        using var scope2 = NewDisposeScope();
        var unfolded = Unfolded(net, images, new[] { 3 })[0];
        using var noGrad = no_grad();
        TensorAssert.CloseToMax(net.forward(images), unfolded, Tolerance, "after training-mode statistics");
    }

    [Fact]
    public void In_place_inference_overwrites_neither_the_images_nor_earlier_block_outputs()
    {
        using var net = new EfficientNet(EfficientNetSpec.Get("b0"), 6); // blocks with and without residuals
        net.eval();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var images = randn(new long[] { 2, 3, 64, 64 }, generator: new Generator(91));
        var imagesBefore = images.clone();
        var seen = new List<(Tensor Alias, Tensor Copy)>();
        net.ForwardBlocks(images, (_, x) => seen.Add((x.alias().MoveToOuterDisposeScope(), x.clone().MoveToOuterDisposeScope())));
        Assert.Equal(7, seen.Count);
        Assert.True(images.eq(imagesBefore).all().item<bool>(), "the images were overwritten");
        Assert.All(seen, s => Assert.True(s.Alias.eq(s.Copy).all().item<bool>(), "a block output was overwritten by a later block"));
    }

    [Fact]
    public void With_autograd_the_network_still_trains()
    {
        using var net = new EfficientNet(EfficientNetSpec.Get("b0"), 3);
        net.train();
        using var scope = NewDisposeScope();
        var images = randn(new long[] { 2, 3, 64, 64 }, generator: new Generator(92)).requires_grad_();
        net.forward(images).square().mean().backward();
        Assert.NotNull(images.grad);
        Assert.All(net.parameters(), p => Assert.NotNull(p.grad));
    }

    [Fact]
    public void Folding_leaves_the_state_dict_and_parameters_alone_and_leaks_nothing()
    {
        using var extractor = EfficientNetFeatureExtractor.FromLayers("b0", new[] { 1, 2, 3, 4 });
        var keys = extractor.state_dict().Keys.ToList();
        long parameters = extractor.parameters().Sum(p => p.numel());
        using var images = randn(2, 3, 64, 64);
        void Step()
        {
            using var scope = NewDisposeScope();
            extractor.forward(images);
        }

        Step(); // folds
        Assert.Equal(keys, extractor.state_dict().Keys.ToList());
        Assert.Equal(parameters, extractor.parameters().Sum(p => p.numel()));
        Assert.DoesNotContain(extractor.named_modules(), m => m.name.Contains("fold", StringComparison.OrdinalIgnoreCase));

        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 5; i++)
        {
            Step();
        }

        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void Concurrent_first_forwards_agree()
    {
        using var extractor = EfficientNetFeatureExtractor.FromLayers("b0", new[] { 1, 2 });
        using var images = randn(new long[] { 1, 3, 64, 64 }, generator: new Generator(61));
        Tensor expected;
        using (var scope = NewDisposeScope())
        {
            expected = extractor.forward(images)[1].DetachFromDisposeScope();
        }

        float scale = expected.abs().max().item<float>();
        extractor.InvalidateFusedWeights();
        var results = new float[4];
        Parallel.For(0, results.Length, i =>
        {
            using var scope = NewDisposeScope();
            results[i] = (extractor.forward(images)[1] - expected).abs().max().item<float>();
        });
        expected.Dispose();
        // A race in the folding would give other weights (differences of the features' own size); concurrent callers
        // may split libtorch's threads differently, which moves float32 sums by rounding only.
        Assert.All(results, r => Assert.True(r <= 1e-6f * scale, $"a concurrent first forward differs by {r:E2} (max |feature| {scale:E2})"));
    }
}
