using static TorchSharp.torch;

namespace UniAD.Core.Reconstruction;

/// <summary>What the reconstruction network returns for a batch. Dispose it (or let a dispose scope do so) when done.</summary>
public sealed class ReconstructionOutput : IDisposable
{
    /// <summary>Wraps the two result tensors.</summary>
    public ReconstructionOutput(Tensor featureRec, Tensor pred)
    {
        FeatureRec = featureRec;
        Pred = pred;
    }

    /// <summary>The reconstructed features, B x C x h x w.</summary>
    public Tensor FeatureRec { get; }

    /// <summary>The anomaly map: per-position L2 reconstruction error upsampled by the input stride, B x 1 x (h·s) x (w·s).</summary>
    public Tensor Pred { get; }

    /// <inheritdoc />
    public void Dispose()
    {
        FeatureRec.Dispose();
        Pred.Dispose();
    }
}
