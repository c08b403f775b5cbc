using UniAD.Core.Backbones;
using UniAD.Core.Reconstruction;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace UniAD.Core.Models;

/// <summary>What the whole model returns for a batch of images. Dispose it (or let a dispose scope do so).</summary>
public sealed class UniADOutput : IDisposable
{
    /// <summary>Wraps the result tensors.</summary>
    public UniADOutput(Tensor featureAlign, Tensor featureRec, Tensor pred)
    {
        FeatureAlign = featureAlign;
        FeatureRec = featureRec;
        Pred = pred;
    }

    /// <summary>The neck's output: backbone features at the common stride, B x C x h x w.</summary>
    public Tensor FeatureAlign { get; }

    /// <summary>The reconstructed features, B x C x h x w.</summary>
    public Tensor FeatureRec { get; }

    /// <summary>The anomaly map, B x 1 x H x W (H, W = h, w times the stride).</summary>
    public Tensor Pred { get; }

    /// <inheritdoc />
    public void Dispose()
    {
        FeatureAlign.Dispose();
        FeatureRec.Dispose();
        Pred.Dispose();
    }
}

/// <summary>
/// The pure tensor model: frozen backbone → MFCN neck → UniAD reconstruction → anomaly map. State-dict
/// keys are the reference's without its <c>module.</c> prefix: <c>backbone.*</c> and <c>reconstruction.*</c>
/// (the neck has no weights). Training and inference orchestration live elsewhere.
/// </summary>
public sealed class UniADModel : Module<Tensor, UniADOutput>, IAnomalyModel
{
    private readonly FeatureExtractor backbone;
    private readonly MfcnNeck neck;
    private readonly UniADReconstruction reconstruction;

    /// <summary>Assembles the model and checks that the parts fit together.</summary>
    /// <exception cref="ArgumentException">The neck does not match the backbone's outputs, or the reconstruction's channels or stride differ from the neck's.</exception>
    public UniADModel(FeatureExtractor backbone, MfcnNeck neck, UniADReconstruction reconstruction)
        : base(nameof(UniADModel))
    {
        ArgumentNullException.ThrowIfNull(backbone);
        ArgumentNullException.ThrowIfNull(neck);
        ArgumentNullException.ThrowIfNull(reconstruction);
        if (!backbone.Channels.SequenceEqual(neck.InputChannels) || !backbone.Strides.SequenceEqual(neck.InputStrides))
        {
            throw new ArgumentException($"The neck expects channels [{string.Join(", ", neck.InputChannels)}] at strides [{string.Join(", ", neck.InputStrides)}]; {backbone.ModelName} gives [{string.Join(", ", backbone.Channels)}] at [{string.Join(", ", backbone.Strides)}].", nameof(neck));
        }

        var o = reconstruction.Options;
        if (o.InputChannels != neck.OutputChannels || o.InputStride != neck.OutputStride)
        {
            throw new ArgumentException($"The reconstruction expects {o.InputChannels} channels at stride {o.InputStride}; the neck gives {neck.OutputChannels} at stride {neck.OutputStride}.", nameof(reconstruction));
        }

        this.backbone = backbone;
        this.neck = neck;
        this.reconstruction = reconstruction;
        RegisterComponents();
    }

    /// <summary>The frozen feature extractor.</summary>
    public FeatureExtractor Backbone => backbone;

    /// <summary>The neck.</summary>
    public MfcnNeck Neck => neck;

    /// <summary>The reconstruction network.</summary>
    public UniADReconstruction Reconstruction => reconstruction;

    /// <summary>The image size the model expects: the reconstruction's feature size times its stride.</summary>
    public GridSize InputSize => new(reconstruction.Options.FeatureSize.Height * reconstruction.Options.InputStride, reconstruction.Options.FeatureSize.Width * reconstruction.Options.InputStride);

    /// <summary>The backbone and neck only: B x 3 x H x W normalized images → feature_align (no gradients).</summary>
    /// <remarks>
    /// On the CPU, a backbone with a preferred pass size (EfficientNet: 2 images) runs on slices of the
    /// batch of that size: its large early activations then stay small enough to be reused from cache
    /// and from the allocator (batch 8 of EfficientNet-B4 at 224: about 25 % less time per image). Every
    /// image's features are computed independently either way.
    /// </remarks>
    public Tensor ExtractFeatures(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        int slice = backbone.CpuImagesPerPass;
        long n = images.dim() == 4 ? images.shape[0] : 0;
        if (slice <= 0 || n <= slice || images.device_type != TorchSharp.DeviceType.CPU)
        {
            return neck.forward(backbone.forward(images)).MoveToOuterDisposeScope();
        }

        var parts = new List<Tensor>();
        for (long i = 0; i < n; i += slice)
        {
            using var part = NewDisposeScope();
            parts.Add(neck.forward(backbone.forward(images.narrow(0, i, Math.Min(slice, n - i)))).MoveToOuterDisposeScope());
        }

        return cat(parts, 0).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public string Family => Detection.ModelFamilies.UniAD;

    /// <inheritdoc />
    nn.Module IAnomalyModel.Module => this;

    /// <summary>
    /// UniAD's anomaly maps (<see cref="UniADOutput.Pred"/> without its channel): B x H x W at the input size, smoothed by
    /// <see cref="MapSmoothing.GaussianBlur"/> when <see cref="ReconstructionOptions.MapSmoothingSigma"/> is set.
    /// </summary>
    /// <exception cref="ArgumentException">The images do not have the input size.</exception>
    public Tensor Maps(Tensor images)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var output = forward(images);
        double sigma = reconstruction.Options.MapSmoothingSigma;
        var map = sigma > 0 ? MapSmoothing.GaussianBlur(output.Pred, sigma) : output.Pred;
        return map.squeeze(1).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public IReadOnlyDictionary<string, Tensor> State() => state_dict();

    /// <inheritdoc />
    public void LoadState(IReadOnlyDictionary<string, Tensor> state) => Weights.StateDict.Load(this, state);

    /// <summary>Runs the whole pipeline on normalized images (B x 3 x H x W).</summary>
    /// <exception cref="ArgumentException">The images do not have the expected size.</exception>
    public override UniADOutput forward(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        var size = InputSize;
        if (images.dim() != 4 || images.shape[2] != size.Height || images.shape[3] != size.Width)
        {
            throw new ArgumentException($"Expected images B x 3 x {size.Height} x {size.Width}; got [{string.Join(", ", images.shape)}].", nameof(images));
        }

        using var scope = NewDisposeScope();
        var align = ExtractFeatures(images);
        var output = reconstruction.forward(align);
        return new UniADOutput(align.MoveToOuterDisposeScope(), output.FeatureRec.MoveToOuterDisposeScope(), output.Pred.MoveToOuterDisposeScope());
    }

    /// <inheritdoc />
    public override (IList<string>, IList<string>) load_state_dict(Dictionary<string, Tensor> source, bool strict = true, IList<string>? skip = null)
    {
        try
        {
            return base.load_state_dict(source, strict, skip);
        }
        finally
        {
            FusedWeights.Invalidate(this); // the backbone's BatchNorm-folded weights
        }
    }

    /// <inheritdoc />
    public override Module load(BinaryReader reader, bool strict = true, IList<string>? skip = null, Dictionary<string, bool>? loadedParameters = null)
    {
        try
        {
            return base.load(reader, strict, skip, loadedParameters);
        }
        finally
        {
            FusedWeights.Invalidate(this);
        }
    }

    /// <summary>Training mode affects only the reconstruction (dropout, jitter); the backbone stays frozen in evaluation mode.</summary>
    public override void train(bool on = true)
    {
        base.train(on);
        backbone.train(false);
    }
}
