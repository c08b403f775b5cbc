using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.QuickStart;

/// <summary>
/// Synthetic stand-in for backbone features, so the demo needs no weights and no data set: every class
/// has its own smooth low-rank feature field; a normal sample is a random mix of that class's fields;
/// an anomaly replaces a rectangle of tokens with out-of-distribution vectors.
/// </summary>
internal sealed class SyntheticFeatures : IDisposable
{
    private const int Rank = 4;
    private readonly Tensor[] means;
    private readonly Tensor[] bases;
    private readonly Generator generator;

    public SyntheticFeatures(int classes, int channels, int height, int width, long seed)
    {
        Channels = channels;
        Height = height;
        Width = width;
        generator = new Generator((ulong)seed);
        means = new Tensor[classes];
        bases = new Tensor[classes];
        for (int c = 0; c < classes; c++)
        {
            means[c] = Smooth(1, generator).squeeze(0).DetachFromDisposeScope();
            bases[c] = (Smooth(Rank, generator) * 0.5).DetachFromDisposeScope();
        }
    }

    public int Channels { get; }

    public int Height { get; }

    public int Width { get; }

    /// <summary>Normal features of class <paramref name="cls"/>: B x C x H x W.</summary>
    public Tensor Normal(int cls, int count)
    {
        using var scope = NewDisposeScope();
        var coefficients = randn(new long[] { count, Rank, 1, 1, 1 }, generator: generator);
        var mix = (coefficients * bases[cls].unsqueeze(0)).sum(1);
        var noise = randn(count, Channels, Height, Width, generator: generator) * 0.05;
        return (means[cls].unsqueeze(0) + mix + noise).MoveToOuterDisposeScope();
    }

    /// <summary>Anomalous features and their token-level masks (B x 1 x H x W, 1 = defect).</summary>
    public (Tensor Features, Tensor Masks) Anomalous(int cls, int count, Random random)
    {
        using var scope = NewDisposeScope();
        var features = Normal(cls, count);
        var masks = zeros(count, 1, Height, Width);
        for (int i = 0; i < count; i++)
        {
            int h = random.Next(2, 5), w = random.Next(2, 5);
            int y = random.Next(0, Height - h + 1), x = random.Next(0, Width - w + 1);
            var ys = TensorIndex.Slice(y, y + h);
            var xs = TensorIndex.Slice(x, x + w);
            features[i, TensorIndex.Colon, ys, xs] = randn(Channels, h, w, generator: generator) * 1.5;
            masks[i, TensorIndex.Colon, ys, xs] = tensor(1f);
        }

        return (features.MoveToOuterDisposeScope(), masks.MoveToOuterDisposeScope());
    }

    public void Dispose()
    {
        foreach (var t in means.Concat(bases))
        {
            t.Dispose();
        }

        generator.Dispose();
    }

    private Tensor Smooth(int count, Generator g)
    {
        using var scope = NewDisposeScope();
        var coarse = randn(count, Channels, 4, 4, generator: g);
        return F.interpolate(coarse, new long[] { Height, Width }, mode: InterpolationMode.Bilinear, align_corners: true).MoveToOuterDisposeScope();
    }
}
