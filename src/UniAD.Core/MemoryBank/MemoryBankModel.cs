using UniAD.Core.Backbones;
using UniAD.Core.Models;
using UniAD.Core.Weights;
using static TorchSharp.torch;

namespace UniAD.Core.MemoryBank;

/// <summary>
/// The memory-bank family's tensor model (<c>shared/methods/PATCHCORE.md</c>): a frozen backbone's locally aware patch
/// features (<see cref="PatchFeatures.Embed"/>, on the grid of its shallowest output), each patch scored by its Euclidean
/// distance to the nearest patch of the bank (<see cref="NearestNeighbour"/>), the score grid upsampled bilinearly to the
/// input size and smoothed (<see cref="PatchMemoryBank.Maps"/>). Nothing is trained: <see cref="SetBank"/> takes the bank
/// a fit chose (the detector's <c>Train</c> fits it). The bank is state (<c>bank</c> in <see cref="State"/>), not a
/// registered buffer, because its size is only known after the fit; it follows the images' device.
/// </summary>
public sealed class MemoryBankModel : nn.Module<Tensor, Tensor>, IAnomalyModel
{
    /// <summary>The name of the bank in <see cref="State"/>.</summary>
    public const string BankKey = "bank";

    private const string BackbonePrefix = "backbone.";

    private readonly FeatureExtractor backbone;
    private Tensor bank;

    /// <summary>A model without a bank (fit it, or load a state) on the backbone's device.</summary>
    /// <exception cref="ArgumentException">The input size is not a multiple of the backbone's shallowest stride, or the options are impossible.</exception>
    public MemoryBankModel(FeatureExtractor backbone, GridSize inputSize, MemoryBankOptions options)
        : base(nameof(MemoryBankModel))
    {
        ArgumentNullException.ThrowIfNull(backbone);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        int stride = backbone.Strides[0];
        if (inputSize.Height % stride != 0 || inputSize.Width % stride != 0)
        {
            throw new ArgumentException($"InputSize = {inputSize} must be a multiple of the backbone's shallowest stride {stride}.", nameof(inputSize));
        }

        this.backbone = backbone;
        InputSize = inputSize;
        Options = options;
        register_module("backbone", backbone);
        var device = backbone.parameters().FirstOrDefault()?.device ?? CPU;
        bank = zeros(new long[] { 0, FeatureWidth }, device: device).DetachFromDisposeScope();
    }

    /// <inheritdoc />
    public string Family => Detection.ModelFamilies.MemoryBank;

    /// <inheritdoc />
    public GridSize InputSize { get; }

    /// <summary>The fit and smoothing settings.</summary>
    public MemoryBankOptions Options { get; }

    /// <inheritdoc />
    public FeatureExtractor Backbone => backbone;

    /// <inheritdoc />
    nn.Module IAnomalyModel.Module => this;

    /// <summary>Channels of a patch feature: the sum of the backbone outputs' channels.</summary>
    public int FeatureWidth => backbone.Channels.Sum();

    /// <summary>The patch grid of one input: the input size over the backbone's shallowest stride.</summary>
    public GridSize PatchGrid => new(InputSize.Height / backbone.Strides[0], InputSize.Width / backbone.Strides[0]);

    /// <summary>The bank: K x <see cref="FeatureWidth"/> normal patch features (K = 0 before a fit).</summary>
    public Tensor Bank => bank;

    /// <summary>Whether the model has a bank (it scores only then).</summary>
    public bool IsFitted => bank.shape[0] > 0;

    /// <summary>The patch features of B x 3 x H x W normalised images: B x <see cref="FeatureWidth"/> x h x w (no gradients).</summary>
    public Tensor Embed(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        RequireInput(images);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return PatchFeatures.Embed(backbone.forward(images), Options.Neighbourhood).MoveToOuterDisposeScope();
    }

    /// <summary>Takes <paramref name="patches"/> (K x <see cref="FeatureWidth"/>, K &gt; 0) as the bank (a copy on the model's device).</summary>
    /// <exception cref="ArgumentException">The bank's shape does not fit, or it holds NaN or infinity.</exception>
    public void SetBank(Tensor patches)
    {
        ArgumentNullException.ThrowIfNull(patches);
        if (patches.dim() != 2 || patches.shape[0] == 0 || patches.shape[1] != FeatureWidth || patches.dtype != ScalarType.Float32)
        {
            throw new ArgumentException($"A bank is K x {FeatureWidth} float32 patches (K > 0); got [{string.Join(" x ", patches.shape)}] {patches.dtype}.", nameof(patches));
        }

        using (var check = NewDisposeScope())
        {
            if (!isfinite(patches).all().cpu().item<bool>())
            {
                throw new ArgumentException("The bank holds NaN or infinity.", nameof(patches));
            }
        }

        var device = bank.device;
        var replaced = bank;
        using (var scope = NewDisposeScope())
        {
            bank = patches.detach().to(device).contiguous().clone().DetachFromDisposeScope();
        }

        replaced.Dispose();
    }

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">The model has no bank yet.</exception>
    public Tensor Maps(Tensor images)
    {
        if (!IsFitted)
        {
            throw new InvalidOperationException("This memory-bank model has no bank yet: fit it (AnomalyDetector.Train) or load a fitted detector.");
        }

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var features = Embed(images);
        if (bank.device != features.device)
        {
            SetBankDevice(features.device);
        }

        var scores = PatchMemoryBank.PatchScores(features, bank);
        return PatchMemoryBank.Maps(scores, InputSize.Height, InputSize.Width, Options.Sigma).MoveToOuterDisposeScope();
    }

    /// <summary>The maps (B x H x W), as <see cref="Maps"/>.</summary>
    public override Tensor forward(Tensor images) => Maps(images);

    /// <inheritdoc />
    public IReadOnlyDictionary<string, Tensor> State()
    {
        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (key, value) in backbone.state_dict())
        {
            state[BackbonePrefix + key] = value;
        }

        state[BankKey] = bank;
        return state;
    }

    /// <inheritdoc />
    public void LoadState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var backboneState = state.Where(kv => kv.Key.StartsWith(BackbonePrefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[BackbonePrefix.Length..], kv => kv.Value, StringComparer.Ordinal);
        var unexpected = state.Keys.Where(k => k != BankKey && !k.StartsWith(BackbonePrefix, StringComparison.Ordinal)).ToList();
        if (!state.TryGetValue(BankKey, out var stored) || unexpected.Count > 0 || stored.dim() != 2 || stored.shape[1] != FeatureWidth || stored.shape[0] == 0)
        {
            var shapes = stored is null ? new List<string>() : new List<string> { $"{BankKey}: expected [K > 0, {FeatureWidth}], got [{string.Join(", ", stored.shape)}]" };
            throw new StateDictMismatchException(GetName(), (state as TensorDictionary)?.Source, stored is null ? new[] { BankKey } : Array.Empty<string>(), unexpected, stored is not null && stored.dim() == 2 && stored.shape[1] == FeatureWidth && stored.shape[0] > 0 ? Array.Empty<string>() : shapes);
        }

        StateDict.Load(backbone, backboneState);
        FusedWeights.Invalidate(this);
        SetBank(stored.to(ScalarType.Float32));
    }

    /// <summary>The backbone stays frozen in evaluation mode.</summary>
    public override void train(bool on = true)
    {
        base.train(on);
        backbone.train(false);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            bank.Dispose();
        }

        base.Dispose(disposing);
    }

    private void SetBankDevice(Device device)
    {
        var replaced = bank;
        using (var scope = NewDisposeScope())
        {
            bank = replaced.to(device).clone().DetachFromDisposeScope();
        }

        replaced.Dispose();
    }

    private void RequireInput(Tensor images)
    {
        if (images.dim() != 4 || images.shape[1] != 3 || images.shape[2] != InputSize.Height || images.shape[3] != InputSize.Width)
        {
            throw new ArgumentException($"Expected images B x 3 x {InputSize.Height} x {InputSize.Width}; got [{string.Join(", ", images.shape)}].", nameof(images));
        }
    }
}
