using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using UniAD.Core.Backbones;
using UniAD.Core.Metrics;
using UniAD.Core.Models;
using UniAD.Core.Reconstruction;
using static TorchSharp.torch;

namespace UniAD.Core.Detection;

/// <summary>
/// Fluent, single-use builder of an <see cref="AnomalyDetector"/>. Defaults are the paper's MVTec-AD
/// configuration: EfficientNet-B4 layers 1..4, neck stride 16, 224 x 224 input, the paper's
/// reconstruction network (width 256, 8 heads, 4 + 4 layers, 7 x 7 neighbor mask, jitter 20), image score
/// = max of the 16 x 16 average-pooled map, CPU, seed 133. Everything is validated in <see cref="Build"/>.
/// </summary>
public sealed class AnomalyDetectorBuilder
{
    private DetectorOptions options = new();
    private readonly List<Func<ReconstructionOptions, ReconstructionOptions>> reconstruction = new();
    private string? weightsPath;
    private string device = "cpu";
    private bool tensorFloat32;
    private long seed = 133;
    private ILoggerFactory? loggerFactory;
    private bool built;

    /// <summary>
    /// The backbone, its output layers (1..5 for EfficientNet, 1..4 for ResNet) and, optionally, its pretrained weights
    /// file. <c>mlnet-resnet18</c> (<see cref="MlNetBackbone"/>) finds its ImageNet weights by itself in the application's
    /// folder, where the NuGet package <c>Microsoft.ML.DnnImageFeaturizer.ResNet18</c> puts them.
    /// </summary>
    public AnomalyDetectorBuilder WithBackbone(string modelName, IReadOnlyList<int>? layers = null, string? weightsFile = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelName);
        options = options with { Backbone = modelName.Trim(), BackboneLayers = layers?.ToArray() ?? options.BackboneLayers };
        weightsPath = weightsFile ?? weightsPath;
        return this;
    }

    /// <summary>The backbone's pretrained weights (<c>.pth</c> or <c>.safetensors</c>). Without them the backbone is random and a warning is logged.</summary>
    public AnomalyDetectorBuilder WithBackboneWeights(string weightsFile)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(weightsFile);
        weightsPath = weightsFile;
        return this;
    }

    /// <summary>The stride all backbone outputs are resized to (the paper: 16).</summary>
    public AnomalyDetectorBuilder WithNeckStride(int stride)
    {
        options = options with { NeckStride = stride };
        return this;
    }

    /// <summary>The network input size (the paper: 224 x 224); images of any size are resized to it.</summary>
    public AnomalyDetectorBuilder WithInputSize(int height, int width)
    {
        options = options with { InputSize = new GridSize(height, width) };
        return this;
    }

    /// <summary>
    /// Tiles high-resolution images: each image (optionally resized first) is cut into overlapping tiles of
    /// the input size, every tile is a training sample and is scored, and tile maps are stitched back with
    /// overlaps averaged. Saved with the model.
    /// </summary>
    public AnomalyDetectorBuilder WithTiling(Tiling.TilingOptions tiling)
    {
        ArgumentNullException.ThrowIfNull(tiling);
        options = options with { Tiling = tiling };
        return this;
    }

    /// <summary>No tiling (the default): every image is resized to the input size.</summary>
    public AnomalyDetectorBuilder WithoutTiling()
    {
        options = options with { Tiling = null };
        return this;
    }

    /// <summary>Adjusts the reconstruction network (width, heads, layers, dropout, activation, norm placement, position embedding...).</summary>
    public AnomalyDetectorBuilder WithReconstruction(Func<ReconstructionOptions, ReconstructionOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        reconstruction.Add(configure);
        return this;
    }

    /// <summary>Feature jitter in training (the paper: scale 20, probability 1).</summary>
    public AnomalyDetectorBuilder WithFeatureJitter(double scale = 20.0, double probability = 1.0) =>
        WithReconstruction(o => o with { FeatureJitter = new FeatureJitterOptions { Scale = scale, Probability = probability } });

    /// <summary>No feature jitter.</summary>
    public AnomalyDetectorBuilder WithoutFeatureJitter() => WithReconstruction(o => o with { FeatureJitter = null });

    /// <summary>Neighbor-masked attention with an h x w neighbourhood, switchable per attention (the paper: 7 x 7 everywhere).</summary>
    public AnomalyDetectorBuilder WithNeighborMask(int height, int width, bool encoder = true, bool decoderSelf = true, bool decoderCross = true) =>
        WithReconstruction(o => o with { NeighborSize = new GridSize(height, width), MaskEncoder = encoder, MaskDecoderSelf = decoderSelf, MaskDecoderCross = decoderCross });

    /// <summary>No neighbor mask at all.</summary>
    public AnomalyDetectorBuilder WithoutNeighborMask() => WithReconstruction(o => o with { NeighborSize = null });

    /// <summary>How image scores are computed from anomaly maps (the reference: pooled max with a 16 x 16 window; CIFAR-10: mean).</summary>
    public AnomalyDetectorBuilder WithImageScore(ImageScoreKind kind, int poolSize = 16)
    {
        options = options.WithScoreWindow(kind, poolSize, poolSize);
        return this;
    }

    /// <summary>
    /// A pooled-max image score over a <paramref name="poolHeight"/> x <paramref name="poolWidth"/> window, in pixels of the
    /// map the score is taken on (the input size, or the working image when tiled). A wide, flat window suits long, thin
    /// defects running across the part; choose it on validation data, never on the test split.
    /// </summary>
    public AnomalyDetectorBuilder WithImageScore(ImageScoreKind kind, int poolHeight, int poolWidth)
    {
        options = options.WithScoreWindow(kind, poolHeight, poolWidth);
        return this;
    }

    /// <summary>
    /// The memory-bank family (<see cref="ModelFamilies.MemoryBank"/>, PatchCore) instead of UniAD: no network is trained;
    /// <see cref="AnomalyDetector.Train"/> fits a coreset of the normal patch features of the backbone's layers, and a
    /// patch's anomaly score is its distance to the nearest bank patch. <paramref name="configure"/> adjusts the bank
    /// (ratio, candidates, smoothing, memory and time limits). The reconstruction and neck settings are not used.
    /// </summary>
    public AnomalyDetectorBuilder WithMemoryBank(Func<MemoryBank.MemoryBankOptions, MemoryBank.MemoryBankOptions>? configure = null)
    {
        var bank = options.MemoryBank ?? new MemoryBank.MemoryBankOptions();
        options = options with { Family = ModelFamilies.MemoryBank, MemoryBank = configure is null ? bank : configure(bank) };
        return this;
    }

    /// <summary>The device: <c>cpu</c> (default), <c>cuda</c> or <c>cuda:N</c> (checked at <see cref="Build"/>: CUDA present, N below the device count).</summary>
    public AnomalyDetectorBuilder WithDevice(string deviceName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(deviceName);
        device = deviceName.Trim();
        return this;
    }

    /// <summary>
    /// On CUDA, let matrix products and cuDNN convolutions use TensorFloat-32 (default false: float32 exact). It is a
    /// process-wide libtorch switch (<see cref="TorchSupport.TorchDevices.SetTensorFloat32"/>), set when a CUDA detector
    /// is built or loaded; faster on Ampere and newer GPUs, with features moving by about 1e-3. No effect on the CPU.
    /// </summary>
    public AnomalyDetectorBuilder WithTensorFloat32(bool allow = true)
    {
        tensorFloat32 = allow;
        return this;
    }

    /// <summary>The seed of the initial weights and of the training noise (the reference: 133).</summary>
    public AnomalyDetectorBuilder WithSeed(long value)
    {
        seed = value;
        return this;
    }

    /// <summary>Where the detector logs (default: nowhere).</summary>
    public AnomalyDetectorBuilder WithLogging(ILoggerFactory factory)
    {
        loggerFactory = factory ?? throw new ArgumentNullException(nameof(factory));
        return this;
    }

    /// <summary>Validates everything and builds the detector. A builder builds once.</summary>
    /// <exception cref="InvalidOperationException">The builder was already used, or CUDA was asked for and is not available.</exception>
    /// <exception cref="ArgumentException">An impossible option (its name and value are in the message).</exception>
    /// <exception cref="FileNotFoundException">The weights file does not exist (for <c>mlnet-resnet18</c>: the message names the PackageReference to add).</exception>
    public AnomalyDetector Build()
    {
        if (built)
        {
            throw new InvalidOperationException("This AnomalyDetectorBuilder has already built a detector; create a new builder for another one.");
        }

        built = true;
        var recon = reconstruction.Aggregate(options.Reconstruction with { Seed = seed }, (o, f) => f(o));
        if (options.MemoryBank is { } bank)
        {
            options = options with { MemoryBank = bank with { Seed = seed } };
        }

        var weights = weightsPath;
        if (weights is null && string.Equals(options.Backbone, MlNetBackbone.ModelName, StringComparison.OrdinalIgnoreCase))
        {
            MlNetBackbone.CheckInputSize(options.InputSize.Height, options.InputSize.Width);
            weights = MlNetBackbone.FindModelFile(); // the NuGet package's file in the application's folder
        }

        return Create(options with { Reconstruction = recon }, weights, device, loggerFactory, warnIfRandom: true, calibration: null, epochsTrained: 0, tensorFloat32);
    }

    /// <summary>Builds a detector from complete options (used by the builder and by checkpoint loading).</summary>
    internal static AnomalyDetector Create(DetectorOptions options, string? weightsPath, string deviceName, ILoggerFactory? loggerFactory, bool warnIfRandom, Calibration? calibration, int epochsTrained, bool allowTensorFloat32 = false)
    {
        Native.TorchRuntime.EnsureLoaded();
        loggerFactory ??= NullLoggerFactory.Instance;
        var logger = loggerFactory.CreateLogger<AnomalyDetectorBuilder>();
        var device = TorchSupport.TorchDevices.Parse(deviceName);
        if (device.type == DeviceType.CUDA)
        {
            TorchSupport.TorchDevices.SetTensorFloat32(allowTensorFloat32);
        }

        var size = options.InputSize;
        if (size.Height <= 0 || size.Width <= 0 || size.Height > DetectorOptions.MaxInputSide || size.Width > DetectorOptions.MaxInputSide)
        {
            throw new ArgumentException($"InputSize = {size} must be positive and at most {DetectorOptions.MaxInputSide} on each side (tile larger images).");
        }

        bool memoryBank = ModelFamilies.Parse(options.Family, "DetectorOptions.Family") == ModelFamilies.MemoryBank;
        if (memoryBank && options.MemoryBank is null)
        {
            throw new ArgumentException($"Family = '{ModelFamilies.MemoryBank}' needs MemoryBank options (AnomalyDetectorBuilder.WithMemoryBank).");
        }

        options.MemoryBank?.Validate();
        // The memory bank has no neck and no reconstruction: its checks are the backbone's and the bank's.
        if (!memoryBank && (options.NeckStride <= 0 || size.Height % options.NeckStride != 0 || size.Width % options.NeckStride != 0))
        {
            throw new ArgumentException($"NeckStride = {options.NeckStride} must be positive and divide the input size {size}.");
        }

        long tokens = memoryBank ? 0 : (long)(size.Height / options.NeckStride) * (size.Width / options.NeckStride);
        if (tokens > ReconstructionOptions.MaxTokens)
        {
            throw new ArgumentException($"InputSize = {size} at NeckStride = {options.NeckStride} gives {tokens} tokens; at most {ReconstructionOptions.MaxTokens} are supported (a larger stride, a smaller input, or tiling).");
        }

        if (options.ScorePoolSize <= 0)
        {
            throw new ArgumentException($"ScorePoolSize = {options.ScorePoolSize} must be positive.");
        }

        if (options.ScorePoolHeight is <= 0)
        {
            throw new ArgumentException($"ScorePoolHeight = {options.ScorePoolHeight} must be positive.");
        }

        if (options.PixelMean.Count != 3 || options.PixelStd.Count != 3 || options.PixelStd.Any(s => !(s > 0)))
        {
            throw new ArgumentException("PixelMean and PixelStd need three values each, with positive standard deviations.");
        }

        options.Tiling?.Validate(size);

        if (weightsPath is not null && !File.Exists(weightsPath))
        {
            throw new FileNotFoundException($"Backbone weights file '{weightsPath}' does not exist.", weightsPath);
        }

        if (string.Equals(options.Backbone, MlNetBackbone.ModelName, StringComparison.OrdinalIgnoreCase))
        {
            MlNetBackbone.CheckInputSize(size.Height, size.Width);
        }

        FeatureExtractor backbone = Backbone.Create(options.Backbone, options.BackboneLayers, weightsPath, warnIfRandom ? logger : null, options.PixelMean, options.PixelStd);
        try
        {
            if (weightsPath is null)
            {
                BackboneWeights.InitializeRandom(backbone, options.MemoryBank?.Seed ?? options.Reconstruction.Seed);
            }

            if (memoryBank)
            {
                backbone.to(device);
                var bankModel = new MemoryBank.MemoryBankModel(backbone, size, options.MemoryBank!);
                logger.LogInformation("Built a memory-bank detector: {Backbone} layers [{Layers}] ({Channels} channels per patch), {Grid} patches per input, coreset ratio {Ratio}, device {Device}.", options.Backbone, string.Join(", ", options.BackboneLayers), bankModel.FeatureWidth, bankModel.PatchGrid, options.MemoryBank!.CoresetRatio, device);
                return new AnomalyDetector(options, bankModel, device, loggerFactory, calibration, epochsTrained);
            }

            var neck = new MfcnNeck(backbone.Channels, backbone.Strides, options.NeckStride);
            var recon = options.Reconstruction with
            {
                InputChannels = neck.OutputChannels,
                InputStride = options.NeckStride,
                FeatureSize = new GridSize(size.Height / options.NeckStride, size.Width / options.NeckStride),
            };
            var model = new UniADModel(backbone, neck, new UniADReconstruction(recon));
            model.to(device);
            logger.LogInformation("Built a UniAD detector: {Backbone} layers [{Layers}] ({Channels} channels), {Feature} tokens, width {Width}, {Enc}+{Dec} layers, device {Device}.", options.Backbone, string.Join(", ", options.BackboneLayers), neck.OutputChannels, recon.FeatureSize, recon.HiddenDim, recon.NumEncoderLayers, recon.NumDecoderLayers, device);
            return new AnomalyDetector(options with { Reconstruction = recon }, model, device, loggerFactory, calibration, epochsTrained);
        }
        catch
        {
            backbone.Dispose();
            throw;
        }
    }

}
