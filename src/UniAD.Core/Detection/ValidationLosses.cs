using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using UniAD.Core.Reconstruction;
using static TorchSharp.torch;

namespace UniAD.Core.Detection;

/// <summary>
/// The reconstruction loss (the objective's loss without hard-point mining: feature MSE for the paper's) of normal images in evaluation mode: the validation loss,
/// and the held-out loss of <see cref="HeldOutSet"/>.
/// </summary>
internal static class ValidationLosses
{
    /// <summary>The body of <see cref="AnomalyDetector.ValidationLoss"/>.</summary>
    public static double Validation(AnomalyDetector detector, IImageSource source, int batchSize, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        var normal = new ImageSource(source.Name, source.Samples.Where(s => !s.IsAnomalous));
        if (normal.Samples.Count == 0)
        {
            throw new InvalidDataException($"'{source.Name}' has no normal image for a validation loss.");
        }

        var loader = new ImageBatchLoader(TiledScoring.TrainingImages(detector, normal, BadInputPolicy.Throw), new LoaderOptions { BatchSize = batchSize, LoadMasks = false, Preprocess = detector.Preprocess }, detector.LoggerFactory.CreateLogger<ImageBatchLoader>());
        lock (detector.Gate)
        {
            detector.ThrowIfDisposed();
            return Mean(detector, loader.Batches(cancellationToken: cancellationToken), b => detector.Model.ExtractFeatures(b.Images.to(detector.Device)));
        }
    }

    /// <summary>
    /// The training loss (feature MSE) averaged over the images of <paramref name="batches"/>, in evaluation mode and
    /// without gradients; <paramref name="features"/> gives a batch's backbone features on the detector's device.
    /// </summary>
    public static double Mean<TBatch>(AnomalyDetector detector, IEnumerable<TBatch> batches, Func<TBatch, Tensor> features)
        where TBatch : IDisposable
    {
        detector.Model.eval();
        double sum = 0;
        long images = 0;
        foreach (var batch in batches)
        {
            using (batch)
            {
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();
                var f = features(batch);
                long n = f.shape[0];
                var reconstruction = detector.Model.Reconstruction;
                sum += Reconstruction.ReconstructionLoss.Plain(reconstruction.Options, reconstruction.Reconstruct(f), f).item<float>() * (double)n;
                images += n;
            }
        }

        return images == 0 ? double.NaN : sum / images;
    }
}
