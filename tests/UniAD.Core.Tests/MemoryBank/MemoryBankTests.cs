using UniAD.Core.MemoryBank;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.MemoryBank;

/// <summary>The memory-bank tensor model against hand-computed values and brute force.</summary>
public sealed class MemoryBankTests
{
    [Fact]
    public void Patch_features_average_the_neighbourhood_without_the_padding_and_align_deeper_maps()
    {
        using var scope = NewDisposeScope();
        var shallow = arange(16, dtype: float32, device: CPU).reshape(1, 1, 4, 4);
        var deep = ones(1, 2, 2, 2, device: CPU);
        var features = PatchFeatures.Embed(new[] { shallow, deep });
        Assert.Equal(new long[] { 1, 3, 4, 4 }, features.shape);
        // Corner (0, 0): the mean of the 4 positions that exist, 0, 1, 4, 5 -> 2.5; an inner position: its 9 neighbours.
        Assert.Equal(2.5f, features[0, 0, 0, 0].item<float>(), 1e-6);
        Assert.Equal((0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10) / 9f, features[0, 0, 1, 1].item<float>(), 1e-5);
        Assert.Equal(1f, features[0, 1, 3, 3].item<float>(), 1e-6); // the deeper map upsampled (constant stays constant)
        var rows = PatchFeatures.Rows(features);
        Assert.Equal(new long[] { 16, 3 }, rows.shape);
        Assert.Equal(features[0, 0, 1, 2].item<float>(), rows[6, 0].item<float>()); // row-major: (1, 2) is row 6
        Assert.Throws<ArgumentException>(() => PatchFeatures.Embed(new[] { shallow }, neighbourhood: 2));
    }

    [Fact]
    public void Nearest_neighbour_distances_equal_brute_force_across_chunks()
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(3);
        var queries = randn(new long[] { NearestNeighbour.QueryChunk + 37, 16 }, generator: generator, device: CPU);
        var bank = randn(new long[] { 50, 16 }, generator: generator, device: CPU);
        var fast = NearestNeighbour.Distances(queries, bank);
        var brute = (queries.to(float64).unsqueeze(1) - bank.to(float64).unsqueeze(0)).square().sum(2).amin(1).sqrt();
        Assert.Equal(new long[] { queries.shape[0] }, fast.shape);
        Assert.True((fast.to(float64) - brute).abs().max().item<double>() < 1e-4);
        Assert.Equal(0f, NearestNeighbour.Distances(bank.narrow(0, 3, 2), bank).max().item<float>(), 1e-3); // a bank patch is at distance 0
        Assert.Throws<ArgumentException>(() => NearestNeighbour.Distances(queries, zeros(0, 16, device: CPU)));
    }

    [Fact]
    public void The_coreset_picks_the_farthest_patch_first_is_seeded_and_never_repeats_a_pick()
    {
        using var scope = NewDisposeScope();
        // One tight cluster and one far outlier: the first greedy pick is the patch farthest from the random starts, the outlier.
        var generator = new Generator(11);
        var patches = (randn(new long[] { 1000, 32 }, generator: generator, device: CPU) * 0.1).contiguous();
        patches[417] = full(32, 50f, device: CPU);
        var picks = Coreset.Select(patches, 2, seed: 7);
        Assert.Equal(417, picks[0]);
        Assert.Equal(picks, Coreset.Select(patches, 2, seed: 7));
        var many = Coreset.Select(patches, 300, seed: 7);
        Assert.Equal(300, many.Distinct().Count());
        Assert.Throws<ArgumentException>(() => Coreset.Select(patches, 0, seed: 7));
        Assert.Throws<ArgumentException>(() => Coreset.Select(patches, 1001, seed: 7));
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.Throws<OperationCanceledException>(() => Coreset.Select(patches, 5, seed: 7, cancellationToken: cancelled.Token));
    }

    [Fact]
    public void A_fitted_bank_scores_normal_patches_low_and_a_strange_one_high()
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(5);
        var normal = randn(new long[] { 4, 8, 6, 6 }, generator: generator, device: CPU) * 0.1; // 144 normal patches
        using var bank = PatchMemoryBank.Fit(PatchFeatures.Rows(normal), ratio: 0.5, seed: 1);
        Assert.Equal(72, bank.Bank.shape[0]);
        var test = normal.narrow(0, 0, 1).clone();
        test[0, .., 2, 3] = full(8, 5f, device: CPU); // one patch far from every normal one
        var scores = bank.PatchScores(test);
        Assert.Equal(new long[] { 1, 6, 6 }, scores.shape);
        var others = scores.clone();
        others[0, 2, 3] = tensor(0f);
        Assert.True(scores[0, 2, 3].item<float>() > 10 * others.max().item<float>(), "the strange patch does not stand out");
        Assert.True(scores[0, 2, 3].item<float>() > 13f); // |5 - x| over 8 channels, x near 0: about 14
        var maps = PatchMemoryBank.Maps(scores, 48, 48);
        Assert.Equal(new long[] { 1, 48, 48 }, maps.shape);
        Assert.Equal(2, maps[0].argmax().item<long>() / 48 / 8); // the peak stays on the strange patch's row
        Assert.Throws<ArgumentException>(() => PatchMemoryBank.Fit(PatchFeatures.Rows(normal), ratio: 0, seed: 1));
    }

    [Fact]
    public void The_gaussian_keeps_the_mass_of_an_impulse_and_is_symmetric()
    {
        using var scope = NewDisposeScope();
        var impulse = zeros(1, 1, 65, 65, device: CPU);
        impulse[0, 0, 32, 32] = tensor(1f);
        var blurred = UniAD.Core.Models.MapSmoothing.GaussianBlur(impulse, 4);
        Assert.Equal(1.0, blurred.sum().item<float>(), 1e-5);
        Assert.Equal(blurred[0, 0, 32, 28].item<float>(), blurred[0, 0, 32, 36].item<float>(), 1e-7);
        Assert.Equal(blurred[0, 0, 28, 32].item<float>(), blurred[0, 0, 32, 28].item<float>(), 1e-7);
        // The centre of a sigma-4 Gaussian: 1 / (2 pi sigma^2) = 0.00995 (the kernel's truncation at 4 sigma moves it a little).
        Assert.Equal(1 / (2 * Math.PI * 16), blurred[0, 0, 32, 32].item<float>(), 2e-4);
        var small = UniAD.Core.Models.MapSmoothing.GaussianBlur(ones(1, 1, 5, 5, device: CPU), 4); // narrower than the kernel: still averages
        Assert.Equal(1f, small.mean().item<float>(), 1e-5);
    }
}
