namespace UniAD.Core.Detection;

/// <summary>Named detector (network) configurations to go with <see cref="TrainingPreset"/>.</summary>
public static class DetectorPreset
{
    /// <summary>The backbone of <see cref="CpuBudget"/>: a ResNet-18 with ImageNet weights from the mlnet family, layers 1-3.</summary>
    public const string CpuBackbone = "mlnet-resnet18";

    /// <summary>The reference's detector: <c>new AnomalyDetectorBuilder()</c> (EfficientNet-B4, the paper's network).</summary>
    public static AnomalyDetectorBuilder Paper() => new();

    /// <summary>
    /// A network for CPU budgets: <paramref name="backbone"/> (default <see cref="CpuBackbone"/>) layers 1-3 at
    /// neck stride 16 on 224 x 224 input (14 x 14 tokens; ResNet-18: 64 + 128 + 256 = 448 channels), the paper's
    /// reconstruction (width 256, 8 heads, 4 + 4 layers, FFN 1024), a 7 x 7 neighbor mask and feature jitter
    /// (scale 20). Further <c>With...</c> calls adjust it before <see cref="AnomalyDetectorBuilder.Build"/>.
    /// </summary>
    public static AnomalyDetectorBuilder CpuBudget(string backbone = CpuBackbone, string? weightsFile = null) => new AnomalyDetectorBuilder()
        .WithBackbone(backbone, new[] { 1, 2, 3 }, weightsFile)
        .WithInputSize(224, 224)
        .WithNeckStride(16)
        .WithReconstruction(o => o with { HiddenDim = 256, NumHeads = 8, NumEncoderLayers = 4, NumDecoderLayers = 4, FeedForwardDim = 1024 })
        .WithNeighborMask(7, 7)
        .WithFeatureJitter();
}
