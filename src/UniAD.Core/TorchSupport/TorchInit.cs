using TorchSharp;
using static TorchSharp.torch;

namespace UniAD.Core.TorchSupport;

/// <summary>Seeded parameter initialisers (TorchSharp's xavier_uniform_ takes no generator).</summary>
internal static class TorchInit
{
    /// <summary>Glorot/Xavier uniform for a 2-D weight (out x in): U(-b, b), b = sqrt(6 / (fan_in + fan_out)).</summary>
    public static void XavierUniform(Tensor weight, Generator? generator)
    {
        if (weight.dim() != 2)
        {
            throw new ArgumentException($"Xavier initialisation expects a 2-D weight, got shape [{string.Join(", ", weight.shape)}].", nameof(weight));
        }

        double bound = Math.Sqrt(6.0 / (weight.shape[0] + weight.shape[1]));
        using var _ = no_grad();
        weight.uniform_(-bound, bound, generator);
    }

    /// <summary>Xavier-uniform weight and zero bias for a linear layer, as the reference initializer does.</summary>
    public static void XavierLinear(TorchSharp.Modules.Linear linear, Generator? generator)
    {
        XavierUniform(linear.weight!, generator);
        if (linear.bias is not null)
        {
            using var _ = no_grad();
            linear.bias.zero_();
        }
    }
}
