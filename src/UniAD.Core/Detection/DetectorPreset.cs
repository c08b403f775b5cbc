namespace UniAD.Core.Detection;

/// <summary>Named detector (network) configurations to go with <see cref="TrainingPreset"/>.</summary>
public static class DetectorPreset
{
    /// <summary>The backbone of <see cref="CpuBudget"/>: a ResNet-18 with ImageNet weights from the mlnet family, layers 1-3.</summary>
    public const string CpuBackbone = "mlnet-resnet18";

    /// <summary>The reference's detector: <c>new AnomalyDetectorBuilder()</c> (EfficientNet-B4, the paper's network).</summary>
    public static AnomalyDetectorBuilder Paper() => new();

    /// <summary>
    /// A network for CPU budgets and high-resolution parts: <paramref name="backbone"/> (default
    /// <see cref="CpuBackbone"/>, ML.NET's ImageNet ResNet-18) layers 1-3 at neck stride 16 (ResNet-18:
    /// 64 + 128 + 256 = 448 channels) on 256 x 256 tiles (16 x 16 tokens) of every image resized to 448 pixels
    /// wide (aspect kept), tiles every 192 pixels with a 32-pixel margin that gives way to the neighbouring
    /// tile (<see cref="Tiling.TilingOptions.Margin"/>: no seams); a small reconstruction (width 128, 8 heads,
    /// 2 + 2 layers, FFN 512, no dropout: <see cref="CpuDropout"/>), a 7 x 7 neighbor mask, feature jitter (scale 20) and a 64 x 64 image-score window
    /// (<see cref="CpuScorePool"/>). Chosen on KolektorSDD
    /// (500 x 1250, thin cracks) within 30 minutes on 2 CPU cores, where squashing to 224 x 224 lost the
    /// cracks (docs/benchmarks.md, group <c>real</c>). Further <c>With...</c> calls adjust it before
    /// <see cref="AnomalyDetectorBuilder.Build"/>.
    /// </summary>
    public static AnomalyDetectorBuilder CpuBudget(string backbone = CpuBackbone, string? weightsFile = null) => new AnomalyDetectorBuilder()
        .WithBackbone(backbone, new[] { 1, 2, 3 }, weightsFile)
        .WithInputSize(CpuTile, CpuTile)
        .WithNeckStride(16)
        .WithTiling(new Tiling.TilingOptions { ResizeWidth = CpuResizeWidth, Stride = new GridSize(CpuTile - (2 * CpuTileMargin), CpuTile - (2 * CpuTileMargin)), Margin = CpuTileMargin })
        .WithReconstruction(o => o with { HiddenDim = 128, NumHeads = 8, NumEncoderLayers = 2, NumDecoderLayers = 2, FeedForwardDim = 512, Dropout = CpuDropout })
        .WithNeighborMask(7, 7)
        .WithFeatureJitter()
        .WithImageScore(Metrics.ImageScoreKind.PooledMax, CpuScorePool);

    /// <summary>
    /// The image-score window of <see cref="CpuBudget"/>: 64 x 64 at the 448-wide working size. A thin crack is long, so a
    /// wider window averages more of it against the normal surface (KolektorSDD image AUROC 0.787 with 16, 0.827 with
    /// 32, 0.845 with 64 for the same model; the synthetic classes unchanged at 1.000; docs/benchmarks.md).
    /// </summary>
    public const int CpuScorePool = 64;

    /// <summary>
    /// The reconstruction's dropout in <see cref="CpuBudget"/>: none (the paper: 0.1). Dropout on the attention weights
    /// needs the explicit attention (its 256 x 256 weights a head materialised, masked and kept for the backward) instead
    /// of the fused scaled-dot-product kernel, which doubled a CPU step (599 against 298 ms at batch 8 on 2 AVX2 cores).
    /// In a 30-minute budget the run without it trains more epochs, and every class's image and pixel AUROC and AU-PRO
    /// were at least as good (KolektorSDD raw maps 0.832 image / 0.899 pixel AUROC after 12 epochs against 0.817 / 0.890
    /// after 9; pixel AP 0.006 and 0.017 lower on two synthetic classes; docs/benchmarks.md); feature jitter stays as the
    /// regulariser.
    /// </summary>
    public const double CpuDropout = 0.0;

    /// <summary>The tile (network input) side of <see cref="CpuBudget"/>.</summary>
    public const int CpuTile = 256;

    /// <summary>The width every image is resized to by <see cref="CpuBudget"/> before tiling.</summary>
    public const int CpuResizeWidth = 448;

    /// <summary>The tile margin of <see cref="CpuBudget"/> (the stride is the tile minus twice the margin).</summary>
    public const int CpuTileMargin = 32;

    /// <summary>
    /// The training-free memory-bank detector (<see cref="ModelFamilies.MemoryBank"/>, PatchCore): <paramref name="backbone"/>
    /// (default <see cref="CpuBackbone"/>, ML.NET's ImageNet ResNet-18, which runs on a fresh machine) layers 2 and 3
    /// (128 + 256 = 384 channels per patch, 3 x 3 neighbourhoods, a 32 x 32 patch grid per tile), every image resized to
    /// <see cref="MemoryBankWidth"/> pixels wide (aspect kept) and cut into 256 x 256 tiles every 192 pixels with a
    /// 32-pixel margin (as <see cref="CpuBudget"/>: small photographs are not blown up past their detail, long parts are
    /// tiled), one bank of 1 % of at most 200,000 normal patches, maps smoothed with a Gaussian of sigma 4 and the image
    /// score the mean of the map's largest 1 % (<see cref="Metrics.ImageScoreKind.TopMean"/>: it beat the map's maximum on
    /// both shared real sets at both working widths measured). <c>Train</c> fits it (no epochs). Figures on the real sets:
    /// docs/benchmarks.md.
    /// </summary>
    public static AnomalyDetectorBuilder MemoryBank(string backbone = CpuBackbone, string? weightsFile = null) => new AnomalyDetectorBuilder()
        .WithBackbone(backbone, new[] { 2, 3 }, weightsFile)
        .WithInputSize(CpuTile, CpuTile)
        .WithTiling(new Tiling.TilingOptions { ResizeWidth = MemoryBankWidth, Stride = new GridSize(CpuTile - (2 * CpuTileMargin), CpuTile - (2 * CpuTileMargin)), Margin = CpuTileMargin })
        .WithMemoryBank()
        .WithImageScore(Metrics.ImageScoreKind.TopMean);

    /// <summary>The width every image is resized to by <see cref="MemoryBank"/> before tiling.</summary>
    public const int MemoryBankWidth = 256;
}
