using static TorchSharp.torch;

namespace UniAD.Core.TorchSupport;

/// <summary>Checks that a module's weights hold no NaN or infinite value (before they are saved, exported or trained on).</summary>
internal static class Finiteness
{
    /// <summary>The name of the first parameter or floating-point buffer holding a NaN or infinite value, or null when all are finite.</summary>
    public static string? FirstNonFinite(nn.Module module)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var (name, parameter) in module.named_parameters())
        {
            if (!isfinite(parameter).all().cpu().item<bool>())
            {
                return name;
            }
        }

        foreach (var (name, buffer) in module.named_buffers())
        {
            if (buffer.is_floating_point() && !isfinite(buffer).all().cpu().item<bool>())
            {
                return name;
            }
        }

        return null;
    }

    /// <summary>The name of the first floating-point tensor of a model's state holding a NaN or infinite value, or null.</summary>
    public static string? FirstNonFinite(IReadOnlyDictionary<string, Tensor> state)
    {
        using var scope = NewDisposeScope();
        foreach (var (name, t) in state)
        {
            if (t.is_floating_point() && !isfinite(t).all().cpu().item<bool>())
            {
                return name;
            }
        }

        return null;
    }

    /// <summary>Throws when a model's state holds a non-finite tensor, naming it and what was to be done.</summary>
    /// <exception cref="InvalidOperationException">A tensor is NaN or infinite.</exception>
    public static void RequireFinite(Models.IAnomalyModel model, string action)
    {
        if (FirstNonFinite(model.State()) is { } name)
        {
            throw new InvalidOperationException($"Cannot {action}: the weight '{name}' holds NaN or infinite values (training diverged; train again with a lower learning rate).");
        }
    }

    /// <summary>Throws when <paramref name="module"/> holds a non-finite weight, naming it and what was to be done.</summary>
    /// <exception cref="InvalidOperationException">A weight is NaN or infinite.</exception>
    public static void RequireFinite(nn.Module module, string action)
    {
        if (FirstNonFinite(module) is { } name)
        {
            throw new InvalidOperationException($"Cannot {action}: the weight '{name}' holds NaN or infinite values (training diverged; train again with a lower learning rate).");
        }
    }
}
