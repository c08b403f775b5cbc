using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Backbones;

/// <summary>
/// The reference's MFCN neck: every feature map is resized to the target stride with bilinear
/// interpolation, align_corners = true (PyTorch's <c>UpsamplingBilinear2d</c>), and the maps are
/// concatenated on channels ("feature_align"). It has no parameters.
/// </summary>
public sealed class MfcnNeck : Module<Tensor[], Tensor>
{
    /// <summary>Creates the neck for inputs of <paramref name="inputStrides"/> and channels <paramref name="inputChannels"/>.</summary>
    /// <exception cref="ArgumentException">Lists of different lengths, empty, or non-positive values.</exception>
    public MfcnNeck(IReadOnlyList<int> inputChannels, IReadOnlyList<int> inputStrides, int outputStride = 16)
        : base(nameof(MfcnNeck))
    {
        ArgumentNullException.ThrowIfNull(inputChannels);
        ArgumentNullException.ThrowIfNull(inputStrides);
        if (inputChannels.Count == 0 || inputChannels.Count != inputStrides.Count)
        {
            throw new ArgumentException($"The neck needs one stride per input: got {inputChannels.Count} channel counts and {inputStrides.Count} strides.");
        }

        if (outputStride <= 0 || inputStrides.Any(s => s <= 0) || inputChannels.Any(c => c <= 0))
        {
            throw new ArgumentException($"Strides and channels must be positive: channels [{string.Join(", ", inputChannels)}], strides [{string.Join(", ", inputStrides)}], output stride {outputStride}.");
        }

        InputChannels = inputChannels.ToArray();
        InputStrides = inputStrides.ToArray();
        OutputStride = outputStride;
        RegisterComponents();
    }

    /// <summary>Channels of each input.</summary>
    public IReadOnlyList<int> InputChannels { get; }

    /// <summary>Stride of each input.</summary>
    public IReadOnlyList<int> InputStrides { get; }

    /// <summary>The common output stride.</summary>
    public int OutputStride { get; }

    /// <summary>Channels of the output: the sum of the inputs'.</summary>
    public int OutputChannels => InputChannels.Sum();

    /// <summary>Resizes and concatenates the feature maps.</summary>
    /// <exception cref="ArgumentException">Wrong number of maps, wrong channels, or a map whose size does not fit its stride.</exception>
    public override Tensor forward(Tensor[] features)
    {
        ArgumentNullException.ThrowIfNull(features);
        if (features.Length != InputChannels.Count)
        {
            throw new ArgumentException($"The neck expects {InputChannels.Count} feature maps, got {features.Length}.", nameof(features));
        }

        using var scope = NewDisposeScope();
        var resized = new Tensor[features.Length];
        for (int i = 0; i < features.Length; i++)
        {
            var f = features[i];
            if (f.dim() != 4 || f.shape[1] != InputChannels[i])
            {
                throw new ArgumentException($"Feature map {i} must be B x {InputChannels[i]} x h x w; got [{string.Join(", ", f.shape)}].", nameof(features));
            }

            // UpsamplingBilinear2d(scale_factor = in/out) gives floor(size * in / out).
            long h = f.shape[2] * InputStrides[i] / OutputStride, w = f.shape[3] * InputStrides[i] / OutputStride;
            if (h <= 0 || w <= 0)
            {
                throw new ArgumentException($"Feature map {i} ({f.shape[2]} x {f.shape[3]} at stride {InputStrides[i]}) is too small for output stride {OutputStride}.", nameof(features));
            }

            resized[i] = h == f.shape[2] && w == f.shape[3]
                ? f
                : F.interpolate(f, new[] { h, w }, mode: InterpolationMode.Bilinear, align_corners: true);
        }

        return cat(resized, 1).MoveToOuterDisposeScope();
    }
}
