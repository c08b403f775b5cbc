using System.Globalization;
using TorchSharp;
using UniAD.Core.Backbones;
using UniAD.Core.Models;
using UniAD.Core.Reconstruction;
using static TorchSharp.torch;

/// <summary>
/// Scoring with the paper-size pipeline: <see cref="UniADModel.forward"/> (EfficientNet-B4 layers 1..4, MFCN neck
/// at stride 16, the paper's reconstruction) on B x 3 x 224 x 224 images, in evaluation mode without gradients.
/// Weights are random: the timing does not depend on their values.
/// </summary>
internal static class ScoringBenchmarks
{
    /// <summary>The paper's pipeline with random weights: EfficientNet-B4 layers 1..4, MFCN at stride 16, the default reconstruction.</summary>
    public static UniADModel PaperModel()
    {
        var backbone = EfficientNetFeatureExtractor.FromLayers("efficientnet-b4", new[] { 1, 2, 3, 4 });
        var neck = new MfcnNeck(backbone.Channels, backbone.Strides, outputStride: 16);
        return new UniADModel(backbone, neck, new UniADReconstruction(new ReconstructionOptions()));
    }

    public static void Run(int runs, int warmup)
    {
        using var model = PaperModel();
        model.eval();
        foreach (var batch in new[] { 1, 8 })
        {
            using var images = randn(new long[] { batch, 3, 224, 224 }, generator: new Generator(3));
            var times = Timing.Runs(runs, warmup, () =>
            {
                using var scope = NewDisposeScope();
                using var _ = no_grad();
                using var output = model.forward(images);
            });
            Timing.Report($"UniADModel.forward (B4 + MFCN + reconstruction), batch {batch}", batch, Timing.Median(times));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"  fastest run",-58} {times[0],9:F1} ms  ({times[0] / batch,7:F1} ms/image)"));
        }
    }
}
