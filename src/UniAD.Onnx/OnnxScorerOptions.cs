using UniAD.Core.Data;

namespace UniAD.Onnx;

/// <summary>The ONNX Runtime execution provider a scorer runs on. Each needs its native package in the application (see <see cref="OnnxExecutionProviders.PackageFor"/>).</summary>
public enum OnnxExecutionProvider
{
    /// <summary>The CPU (package <c>Microsoft.ML.OnnxRuntime</c>).</summary>
    Cpu,

    /// <summary>NVIDIA CUDA (package <c>Microsoft.ML.OnnxRuntime.Gpu</c>, or <c>.Gpu.Linux</c> / <c>.Gpu.Windows</c>; CUDA and cuDNN installed).</summary>
    Cuda,

    /// <summary>DirectML on Windows (package <c>Microsoft.ML.OnnxRuntime.DirectML</c>).</summary>
    DirectML,

    /// <summary>NVIDIA TensorRT (package <c>Microsoft.ML.OnnxRuntime.Gpu</c>; TensorRT, CUDA and cuDNN installed).</summary>
    TensorRT,

    /// <summary>Intel OpenVINO (package <c>Intel.ML.OnnxRuntime.OpenVino</c>).</summary>
    OpenVINO,
}

/// <summary>How <see cref="OnnxAnomalyScorer.Load"/> sets up ONNX Runtime. Immutable; validated at <c>Load</c>.</summary>
public sealed record OnnxScorerOptions
{
    /// <summary>The execution provider (default <see cref="OnnxExecutionProvider.Cpu"/>). Operators it cannot run fall back to the CPU.</summary>
    public OnnxExecutionProvider ExecutionProvider { get; init; } = OnnxExecutionProvider.Cpu;

    /// <summary>The device of a GPU provider (CUDA, TensorRT, DirectML); default 0. Ignored by the CPU and OpenVINO.</summary>
    public int DeviceId { get; init; }

    /// <summary>OpenVINO's device type (<c>CPU</c>, <c>GPU</c>, <c>NPU</c>, ...); null for OpenVINO's default. Ignored by the other providers.</summary>
    public string? OpenVinoDeviceType { get; init; }

    /// <summary>Threads ONNX Runtime uses within one run (intra-op); 0 (default) lets ONNX Runtime choose (one per physical core).</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>
    /// Whether ONNX Runtime's intra-op threads spin while waiting for work (ONNX Runtime's default, true: lowest latency).
    /// Set false when the process runs other multi-threaded native code beside the scorer (libtorch, a second session) or the
    /// machine's cores are shared: spinning threads then take cores the other code's threads wait for.
    /// </summary>
    public bool AllowSpinning { get; init; } = true;

    /// <summary>With tiling, tiles per run when scoring an image (default 8, as <c>AnomalyDetector</c>).</summary>
    public int TileBatchSize { get; init; } = 8;

    /// <summary>Images with more pixels are refused before decoding (decompression bombs); default PIL's limit.</summary>
    public long MaxImagePixels { get; init; } = ImageDecoder.DefaultMaxPixels;

    /// <summary>
    /// The sensitivity in [0, 1] the scorer applies to the calibration stored in the model file, image and pixel alike
    /// (0.5 = the calibrated thresholds; higher flags more), as <c>AnomalyDetector.SetSensitivity</c> does for a
    /// checkpoint; null (default) keeps the file's own sensitivities. The file is never changed: load again with another
    /// value to change it. The model must have been exported calibrated (<see cref="OnnxAnomalyScorer.Load"/> throws
    /// otherwise).
    /// </summary>
    public double? Sensitivity { get; init; }

    /// <summary>
    /// Receives the scorer's warnings (an untiled model stretching an image whose aspect ratio differs from its input's by
    /// more than <see cref="UniAD.Core.Detection.ImageScorer.MaxUntiledStretch"/>); null (default) drops them. Called on the scoring thread.
    /// </summary>
    public Action<string>? OnWarning { get; init; }

    /// <summary>Checks every value and throws an exception naming the first one that is impossible.</summary>
    /// <exception cref="ArgumentException">A value is out of range or the provider is unknown.</exception>
    public void Validate()
    {
        if (!Enum.IsDefined(ExecutionProvider))
        {
            throw new ArgumentException($"{nameof(ExecutionProvider)} = {ExecutionProvider} is not a known execution provider ({string.Join(", ", Enum.GetNames<OnnxExecutionProvider>())}).", nameof(ExecutionProvider));
        }

        if (DeviceId < 0)
        {
            throw new ArgumentException($"{nameof(DeviceId)} = {DeviceId} must not be negative.", nameof(DeviceId));
        }

        if (IntraOpThreads < 0)
        {
            throw new ArgumentException($"{nameof(IntraOpThreads)} = {IntraOpThreads} must not be negative (0 lets ONNX Runtime choose).", nameof(IntraOpThreads));
        }

        if (TileBatchSize < 1)
        {
            throw new ArgumentException($"{nameof(TileBatchSize)} = {TileBatchSize} must be at least 1.", nameof(TileBatchSize));
        }

        if (Sensitivity is { } sensitivity && !(sensitivity >= 0 && sensitivity <= 1))
        {
            throw new ArgumentException($"{nameof(Sensitivity)} = {sensitivity.ToString(System.Globalization.CultureInfo.InvariantCulture)} must lie in [0, 1].", nameof(Sensitivity));
        }

        if (MaxImagePixels < 1)
        {
            throw new ArgumentException($"{nameof(MaxImagePixels)} = {MaxImagePixels} must be positive.", nameof(MaxImagePixels));
        }
    }
}
