using Microsoft.Extensions.Options;
using UniAD.Onnx;

namespace UniAD.Hosting;

/// <summary>
/// ONNX Runtime options of a service that scores an exported model (<c>AddOnnxAnomalyScorer</c>), bound from the
/// sub-section <see cref="SectionName"/> of the service's section (keys <c>UniAD:Onnx:ExecutionProvider</c>,
/// <c>UniAD:Onnx:IntraOpThreads</c>, ...) and validated when the host starts. The rest of the service's options (model
/// path, batching, queue, memory, sensitivity) are the <see cref="AnomalyDetectorServiceOptions"/> of the section itself.
/// </summary>
public sealed class OnnxScorerServiceOptions
{
    /// <summary>The sub-section's name: <c>Onnx</c>.</summary>
    public const string SectionName = "Onnx";

    /// <summary>
    /// The execution provider (configuration: <c>Cpu</c>, the default, <c>Cuda</c>, <c>DirectML</c>, <c>TensorRT</c> or
    /// <c>OpenVINO</c>). Each needs its native ONNX Runtime package in the application; a missing one stops the host's
    /// start with a <see cref="PlatformNotSupportedException"/> naming the package.
    /// </summary>
    public OnnxExecutionProvider ExecutionProvider { get; set; } = OnnxExecutionProvider.Cpu;

    /// <summary>The device of a GPU provider (CUDA, TensorRT, DirectML); default 0; at least 0.</summary>
    public int DeviceId { get; set; }

    /// <summary>OpenVINO's device type (<c>CPU</c>, <c>GPU</c>, <c>NPU</c>, ...); null for OpenVINO's default.</summary>
    public string? OpenVinoDeviceType { get; set; }

    /// <summary>Threads ONNX Runtime uses within one run; 0 (default) lets ONNX Runtime choose (one per physical core); at least 0.</summary>
    public int IntraOpThreads { get; set; }

    /// <summary>
    /// Whether ONNX Runtime's threads spin while waiting for work (default true: lowest latency). Set false when the cores
    /// are shared with other busy processes.
    /// </summary>
    public bool AllowSpinning { get; set; } = true;

    /// <summary>With a tiled model, tiles per run (default 8; at least 1).</summary>
    public int TileBatchSize { get; set; } = 8;

    /// <summary>The scorer's options for these settings, the service's sensitivity and a warning sink.</summary>
    internal OnnxScorerOptions ToScorerOptions(double? sensitivity, Action<string>? onWarning) => new()
    {
        ExecutionProvider = ExecutionProvider,
        DeviceId = DeviceId,
        OpenVinoDeviceType = string.IsNullOrWhiteSpace(OpenVinoDeviceType) ? null : OpenVinoDeviceType,
        IntraOpThreads = IntraOpThreads,
        AllowSpinning = AllowSpinning,
        TileBatchSize = TileBatchSize,
        Sensitivity = sensitivity,
        OnWarning = onWarning,
    };
}

/// <summary>Validates <see cref="OnnxScorerServiceOptions"/>; messages name the configuration key (e.g. <c>UniAD:Onnx:IntraOpThreads</c>).</summary>
internal sealed class OnnxScorerServiceOptionsValidator : IValidateOptions<OnnxScorerServiceOptions>
{
    private readonly string prefix;

    /// <summary>Creates the validator; <paramref name="sectionPath"/> is the ONNX sub-section's path (e.g. <c>UniAD:Onnx</c>), or null for options set in code.</summary>
    public OnnxScorerServiceOptionsValidator(string? sectionPath)
    {
        prefix = string.IsNullOrEmpty(sectionPath) ? nameof(OnnxScorerServiceOptions) + "." : sectionPath + ":";
    }

    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, OnnxScorerServiceOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        if (!Enum.IsDefined(options.ExecutionProvider))
        {
            failures.Add($"{prefix}{nameof(options.ExecutionProvider)} must be one of {string.Join(", ", Enum.GetNames<OnnxExecutionProvider>())}; got '{options.ExecutionProvider}'.");
        }

        if (options.DeviceId < 0)
        {
            failures.Add($"{prefix}{nameof(options.DeviceId)} must be at least 0; got {options.DeviceId}.");
        }

        if (options.IntraOpThreads < 0)
        {
            failures.Add($"{prefix}{nameof(options.IntraOpThreads)} must be at least 0 (0 lets ONNX Runtime choose); got {options.IntraOpThreads}.");
        }

        if (options.TileBatchSize < 1)
        {
            failures.Add($"{prefix}{nameof(options.TileBatchSize)} must be at least 1; got {options.TileBatchSize}.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
