using System.Text.Json;

namespace UniAD.Core.Reconstruction;

/// <summary>Activation of the transformer's feed-forward blocks.</summary>
public enum TransformerActivation
{
    /// <summary>ReLU (the paper's choice).</summary>
    Relu,

    /// <summary>GELU (exact, erf-based).</summary>
    Gelu,
}

/// <summary>Position embedding added to queries and keys.</summary>
public enum PositionEmbeddingType
{
    /// <summary>Learned row and column tables (the paper's choice).</summary>
    Learned,

    /// <summary>DETR-style normalised sine embedding, temperature 10000.</summary>
    Sine,
}

/// <summary>Feature jitter: per-token Gaussian noise scaled by the token's norm, added in training only.</summary>
public sealed record FeatureJitterOptions
{
    /// <summary>Noise scale (the paper: 20). Noise = N(0, 1) · ‖token‖₂ / C · scale.</summary>
    public double Scale { get; init; } = 20.0;

    /// <summary>Probability that a training batch is jittered (the paper: 1).</summary>
    public double Probability { get; init; } = 1.0;
}

/// <summary>
/// Hyper-parameters of the UniAD reconstruction network. Defaults are the paper's MVTec-AD
/// configuration (EfficientNet-B4 features, 272 channels at stride 16, 14 x 14 tokens).
/// </summary>
public sealed record ReconstructionOptions
{
    /// <summary>Channels of the input features (reference: <c>inplanes</c>).</summary>
    public int InputChannels { get; init; } = 272;

    /// <summary>Stride of the input features relative to the image; the anomaly map is upsampled by it (reference: <c>instride</c>).</summary>
    public int InputStride { get; init; } = 16;

    /// <summary>Height and width of the input feature map (reference: <c>feature_size</c>).</summary>
    public GridSize FeatureSize { get; init; } = new(14, 14);

    /// <summary>Transformer width (reference: <c>hidden_dim</c>).</summary>
    public int HiddenDim { get; init; } = 256;

    /// <summary>Attention heads (reference: <c>nhead</c>).</summary>
    public int NumHeads { get; init; } = 8;

    /// <summary>Encoder layers (reference: <c>num_encoder_layers</c>).</summary>
    public int NumEncoderLayers { get; init; } = 4;

    /// <summary>Decoder layers (reference: <c>num_decoder_layers</c>).</summary>
    public int NumDecoderLayers { get; init; } = 4;

    /// <summary>Feed-forward width (reference: <c>dim_feedforward</c>).</summary>
    public int FeedForwardDim { get; init; } = 1024;

    /// <summary>Dropout probability in attention and feed-forward blocks (training only).</summary>
    public double Dropout { get; init; } = 0.1;

    /// <summary>
    /// The noisy bottleneck: dropout on the projected tokens (<c>input_proj</c>'s output, which every encoder and decoder
    /// layer reads) in training only, with the network's seeded dropout stream. 0 (the default and the paper's) for none;
    /// 0.2 is the value of the faster-converging recipes (FAST_OBJECTIVE.md), beside or in place of feature jitter. It
    /// adds no weights and leaves scoring and the exported graph unchanged. Unlike <see cref="Dropout"/> it keeps the
    /// fused attention kernel, so a CPU step costs about the same.
    /// </summary>
    public double BottleneckDropout { get; init; }

    /// <summary>Feed-forward activation (reference: <c>activation</c>).</summary>
    public TransformerActivation Activation { get; init; } = TransformerActivation.Relu;

    /// <summary>Pre-norm layers instead of post-norm (reference: <c>normalize_before</c>).</summary>
    public bool NormalizeBefore { get; init; }

    /// <summary>Position embedding (reference: <c>pos_embed_type</c>).</summary>
    public PositionEmbeddingType PositionEmbedding { get; init; } = PositionEmbeddingType.Learned;

    /// <summary>Neighbourhood of the neighbor-masked attention, or null for no mask at all (reference: <c>neighbor_size</c>).</summary>
    public GridSize? NeighborSize { get; init; } = new GridSize(7, 7);

    /// <summary>Apply the neighbor mask in the encoder's self-attention (reference: <c>neighbor_mask.mask[0]</c>).</summary>
    public bool MaskEncoder { get; init; } = true;

    /// <summary>Apply the neighbor mask in the decoder's first attention, query embedding to encoder output (reference: <c>mask[1]</c>).</summary>
    public bool MaskDecoderSelf { get; init; } = true;

    /// <summary>Apply the neighbor mask in the decoder's second attention, to the previous layer's output (reference: <c>mask[2]</c>).</summary>
    public bool MaskDecoderCross { get; init; } = true;

    /// <summary>Feature jitter applied in training, or null for none.</summary>
    public FeatureJitterOptions? FeatureJitter { get; init; } = new();

    /// <summary>Seed of the initial weights and of the jitter noise (the reference's seed is 133).</summary>
    public long Seed { get; init; } = 133;

    /// <summary>The training objective and map (default <see cref="ReconstructionObjective.Mse"/>, the paper's).</summary>
    public ReconstructionObjective Objective { get; init; } = ReconstructionObjective.Mse;

    /// <summary>Hard-point mining of <see cref="ReconstructionObjective.GlobalCosine"/> (unused by MSE).</summary>
    public HardMiningOptions HardMining { get; init; } = new();

    /// <summary>
    /// Gaussian smoothing of the anomaly map, sigma in pixels of the input grid: 0 (the default and the paper's) for none;
    /// 4 is the value of the faster-converging recipes (FAST_OBJECTIVE.md) and of the memory bank. It changes the maps the
    /// detector scores, calibrates and evaluates on, and the exported graph; never training.
    /// </summary>
    public double MapSmoothingSigma { get; init; }

    /// <summary>
    /// Most tokens (feature-map positions) a network may have: 64 x 64. Attention and the neighbor mask grow with
    /// its square (4096 tokens: a 16 M-entry mask); larger parts are tiled (<see cref="Tiling.TilingOptions"/>).
    /// </summary>
    public const int MaxTokens = 4096;

    /// <summary>Checks every value and throws an exception naming the first one that is impossible.</summary>
    /// <exception cref="ArgumentException">An option is out of range or inconsistent with another.</exception>
    public void Validate()
    {
        Positive(InputChannels, nameof(InputChannels));
        Positive(InputStride, nameof(InputStride));
        Positive(FeatureSize.Height, $"{nameof(FeatureSize)}.{nameof(GridSize.Height)}");
        Positive(FeatureSize.Width, $"{nameof(FeatureSize)}.{nameof(GridSize.Width)}");
        if ((long)FeatureSize.Height * FeatureSize.Width > MaxTokens)
        {
            throw new ArgumentException($"{nameof(FeatureSize)} = {FeatureSize} has {(long)FeatureSize.Height * FeatureSize.Width} tokens; at most {MaxTokens} are supported (tile large images instead).", nameof(FeatureSize));
        }

        Positive(HiddenDim, nameof(HiddenDim));
        Positive(NumHeads, nameof(NumHeads));
        Positive(NumEncoderLayers, nameof(NumEncoderLayers));
        Positive(NumDecoderLayers, nameof(NumDecoderLayers));
        Positive(FeedForwardDim, nameof(FeedForwardDim));
        if (HiddenDim % NumHeads != 0)
        {
            throw new ArgumentException($"{nameof(NumHeads)} = {NumHeads} does not divide {nameof(HiddenDim)} = {HiddenDim}.", nameof(NumHeads));
        }

        if (HiddenDim % 2 != 0)
        {
            throw new ArgumentException($"{nameof(HiddenDim)} = {HiddenDim} must be even: the position embedding gives half of it to rows and half to columns.", nameof(HiddenDim));
        }

        if (!(Dropout >= 0.0 && Dropout < 1.0))
        {
            throw new ArgumentException($"{nameof(Dropout)} = {Dropout} must lie in [0, 1).", nameof(Dropout));
        }

        if (!(BottleneckDropout >= 0.0 && BottleneckDropout < 1.0))
        {
            throw new ArgumentException($"{nameof(BottleneckDropout)} = {BottleneckDropout.ToString(System.Globalization.CultureInfo.InvariantCulture)} must lie in [0, 1).", nameof(BottleneckDropout));
        }

        if (!Enum.IsDefined(Objective))
        {
            throw new ArgumentException($"{nameof(Objective)} = {Objective} is not a known objective.", nameof(Objective));
        }

        HardMining.Validate();
        if (!(MapSmoothingSigma >= 0 && double.IsFinite(MapSmoothingSigma)))
        {
            throw new ArgumentException($"{nameof(MapSmoothingSigma)} = {MapSmoothingSigma.ToString(System.Globalization.CultureInfo.InvariantCulture)} must be 0 (no smoothing) or a positive number of pixels.", nameof(MapSmoothingSigma));
        }
        if (!Enum.IsDefined(Activation))
        {
            throw new ArgumentException($"{nameof(Activation)} = {Activation} is not a known activation.", nameof(Activation));
        }

        if (!Enum.IsDefined(PositionEmbedding))
        {
            throw new ArgumentException($"{nameof(PositionEmbedding)} = {PositionEmbedding} is not a known position embedding.", nameof(PositionEmbedding));
        }

        if (NeighborSize is { } neighbor)
        {
            // Throws with both sizes in the message when the neighbourhood is not positive or covers the map.
            _ = Attention.NeighborMask.Pattern(FeatureSize, neighbor);
        }

        if (FeatureJitter is { } jitter)
        {
            if (!(jitter.Scale >= 0.0) || double.IsInfinity(jitter.Scale))
            {
                throw new ArgumentException($"{nameof(FeatureJitter)}.{nameof(FeatureJitterOptions.Scale)} = {jitter.Scale} must be finite and non-negative.", nameof(FeatureJitter));
            }

            if (!(jitter.Probability >= 0.0 && jitter.Probability <= 1.0))
            {
                throw new ArgumentException($"{nameof(FeatureJitter)}.{nameof(FeatureJitterOptions.Probability)} = {jitter.Probability} must lie in [0, 1].", nameof(FeatureJitter));
            }
        }
    }

    /// <summary>
    /// Reads the reference implementation's keyword arguments (a JSON object with <c>inplanes</c>,
    /// <c>instride</c>, <c>feature_size</c>, <c>hidden_dim</c>, <c>nhead</c>, <c>num_encoder_layers</c>,
    /// <c>num_decoder_layers</c>, <c>dim_feedforward</c>, <c>dropout</c>, <c>activation</c>,
    /// <c>normalize_before</c>, <c>pos_embed_type</c>, <c>neighbor_size</c> / <c>neighbor_mask</c>,
    /// <c>feature_jitter</c>). Keys that are absent keep this library's defaults; <c>inplanes</c> and
    /// <c>instride</c> may be numbers or one-element lists, as in the reference's configs.
    /// </summary>
    /// <exception cref="FormatException">A value has the wrong JSON type or an unknown name.</exception>
    public static ReconstructionOptions FromReferenceConfig(JsonElement config)
    {
        if (config.ValueKind != JsonValueKind.Object)
        {
            throw new FormatException($"A reference reconstruction config must be a JSON object, got {config.ValueKind}.");
        }

        var o = new ReconstructionOptions();
        if (config.TryGetProperty("inplanes", out var v)) o = o with { InputChannels = ScalarOrSingleton(v, "inplanes") };
        if (config.TryGetProperty("instride", out v)) o = o with { InputStride = ScalarOrSingleton(v, "instride") };
        if (config.TryGetProperty("feature_size", out v)) o = o with { FeatureSize = Pair(v, "feature_size") };
        if (config.TryGetProperty("hidden_dim", out v)) o = o with { HiddenDim = Int(v, "hidden_dim") };
        if (config.TryGetProperty("nhead", out v)) o = o with { NumHeads = Int(v, "nhead") };
        if (config.TryGetProperty("num_encoder_layers", out v)) o = o with { NumEncoderLayers = Int(v, "num_encoder_layers") };
        if (config.TryGetProperty("num_decoder_layers", out v)) o = o with { NumDecoderLayers = Int(v, "num_decoder_layers") };
        if (config.TryGetProperty("dim_feedforward", out v)) o = o with { FeedForwardDim = Int(v, "dim_feedforward") };
        if (config.TryGetProperty("dropout", out v)) o = o with { Dropout = Number(v, "dropout") };
        if (config.TryGetProperty("normalize_before", out v)) o = o with { NormalizeBefore = Bool(v, "normalize_before") };
        if (config.TryGetProperty("activation", out v))
        {
            o = o with
            {
                Activation = v.GetString() switch
                {
                    "relu" => TransformerActivation.Relu,
                    "gelu" => TransformerActivation.Gelu,
                    var other => throw new FormatException($"Unknown activation '{other}' (expected relu or gelu)."),
                },
            };
        }

        if (config.TryGetProperty("pos_embed_type", out v))
        {
            o = o with
            {
                PositionEmbedding = v.GetString() switch
                {
                    "learned" or "v3" => PositionEmbeddingType.Learned,
                    "sine" or "v2" => PositionEmbeddingType.Sine,
                    var other => throw new FormatException($"Unknown pos_embed_type '{other}' (expected learned or sine)."),
                },
            };
        }

        // Fixture configs carry neighbor_size and neighbor_mask (a list of three booleans) side by side;
        // the trainer's configs nest them: neighbor_mask: { neighbor_size: [h, w], mask: [...] }.
        JsonElement? maskFlags = null;
        bool sawNeighborSize = false;
        GridSize? neighborSize = null;
        if (config.TryGetProperty("neighbor_size", out v))
        {
            sawNeighborSize = true;
            neighborSize = v.ValueKind == JsonValueKind.Null ? null : Pair(v, "neighbor_size");
        }

        if (config.TryGetProperty("neighbor_mask", out v))
        {
            if (v.ValueKind == JsonValueKind.Array)
            {
                maskFlags = v;
            }
            else if (v.ValueKind == JsonValueKind.Object)
            {
                sawNeighborSize = true;
                neighborSize = v.TryGetProperty("neighbor_size", out var ns) && ns.ValueKind != JsonValueKind.Null ? Pair(ns, "neighbor_mask.neighbor_size") : null;
                if (v.TryGetProperty("mask", out var m))
                {
                    maskFlags = m;
                }
            }
            else if (v.ValueKind == JsonValueKind.Null)
            {
                sawNeighborSize = true;
                neighborSize = null;
            }
            else
            {
                throw new FormatException($"neighbor_mask must be a list, an object or null, got {v.ValueKind}.");
            }
        }

        if (sawNeighborSize)
        {
            o = o with { NeighborSize = neighborSize };
        }

        if (maskFlags is { } flags)
        {
            if (flags.ValueKind != JsonValueKind.Array || flags.GetArrayLength() != 3)
            {
                throw new FormatException($"neighbor_mask flags must be a list of three booleans, got {flags}.");
            }

            o = o with
            {
                MaskEncoder = Bool(flags[0], "neighbor_mask[0]"),
                MaskDecoderSelf = Bool(flags[1], "neighbor_mask[1]"),
                MaskDecoderCross = Bool(flags[2], "neighbor_mask[2]"),
            };
        }

        if (config.TryGetProperty("feature_jitter", out v))
        {
            o = o with
            {
                FeatureJitter = v.ValueKind == JsonValueKind.Null
                    ? null
                    : new FeatureJitterOptions
                    {
                        Scale = v.TryGetProperty("scale", out var s) ? Number(s, "feature_jitter.scale") : 20.0,
                        Probability = v.TryGetProperty("prob", out var p) ? Number(p, "feature_jitter.prob") : 1.0,
                    },
            };
        }

        return o;
    }

    private static void Positive(int value, string name)
    {
        if (value <= 0)
        {
            throw new ArgumentException($"{name} = {value} must be positive.", name);
        }
    }

    private static int Int(JsonElement v, string name) =>
        v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw new FormatException($"'{name}' must be an integer, got {v}.");

    private static double Number(JsonElement v, string name) =>
        v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw new FormatException($"'{name}' must be a number, got {v}.");

    private static bool Bool(JsonElement v, string name) => v.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw new FormatException($"'{name}' must be true or false, got {v}."),
    };

    private static int ScalarOrSingleton(JsonElement v, string name) =>
        v.ValueKind == JsonValueKind.Array
            ? (v.GetArrayLength() == 1 ? Int(v[0], name) : throw new FormatException($"'{name}' must hold exactly one value, got {v}."))
            : Int(v, name);

    private static GridSize Pair(JsonElement v, string name) =>
        v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 2
            ? new GridSize(Int(v[0], name), Int(v[1], name))
            : throw new FormatException($"'{name}' must be a list [height, width], got {v}.");
}
