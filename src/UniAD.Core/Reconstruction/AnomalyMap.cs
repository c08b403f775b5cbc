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
        Check(featureRec, featureAlign, stride);
        using var scope = NewDisposeScope();
        var error = (featureRec - featureAlign).square().sum(1, keepdim: true).sqrt();
        return Upsample(error, stride).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The cosine distance 1 − cos(rec, align) over channels per position (<see cref="ReconstructionObjective.GlobalCosine"/>'s
    /// map), B x 1 x h x w, upsampled by <paramref name="stride"/> as <see cref="Compute"/> upsamples.
    /// </summary>
    /// <exception cref="ArgumentException">The tensors differ in shape or are not 4-D, or the stride is not positive.</exception>
    public static Tensor CosineDistance(Tensor featureRec, Tensor featureAlign, int stride)
    {
        Check(featureRec, featureAlign, stride);
        using var scope = NewDisposeScope();
        var distance = (1 - F.cosine_similarity(featureRec, featureAlign, dim: 1)).unsqueeze(1);
        return Upsample(distance, stride).MoveToOuterDisposeScope();
    }

    /// <summary>The map of an objective: <see cref="Compute"/> for MSE, <see cref="CosineDistance"/> for the global cosine.</summary>
    public static Tensor Of(ReconstructionObjective objective, Tensor featureRec, Tensor featureAlign, int stride) => objective switch
    {
        ReconstructionObjective.Mse => Compute(featureRec, featureAlign, stride),
        ReconstructionObjective.GlobalCosine => CosineDistance(featureRec, featureAlign, stride),
        _ => throw new ArgumentOutOfRangeException(nameof(objective), objective, "Unknown objective."),
    };

    private static void Check(Tensor featureRec, Tensor featureAlign, int stride)
    {
        if (featureRec.dim() != 4 || !featureRec.shape.SequenceEqual(featureAlign.shape))
        {
            throw new ArgumentException($"Reconstructed and aligned features must both be B x C x h x w of the same shape; got [{string.Join(", ", featureRec.shape)}] and [{string.Join(", ", featureAlign.shape)}].");
        }

        if (stride <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(stride), stride, "The upsampling stride must be positive.");
        }
    }

    private static Tensor Upsample(Tensor map, int stride) => stride == 1
        ? map.alias()
        : F.interpolate(map, new[] { map.shape[2] * stride, map.shape[3] * stride }, mode: InterpolationMode.Bilinear, align_corners: true);

    /// <summary>The training loss: mean squared error over all elements.</summary>
    public static Tensor Loss(Tensor featureRec, Tensor featureAlign) => F.mse_loss(featureRec, featureAlign);
}
