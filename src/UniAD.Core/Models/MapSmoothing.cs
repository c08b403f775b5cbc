using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Models;

/// <summary>
/// The Gaussian smoothing of anomaly maps that both model families use: the memory bank always (its authors' sigma 4),
/// UniAD when <see cref="Reconstruction.ReconstructionOptions.MapSmoothingSigma"/> is set. One implementation, exported
/// to ONNX by one emitter, so both runtimes smooth identically.
/// </summary>
public static class MapSmoothing
{
    /// <summary>
    /// A separable Gaussian blur of B x 1 x H x W maps: kernel radius ⌊4σ + 0.5⌋, normalised to sum 1, borders reflected
    /// (clamped to the map where it is smaller than the radius).
    /// </summary>
    public static Tensor GaussianBlur(Tensor maps, double sigma)
    {
        ArgumentNullException.ThrowIfNull(maps);
        if (!(sigma > 0))
        {
            throw new ArgumentException($"Sigma must be positive; got {sigma}.", nameof(sigma));
        }

        using var scope = NewDisposeScope();
        var x = maps;
        foreach (int axis in new[] { 3, 2 })
        {
            var weights = GaussianKernel(sigma, x.shape[axis]);
            long pad = weights.Length / 2;
            var padded = pad == 0 ? x : F.pad(x, axis == 3 ? new long[] { pad, pad, 0, 0 } : new long[] { 0, 0, pad, pad }, TorchSharp.PaddingModes.Reflect);
            var k = tensor(weights, axis == 3 ? new long[] { 1, 1, 1, weights.Length } : new long[] { 1, 1, weights.Length, 1 }, device: maps.device).to(maps.dtype);
            x = F.conv2d(padded, k);
        }

        return x.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The 1-D kernel of <see cref="GaussianBlur"/> along an axis of <paramref name="size"/> values (the TorchSharp models and
    /// their ONNX emitters all use it): radius ⌊4σ + 0.5⌋, normalised to sum 1; on an axis shorter than the kernel, its middle
    /// part (radius size − 1, the most reflection padding allows), renormalised.
    /// </summary>
    internal static float[] GaussianKernel(double sigma, long size)
    {
        int radius = (int)Math.Floor((4 * sigma) + 0.5);
        var weights = Enumerable.Range(-radius, (2 * radius) + 1).Select(i => (float)Math.Exp(-(i * (double)i) / (2 * sigma * sigma))).ToArray();
        float total = weights.Sum();
        var kernel = weights.Select(w => w / total).ToArray();
        int pad = (int)Math.Min(radius, size - 1);
        if (pad == radius)
        {
            return kernel;
        }

        var middle = kernel.Skip(radius - pad).Take((2 * pad) + 1).ToArray();
        float sum = middle.Sum();
        return middle.Select(v => v / sum).ToArray();
    }
}
