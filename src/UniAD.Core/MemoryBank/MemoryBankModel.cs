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
/// registered buffer, because its size is only known after the fit; it follows the images' device. With
/// <see cref="MemoryBankOptions.PerClassBanks"/> the model holds one bank per class (<see cref="SetClassBanks"/>,
/// <c>banks.&lt;class&gt;</c> in the state) and every image is scored against its own class's bank.
/// </summary>
public sealed class MemoryBankModel : nn.Module<Tensor, Tensor>, IAnomalyModel
{
    /// <summary>The name of the bank in <see cref="State"/>.</summary>
    public const string BankKey = "bank";

    /// <summary>The prefix of a class's bank in <see cref="State"/> (per-class banks): <c>banks.&lt;class&gt;</c>.</summary>
    public const string ClassBankPrefix = "banks.";

    private const string BackbonePrefix = "backbone.";

    private readonly FeatureExtractor backbone;
    private readonly SortedDictionary<string, Tensor> classBanks = new(StringComparer.Ordinal);
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

    /// <summary>The bank: K x <see cref="FeatureWidth"/> normal patch features (K = 0 before a fit, and always with per-class banks).</summary>
    public Tensor Bank => bank;

    /// <summary>The per-class banks by class name (ordinal order; empty for a unified bank or before a fit), each K x <see cref="FeatureWidth"/>.</summary>
    public IReadOnlyDictionary<string, Tensor> ClassBanks => classBanks;

    /// <summary>Whether the model has its bank or banks (it scores only then).</summary>
    public bool IsFitted => Options.PerClassBanks ? classBanks.Count > 0 : bank.shape[0] > 0;

    /// <inheritdoc />
    public IReadOnlyCollection<string>? Classes => Options.PerClassBanks ? classBanks.Keys : null;

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
    /// <exception cref="InvalidOperationException">The model has per-class banks (<see cref="SetClassBanks"/>).</exception>
    public void SetBank(Tensor patches)
    {
        if (Options.PerClassBanks)
        {
            throw new InvalidOperationException("This memory-bank model has one bank per class (MemoryBank.PerClassBanks): use SetClassBanks.");
        }

        var copy = CheckedCopy(patches, nameof(patches), "The bank");
        var replaced = bank;
        bank = copy;
        replaced.Dispose();
    }

    /// <summary>
    /// Takes one bank per class (each K x <see cref="FeatureWidth"/>, K &gt; 0; copies on the model's device), replacing
    /// every bank the model had. Only for <see cref="MemoryBankOptions.PerClassBanks"/>.
    /// </summary>
    /// <exception cref="ArgumentException">No class, an empty or blank class name, or a bank whose shape does not fit or that holds NaN or infinity (the class is named).</exception>
    /// <exception cref="InvalidOperationException">The model has one bank for all classes (<see cref="SetBank"/>).</exception>
    public void SetClassBanks(IReadOnlyDictionary<string, Tensor> banks)
    {
        ArgumentNullException.ThrowIfNull(banks);
        if (!Options.PerClassBanks)
        {
            throw new InvalidOperationException("This memory-bank model has one bank for all classes: use SetBank, or build it with MemoryBank.PerClassBanks = true.");
        }

        if (banks.Count == 0)
        {
            throw new ArgumentException("Per-class banks need at least one class.", nameof(banks));
        }

        var copies = new SortedDictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (className, patches) in banks)
            {
                if (string.IsNullOrWhiteSpace(className))
                {
                    throw new ArgumentException("A per-class bank needs a class name (got an empty one).", nameof(banks));
                }

                copies[className] = CheckedCopy(patches, nameof(banks), $"The bank of class '{className}'");
            }
        }
        catch
        {
            foreach (var c in copies.Values)
            {
                c.Dispose();
            }

            throw;
        }

        DisposeClassBanks();
        foreach (var (className, copy) in copies)
        {
            classBanks[className] = copy;
        }
    }

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">The model has no bank yet.</exception>
    /// <exception cref="ArgumentException">The model has per-class banks: it needs the images' classes (<see cref="Maps(Tensor, IReadOnlyList{string})"/>).</exception>
    public Tensor Maps(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        return Maps(images, new string?[images.dim() > 0 ? images.shape[0] : 0]);
    }

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">The model has no bank yet.</exception>
    public Tensor Maps(Tensor images, IReadOnlyList<string?> classNames)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(classNames);
        if (!IsFitted)
        {
            throw new InvalidOperationException("This memory-bank model has no bank yet: fit it (AnomalyDetector.Train) or load a fitted detector.");
        }

        if (Options.PerClassBanks)
        {
            RequireInput(images);
            if (classNames.Count != images.shape[0])
            {
                throw new ArgumentException($"{classNames.Count} classes for {images.shape[0]} images.", nameof(classNames));
            }

            Detection.ScoringSteps.RequireClasses(classBanks.Keys, classNames, Detection.ScoringSteps.MemoryBankPart);
        }

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var features = Embed(images);
        var scores = Options.PerClassBanks ? ClassPatchScores(features, classNames) : PatchMemoryBank.PatchScores(features, BankOn(features.device));
        return PatchMemoryBank.Maps(scores, InputSize.Height, InputSize.Width, Options.Sigma).MoveToOuterDisposeScope();
    }

    /// <summary>The maps (B x H x W), as <see cref="Maps(Tensor)"/>.</summary>
    public override Tensor forward(Tensor images) => Maps(images);

    /// <inheritdoc />
    public IReadOnlyDictionary<string, Tensor> State()
    {
        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (key, value) in backbone.state_dict())
        {
            state[BackbonePrefix + key] = value;
        }

        if (Options.PerClassBanks)
        {
            foreach (var (className, classBank) in classBanks)
            {
                state[ClassBankPrefix + className] = classBank;
            }
        }
        else
        {
            state[BankKey] = bank;
        }

        return state;
    }

    /// <inheritdoc />
    public void LoadState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var backboneState = state.Where(kv => kv.Key.StartsWith(BackbonePrefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[BackbonePrefix.Length..], kv => kv.Value, StringComparer.Ordinal);

        // The bank entries: "bank" for one bank, one "banks.<class>" per class otherwise.
        bool IsBank(string key) => Options.PerClassBanks ? key.StartsWith(ClassBankPrefix, StringComparison.Ordinal) : key == BankKey;
        var stored = state.Where(kv => IsBank(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        var unexpected = state.Keys.Where(k => !IsBank(k) && !k.StartsWith(BackbonePrefix, StringComparison.Ordinal)).ToList();
        var shapes = stored.Where(kv => kv.Value.dim() != 2 || kv.Value.shape[1] != FeatureWidth || kv.Value.shape[0] == 0)
            .Select(kv => $"{kv.Key}: expected [K > 0, {FeatureWidth}], got [{string.Join(", ", kv.Value.shape)}]").ToList();
        if (stored.Count == 0 || unexpected.Count > 0 || shapes.Count > 0)
        {
            var missing = stored.Count > 0 ? Array.Empty<string>() : new[] { Options.PerClassBanks ? ClassBankPrefix + "<class>" : BankKey };
            throw new StateDictMismatchException(GetName(), (state as TensorDictionary)?.Source, missing, unexpected, shapes);
        }

        StateDict.Load(backbone, backboneState);
        FusedWeights.Invalidate(this);
        using var scope = NewDisposeScope();
        if (Options.PerClassBanks)
        {
            SetClassBanks(stored.ToDictionary(kv => kv.Key[ClassBankPrefix.Length..], kv => kv.Value.to(ScalarType.Float32), StringComparer.Ordinal));
        }
        else
        {
            SetBank(stored[BankKey].to(ScalarType.Float32));
        }
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
            DisposeClassBanks();
        }

        base.Dispose(disposing);
    }

    /// <summary>Patch scores of B x D x h x w features, each image against its class's bank: B x h x w.</summary>
    private Tensor ClassPatchScores(Tensor features, IReadOnlyList<string?> classNames)
    {
        var rows = new Tensor[classNames.Count];
        foreach (var group in Enumerable.Range(0, classNames.Count).GroupBy(i => classNames[i]!, StringComparer.Ordinal))
        {
            var members = group.ToArray();
            var chosen = features.index_select(0, tensor(members.Select(i => (long)i).ToArray(), device: features.device));
            var scores = PatchMemoryBank.PatchScores(chosen, ClassBankOn(group.Key, features.device));
            for (int j = 0; j < members.Length; j++)
            {
                rows[members[j]] = scores[j];
            }
        }

        return stack(rows);
    }

    /// <summary>The unified bank on <paramref name="device"/> (moved there once, when the images come on another device).</summary>
    private Tensor BankOn(Device device)
    {
        if (!TorchSupport.TorchDevices.Same(bank.device, device))
        {
            bank = Moved(bank, device);
        }

        return bank;
    }

    /// <summary>A class's bank on <paramref name="device"/> (moved there once).</summary>
    private Tensor ClassBankOn(string className, Device device)
    {
        var current = classBanks[className];
        if (!TorchSupport.TorchDevices.Same(current.device, device))
        {
            current = classBanks[className] = Moved(current, device);
        }

        return current;
    }

    private static Tensor Moved(Tensor replaced, Device device)
    {
        Tensor moved;
        using (var scope = NewDisposeScope())
        {
            moved = replaced.to(device).clone().DetachFromDisposeScope();
        }

        replaced.Dispose();
        return moved;
    }

    /// <summary>A checked contiguous copy of a bank on the model's device, out of any dispose scope.</summary>
    private Tensor CheckedCopy(Tensor patches, string parameter, string what)
    {
        ArgumentNullException.ThrowIfNull(patches, parameter);
        if (patches.dim() != 2 || patches.shape[0] == 0 || patches.shape[1] != FeatureWidth || patches.dtype != ScalarType.Float32)
        {
            throw new ArgumentException($"{what} must be K x {FeatureWidth} float32 patches (K > 0); got [{string.Join(" x ", patches.shape)}] {patches.dtype}.", parameter);
        }

        using (var check = NewDisposeScope())
        {
            if (!isfinite(patches).all().cpu().item<bool>())
            {
                throw new ArgumentException($"{what} holds NaN or infinity.", parameter);
            }
        }

        using var scope = NewDisposeScope();
        return patches.detach().to(bank.device).contiguous().clone().DetachFromDisposeScope();
    }

    private void DisposeClassBanks()
    {
        foreach (var b in classBanks.Values)
        {
            b.Dispose();
        }

        classBanks.Clear();
    }

    private void RequireInput(Tensor images)
    {
        if (images.dim() != 4 || images.shape[1] != 3 || images.shape[2] != InputSize.Height || images.shape[3] != InputSize.Width)
        {
            throw new ArgumentException($"Expected images B x 3 x {InputSize.Height} x {InputSize.Width}; got [{string.Join(", ", images.shape)}].", nameof(images));
        }
    }
}
