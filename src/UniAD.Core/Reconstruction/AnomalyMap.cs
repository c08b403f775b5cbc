using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Reconstruction;

/// <summary>UniAD's anomaly map and training loss from aligned and reconstructed features.</summary>
public static class AnomalyMap
{
    /// <summary>
    /// sqrt(Σ_c (rec − align)²) per position, B x 1 x h x w, upsampled by <paramref name="stride"/> with
    /// bilinear interpolation, align_corners = true (PyTorch's <c>UpsamplingBilinear2d</c>).
    /// </summary>
    /// <exception cref="ArgumentException">The tensors differ in shape or are not 4-D, or the stride is not positive.</exception>
    public static Tensor Compute(Tensor featureRec, Tensor featureAlign, int stride)
    {
        if (featureRec.dim() != 4 || !featureRec.shape.SequenceEqual(featureAlign.shape))
        {
            throw new ArgumentException($"Reconstructed and aligned features must both be B x C x h x w of the same shape; got [{string.Join(", ", featureRec.shape)}] and [{string.Join(", ", featureAlign.shape)}].");
        }

        if (stride <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(stride), stride, "The upsampling stride must be positive.");
        }

        using var scope = NewDisposeScope();
        var error = (featureRec - featureAlign).square().sum(1, keepdim: true).sqrt();
        if (stride == 1)
        {
            return error.MoveToOuterDisposeScope();
        }

        long h = featureRec.shape[2] * stride, w = featureRec.shape[3] * stride;
        return F.interpolate(error, new[] { h, w }, mode: InterpolationMode.Bilinear, align_corners: true).MoveToOuterDisposeScope();
    }

    /// <summary>The training loss: mean squared error over all elements.</summary>
    public static Tensor Loss(Tensor featureRec, Tensor featureAlign) => F.mse_loss(featureRec, featureAlign);
}
