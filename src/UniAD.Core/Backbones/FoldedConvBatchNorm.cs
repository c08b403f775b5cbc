using UniAD.Core.TorchSupport;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace UniAD.Core.Backbones;

/// <summary>A module that keeps inference-only tensors derived from its weights (e.g. BatchNorm folded into convolutions).</summary>
internal interface IFusedWeightsCache
{
    /// <summary>Drops the derived tensors; they are rebuilt from the current weights when next needed.</summary>
    void InvalidateFusedWeights();
}

/// <summary>Helpers for <see cref="IFusedWeightsCache"/> modules.</summary>
internal static class FusedWeights
{
    /// <summary>Invalidates the caches of <paramref name="root"/> and of every module below it.</summary>
    public static void Invalidate(Module root)
    {
        if (root is IFusedWeightsCache self)
        {
            self.InvalidateFusedWeights();
        }

        foreach (var module in root.modules())
        {
            if (module is IFusedWeightsCache cache)
            {
                cache.InvalidateFusedWeights();
            }
        }
    }

    /// <summary>
    /// Channels-last (NHWC strides, NCHW shape) for single precision on the CPU, where oneDNN's convolutions,
    /// depthwise ones in particular, run markedly faster in that layout. Other dtypes (float64 depthwise
    /// convolutions get several times slower in it) and other devices, where it has not been measured, keep
    /// the usual layout.
    /// </summary>
    public static bool PrefersChannelsLast(Tensor t) => t.device_type == DeviceType.CPU && t.dtype == ScalarType.Float32;

    /// <summary>The same values with channels-last strides (a copy unless they already are).</summary>
    public static Tensor ToChannelsLast(Tensor t) => t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
}

/// <summary>
/// An evaluation-mode BatchNorm folded into the convolution before it, for inference:
/// w' = w·γ/√(var+ε) and b' = β + (b − mean)·γ/√(var+ε). The folded tensors are a cache, not state: this is
/// neither a module nor a tensor, so a module holding it registers nothing new and its state dict keeps its
/// keys. The cache is rebuilt when any source tensor is replaced (a move with <c>to()</c> replaces them), after a
/// training-mode forward (which updates the running statistics) and after <see cref="Invalidate"/> (called by
/// the weight loaders). It is thread-safe for concurrent forwards.
/// </summary>
internal sealed class FoldedConvBatchNorm : IDisposable
{
    private readonly Conv2dStaticSamePadding conv;
    private readonly BatchNorm2d norm;
    private readonly object gate = new();
    private Tensor? weight;
    private Tensor? bias;
    private Tensor?[] sources = Array.Empty<Tensor?>();

    /// <summary>Folds <paramref name="norm"/> into <paramref name="conv"/> (lazily, at the first forward).</summary>
    public FoldedConvBatchNorm(Conv2dStaticSamePadding conv, BatchNorm2d norm)
    {
        this.conv = conv;
        this.norm = norm;
    }

    /// <summary>
    /// True when the folded weights may be used: the BatchNorm is in evaluation mode (it uses, and does not
    /// update, its running statistics) and autograd is off (the folded weights are constants, so no gradient
    /// would reach the parameters).
    /// </summary>
    public bool CanFold => !norm.training && !is_grad_enabled();

    /// <summary>How many times the weights were folded (for tests: a warm cache folds nothing).</summary>
    public int Folds { get; private set; }

    /// <summary>
    /// The convolution followed by the BatchNorm: one convolution with the folded weights when
    /// <see cref="CanFold"/>, otherwise the two modules (and a training-mode BatchNorm, which updates its
    /// running statistics, drops the folded weights).
    /// </summary>
    public Tensor Forward(Tensor input)
    {
        if (!CanFold)
        {
            if (norm.training)
            {
                Invalidate();
            }

            return norm.forward(conv.forward(input));
        }

        var (w, b) = Weights();
        return conv.ConvolvePrepared(input, w, b);
    }

    /// <summary>The folded weight (prepared by <see cref="Conv2dStaticSamePadding.PrepareWeight"/>) and bias for the current parameters, computed when missing or stale.</summary>
    public (Tensor Weight, Tensor Bias) Weights()
    {
        lock (gate)
        {
            var current = new Tensor?[] { conv.Weight, conv.Bias, norm.weight, norm.bias, norm.running_mean, norm.running_var };
            if (weight is null || bias is null || !SameObjects(current, sources))
            {
                Release();
                (weight, bias) = Fold();
                sources = current;
                Folds++;
            }

            return (weight, bias);
        }
    }

    /// <summary>Drops the folded tensors; the next forward folds the current weights again.</summary>
    public void Invalidate()
    {
        lock (gate)
        {
            Release();
        }
    }

    /// <inheritdoc />
    public void Dispose() => Invalidate();

    private (Tensor Weight, Tensor Bias) Fold()
    {
        var w = conv.Weight;
        var mean = norm.running_mean ?? throw new InvalidOperationException("Folding needs a BatchNorm with running statistics.");
        var variance = norm.running_var ?? throw new InvalidOperationException("Folding needs a BatchNorm with running statistics.");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();

        // Computed in at least single precision (half-precision weights are folded in float32, then rounded once).
        var compute = w.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        var std = variance.to(compute).PlusScalar(norm.eps).sqrt();
        var scale = norm.weight is { } gamma ? gamma.to(compute) / std : std.reciprocal();

        var shift = conv.Bias is { } b ? b.to(compute) - mean.to(compute) : -mean.to(compute);
        shift = shift * scale;
        if (norm.bias is { } beta)
        {
            shift = shift.Plus(beta.to(compute));
        }

        var folded = conv.PrepareWeight((w.to(compute) * scale.view(-1, 1, 1, 1)).to(w.dtype));
        if (FusedWeights.PrefersChannelsLast(folded))
        {
            folded = FusedWeights.ToChannelsLast(folded);
        }

        return (folded.DetachFromDisposeScope(), shift.to(w.dtype).DetachFromDisposeScope());
    }

    private static bool SameObjects(Tensor?[] a, Tensor?[] b)
    {
        if (a.Length != b.Length)
        {
            return false;
        }

        for (int i = 0; i < a.Length; i++)
        {
            if (!ReferenceEquals(a[i], b[i]))
            {
                return false;
            }
        }

        return true;
    }

    private void Release()
    {
        weight?.Dispose();
        bias?.Dispose();
        weight = null;
        bias = null;
        sources = Array.Empty<Tensor?>();
    }
}
