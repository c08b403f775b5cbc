using UniAD.Core.TorchSupport;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace UniAD.Core.Reconstruction;

/// <summary>
/// The UniAD reconstruction network: feature jitter (training only), <c>input_proj</c>, the bottleneck's dropout
/// (training only, <see cref="ReconstructionOptions.BottleneckDropout"/>; off by default), position
/// embedding, transformer with layer-wise query decoder and neighbor-masked attention,
/// <c>output_proj</c>; and the anomaly map <c>pred</c>. Its state-dict keys are the reference's
/// (<c>pos_embed.*</c>, <c>transformer.encoder.layers.{i}.*</c>, <c>transformer.decoder.layers.{i}.*</c>,
/// <c>transformer.decoder.norm.*</c>, <c>input_proj.*</c>, <c>output_proj.*</c>), so the authors'
/// checkpoints load unchanged.
/// </summary>
/// <remarks>
/// Not thread-safe for concurrent forward passes in training mode (the jitter generator is shared);
/// evaluation-mode forwards hold no mutable state besides lazily created caches, which are locked.
/// </remarks>
public sealed class UniADReconstruction : Module<Tensor, ReconstructionOutput>
{
    private readonly PositionEmbedding pos_embed;
    private readonly UniADTransformer transformer;
    private readonly Linear input_proj;
    private readonly Linear output_proj;
    private readonly SeededDropout bottleneck_dropout;
    private readonly object noiseGate = new();
    private readonly DropoutRandom dropoutRandom;
    private Generator? jitterGenerator;
    private Random jitterCoin;
    private long noiseSeed;

    /// <summary>Builds the network with freshly initialised, seeded weights (<see cref="ReconstructionOptions.Seed"/>).</summary>
    /// <exception cref="ArgumentException">An option is impossible (see <see cref="ReconstructionOptions.Validate"/>).</exception>
    public UniADReconstruction(ReconstructionOptions options)
        : base(nameof(UniADReconstruction))
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        using var init = new Generator((ulong)options.Seed);
        pos_embed = PositionEmbedding.Create(options.PositionEmbedding, options.FeatureSize, options.HiddenDim, init);
        dropoutRandom = new DropoutRandom(options.Seed ^ 0x5DEECE66DL);
        transformer = new UniADTransformer(options, init, dropoutRandom);
        input_proj = Linear(options.InputChannels, options.HiddenDim);
        output_proj = Linear(options.HiddenDim, options.InputChannels);
        bottleneck_dropout = new SeededDropout(options.BottleneckDropout, dropoutRandom);
        RegisterComponents();
        TorchInit.XavierLinear(input_proj, init);
        TorchInit.XavierLinear(output_proj, init);
        noiseSeed = options.Seed;
        jitterCoin = new Random(unchecked((int)(options.Seed ^ (options.Seed >> 32))));
    }

    /// <summary>
    /// Restarts every source of training noise (feature jitter, dropout masks) from <paramref name="seed"/>,
    /// as if the network had been built with it. A trainer that reseeds at every epoch start makes a run
    /// resumed at an epoch boundary repeat an uninterrupted one exactly, on any device: the noise is drawn on the CPU
    /// from these seeds and moved to the network's device.
    /// </summary>
    public void ReseedNoise(long seed)
    {
        lock (noiseGate)
        {
            jitterGenerator?.Dispose();
            jitterGenerator = null;
            noiseSeed = seed;
            jitterCoin = new Random(unchecked((int)(seed ^ (seed >> 32))));
            dropoutRandom.Reseed(seed ^ 0x5DEECE66DL);
        }
    }

    /// <summary>The options the network was built with.</summary>
    public ReconstructionOptions Options { get; }

    /// <summary>Reconstructs <paramref name="featureAlign"/> (B x C x h x w) and computes its anomaly map.</summary>
    /// <exception cref="ArgumentException">The input is not B x <see cref="ReconstructionOptions.InputChannels"/> x h x w with the configured feature size.</exception>
    public override ReconstructionOutput forward(Tensor featureAlign)
    {
        CheckInput(featureAlign);
        using var scope = NewDisposeScope();
        var featureRec = Reconstruct(featureAlign);
        var pred = AnomalyMap.Of(Options.Objective, featureRec, featureAlign, Options.InputStride);
        return new ReconstructionOutput(featureRec.MoveToOuterDisposeScope(), pred.MoveToOuterDisposeScope());
    }

    /// <summary>The training loss of the configured objective at optimiser step <paramref name="step"/> (<see cref="ReconstructionLoss.Of"/>).</summary>
    public Tensor Loss(Tensor featureRec, Tensor featureAlign, long step) => ReconstructionLoss.Of(Options, featureRec, featureAlign, step);

    /// <summary>Reconstructs the features only (no anomaly map): B x C x h x w in, the same shape out.</summary>
    /// <exception cref="ArgumentException">The input has the wrong shape.</exception>
    public Tensor Reconstruct(Tensor featureAlign)
    {
        CheckInput(featureAlign);
        using var scope = NewDisposeScope();
        long b = featureAlign.shape[0], c = featureAlign.shape[1], h = featureAlign.shape[2], w = featureAlign.shape[3];
        var tokens = featureAlign.flatten(2).permute(2, 0, 1); // (h·w) x B x C
        if (training && Options.FeatureJitter is { } jitter)
        {
            tokens = AddJitter(tokens, jitter);
        }

        // The noisy bottleneck (training only): dropout on the projected tokens every encoder and decoder layer reads.
        var hidden = bottleneck_dropout.forward(input_proj.forward(tokens));
        var pos = pos_embed.forward(featureAlign.device);
        var decoded = transformer.forward(hidden, pos);
        var rec = output_proj.forward(decoded); // (h·w) x B x C
        return rec.permute(1, 2, 0).reshape(b, c, h, w).MoveToOuterDisposeScope();
    }

    private Tensor AddJitter(Tensor tokens, FeatureJitterOptions jitter)
    {
        lock (noiseGate)
        {
            if (jitterCoin.NextDouble() > jitter.Probability)
            {
                return tokens;
            }

            // The seeded generator is a CPU one and the noise is drawn on the CPU, then moved: TorchSharp 0.107's native
            // generator ignores a device argument and always makes a CPU generator (TorchSharp issue 1194), which a CUDA
            // draw rejects. CPU and CUDA training therefore get the same noise.
            jitterGenerator ??= new Generator(unchecked((ulong)noiseSeed + 0x9E3779B97F4A7C15UL));
            long channels = tokens.shape[2];
            var norms = tokens.norm(2, keepdim: true).DividedBy(channels);
            var noise = randn(tokens.shape, dtype: tokens.dtype, device: CPU, generator: jitterGenerator).to(tokens.device); // the forward's scope frees both
            return tokens.Plus(noise.mul(norms).Times(jitter.Scale));
        }
    }

    private void CheckInput(Tensor featureAlign)
    {
        ArgumentNullException.ThrowIfNull(featureAlign);
        var o = Options;
        if (featureAlign.dim() != 4 || featureAlign.shape[1] != o.InputChannels || featureAlign.shape[2] != o.FeatureSize.Height || featureAlign.shape[3] != o.FeatureSize.Width)
        {
            throw new ArgumentException(
                $"Expected features of shape B x {o.InputChannels} x {o.FeatureSize.Height} x {o.FeatureSize.Width}; got [{string.Join(", ", featureAlign.shape)}].",
                nameof(featureAlign));
        }

        if (featureAlign.shape[0] == 0)
        {
            throw new ArgumentException("The batch is empty.", nameof(featureAlign));
        }

        if (!featureAlign.is_floating_point())
        {
            throw new ArgumentException($"Features must be floating point, got {featureAlign.dtype}.", nameof(featureAlign));
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            lock (noiseGate)
            {
                jitterGenerator?.Dispose();
                jitterGenerator = null;
            }
        }

        base.Dispose(disposing);
    }
}
