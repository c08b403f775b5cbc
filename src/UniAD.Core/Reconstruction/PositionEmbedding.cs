using UniAD.Core.TorchSupport;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace UniAD.Core.Reconstruction;

/// <summary>A position embedding for the tokens of an H x W feature map: returns (H·W) x C, row-major.</summary>
public abstract class PositionEmbedding : Module<Device, Tensor>
{
    /// <summary>Creates the embedding for a map of <paramref name="featureSize"/> and width <paramref name="hiddenDim"/>.</summary>
    protected PositionEmbedding(string name, GridSize featureSize, int hiddenDim)
        : base(name)
    {
        FeatureSize = featureSize;
        HiddenDim = hiddenDim;
    }

    /// <summary>The feature-map size the embedding covers.</summary>
    public GridSize FeatureSize { get; }

    /// <summary>Embedding width C (half for columns, half for rows).</summary>
    public int HiddenDim { get; }

    /// <summary>Creates the embedding of the given type.</summary>
    public static PositionEmbedding Create(PositionEmbeddingType type, GridSize featureSize, int hiddenDim, Generator? generator = null) => type switch
    {
        PositionEmbeddingType.Learned => new LearnedPositionEmbedding(featureSize, hiddenDim, generator),
        PositionEmbeddingType.Sine => new SinePositionEmbedding(featureSize, hiddenDim),
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown position embedding type."),
    };
}

/// <summary>
/// Learned embedding: a row table (H x C/2) and a column table (W x C/2), initialised U(0, 1);
/// position (y, x) gets concat(col[x], row[y]). State-dict keys: <c>row_embed.weight</c>, <c>col_embed.weight</c>.
/// </summary>
public sealed class LearnedPositionEmbedding : PositionEmbedding
{
    private readonly Embedding row_embed;
    private readonly Embedding col_embed;

    /// <summary>Creates the tables with U(0, 1) values drawn from <paramref name="generator"/>.</summary>
    public LearnedPositionEmbedding(GridSize featureSize, int hiddenDim, Generator? generator = null)
        : base(nameof(LearnedPositionEmbedding), featureSize, hiddenDim)
    {
        row_embed = Embedding(featureSize.Height, hiddenDim / 2);
        col_embed = Embedding(featureSize.Width, hiddenDim / 2);
        RegisterComponents();
        using var _ = no_grad();
        row_embed.weight!.uniform_(0.0, 1.0, generator);
        col_embed.weight!.uniform_(0.0, 1.0, generator);
    }

    /// <inheritdoc />
    public override Tensor forward(Device device)
    {
        int h = FeatureSize.Height, w = FeatureSize.Width, half = HiddenDim / 2;
        using var scope = NewDisposeScope();
        var columns = col_embed.weight!.unsqueeze(0).expand(h, w, half);
        var rows = row_embed.weight!.unsqueeze(1).expand(h, w, half);
        return cat(new[] { columns, rows }, -1).flatten(0, 1).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// DETR's normalised sine embedding (temperature 10000, scale 2π, C/2 features per axis, y first then x).
/// It has no parameters and is computed once per device.
/// </summary>
public sealed class SinePositionEmbedding : PositionEmbedding
{
    private readonly Dictionary<string, Tensor> cache = new();

    /// <summary>Creates the embedding.</summary>
    public SinePositionEmbedding(GridSize featureSize, int hiddenDim)
        : base(nameof(SinePositionEmbedding), featureSize, hiddenDim)
    {
        RegisterComponents();
    }

    /// <summary>The embedding values, (H·W) x C, computed on the CPU in float32 as the reference does.</summary>
    public Tensor Compute()
    {
        int h = FeatureSize.Height, w = FeatureSize.Width, feats = HiddenDim / 2;
        const double temperature = 10000.0, scale = 2 * Math.PI, eps = 1e-6;
        using var scope = NewDisposeScope();
        var ones = torch.ones(h, w, dtype: float32, device: CPU);
        var yEmbed = ones.cumsum(0, float32);
        var xEmbed = ones.cumsum(1, float32);
        yEmbed = (yEmbed / yEmbed[TensorIndex.Slice(-1), TensorIndex.Colon].PlusScalar(eps)).Times(scale);
        xEmbed = (xEmbed / xEmbed[TensorIndex.Colon, TensorIndex.Slice(-1)].PlusScalar(eps)).Times(scale);

        var dimT = arange(feats, dtype: float32, device: CPU);
        dimT = pow(temperature, 2 * floor_divide(dimT, 2) / feats);

        var posX = xEmbed.unsqueeze(-1) / dimT;
        var posY = yEmbed.unsqueeze(-1) / dimT;
        posX = stack(new[] { posX[.., .., TensorIndex.Slice(0, null, 2)].sin(), posX[.., .., TensorIndex.Slice(1, null, 2)].cos() }, 3).flatten(2);
        posY = stack(new[] { posY[.., .., TensorIndex.Slice(0, null, 2)].sin(), posY[.., .., TensorIndex.Slice(1, null, 2)].cos() }, 3).flatten(2);
        return cat(new[] { posY, posX }, 2).flatten(0, 1).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override Tensor forward(Device device)
    {
        var key = device.ToString();
        lock (cache)
        {
            if (!cache.TryGetValue(key, out var embedding))
            {
                using var cpu = Compute();
                embedding = cpu.to(device).clone().DetachFromDisposeScope();
                cache[key] = embedding;
            }

            return embedding.alias();
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            lock (cache)
            {
                foreach (var t in cache.Values)
                {
                    t.Dispose();
                }

                cache.Clear();
            }
        }

        base.Dispose(disposing);
    }
}
