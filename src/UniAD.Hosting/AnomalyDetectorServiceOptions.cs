using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;

namespace UniAD.Hosting;

/// <summary>
/// Options of the hosted detector, bound from a configuration section (by convention <see cref="SectionName"/>) by
/// <see cref="AnomalyDetectorServiceCollectionExtensions.AddAnomalyDetector(Microsoft.Extensions.DependencyInjection.IServiceCollection, Microsoft.Extensions.Configuration.IConfiguration)"/>
/// and validated when the host starts (an <see cref="OptionsValidationException"/> naming every bad option).
/// </summary>
public sealed class AnomalyDetectorServiceOptions
{
    /// <summary>The conventional configuration section: <c>UniAD</c> (keys <c>UniAD:ModelPath</c>, <c>UniAD:MaxBatchSize</c>, ...).</summary>
    public const string SectionName = "UniAD";

    /// <summary>The largest accepted <see cref="MaxBatchSize"/>.</summary>
    public const int MaxBatchSizeLimit = 256;

    /// <summary>The largest accepted <see cref="MaxBatchDelay"/>.</summary>
    public static readonly TimeSpan MaxBatchDelayLimit = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Required: the model file, loaded when the host starts: the detector written by <c>AnomalyDetector.Save</c> (a
    /// <c>.safetensors</c> checkpoint) for <c>AddAnomalyDetector</c>, or the <c>.onnx</c> file written by
    /// <c>AnomalyDetector.ExportOnnx</c> for <c>AddOnnxAnomalyScorer</c>. A relative path is relative to the process's
    /// working directory.
    /// </summary>
    public string? ModelPath { get; set; }

    /// <summary>
    /// The device a TorchSharp detector runs on: <c>cpu</c> (default), <c>cuda</c> or <c>cuda:N</c>. An ONNX service
    /// (<c>AddOnnxAnomalyScorer</c>) chooses its device with <see cref="OnnxScorerServiceOptions.ExecutionProvider"/> and
    /// refuses any other value than <c>cpu</c> here.
    /// </summary>
    public string Device { get; set; } = "cpu";

    /// <summary>The most images scored in one forward pass (1..<see cref="MaxBatchSizeLimit"/>; default 8).</summary>
    public int MaxBatchSize { get; set; } = 8;

    /// <summary>
    /// How long the scorer waits, after the first request of a batch, for more requests to fill it (0..1 s; default
    /// 5 ms; configuration format <c>00:00:00.005</c>). Zero scores whatever is queued at once.
    /// </summary>
    public TimeSpan MaxBatchDelay { get; set; } = TimeSpan.FromMilliseconds(5);

    /// <summary>
    /// How many requests may wait for the scorer (at least 1; default 256). A request that finds the queue full fails
    /// at once with <see cref="ScoringQueueFullException"/> (HTTP 503 in the sample service): the queue never grows without bound.
    /// </summary>
    public int QueueCapacity { get; set; } = 256;

    /// <summary>The largest encoded image accepted, in bytes (at least 1; default 16 MiB); larger ones fail with <see cref="ImageTooLargeException"/>.</summary>
    public long MaxImageBytes { get; set; } = 16L * 1024 * 1024;

    /// <summary>
    /// The memory the scorer may hold for decoded images at once, in bytes (default 2 GiB; at least 64 MiB). Each request
    /// is charged, from its header, <see cref="DecodedMemoryBudget.BytesPerPixel"/> bytes per pixel (the decoded image,
    /// the map and mask at its size, the heat-map overlay and its PNG) from when it is accepted until its result is
    /// disposed. A request that does not fit in what is left fails at once with <see cref="ScoringMemoryBusyException"/>
    /// (HTTP 503 with Retry-After in the sample service); one larger than the whole budget fails with
    /// <see cref="ImageTooLargeException"/> (HTTP 413). When the budget empties after heavy use the scorer asks the garbage
    /// collector to return the memory to the system.
    /// </summary>
    public long MaxDecodedBytes { get; set; } = 2L * 1024 * 1024 * 1024;

    /// <summary>
    /// Optional: the sensitivity in [0, 1] applied to every model the provider loads from a file (0.5 = the calibrated
    /// thresholds; higher flags more; see <c>AnomalyDetector.SetSensitivity</c>, and <c>OnnxScorerOptions.Sensitivity</c>
    /// for an ONNX model, whose file is never changed). The model must be calibrated.
    /// </summary>
    public double? Sensitivity { get; set; }
}

/// <summary>Validates <see cref="AnomalyDetectorServiceOptions"/>; messages name the configuration key.</summary>
internal sealed partial class AnomalyDetectorServiceOptionsValidator : IValidateOptions<AnomalyDetectorServiceOptions>
{
    private readonly string prefix;
    private readonly bool onnx;
    private readonly string onnxPrefix;

    /// <summary>Creates the validator; <paramref name="sectionPath"/> prefixes the option names in messages (e.g. <c>UniAD</c>); <paramref name="onnx"/>: the options of an ONNX service.</summary>
    public AnomalyDetectorServiceOptionsValidator(string? sectionPath, bool onnx = false)
    {
        prefix = string.IsNullOrEmpty(sectionPath) ? nameof(AnomalyDetectorServiceOptions) + "." : sectionPath + ":";
        this.onnx = onnx;
        onnxPrefix = string.IsNullOrEmpty(sectionPath) ? nameof(OnnxScorerServiceOptions) + "." : $"{sectionPath}:{OnnxScorerServiceOptions.SectionName}:";
    }

    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, AnomalyDetectorServiceOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        if (string.IsNullOrWhiteSpace(options.ModelPath))
        {
            failures.Add(onnx
                ? $"{prefix}{nameof(options.ModelPath)} is required: the .onnx file written by AnomalyDetector.ExportOnnx."
                : $"{prefix}{nameof(options.ModelPath)} is required: the detector file written by AnomalyDetector.Save (.safetensors).");
        }
        else if (!File.Exists(options.ModelPath))
        {
            failures.Add($"{prefix}{nameof(options.ModelPath)}: the model file '{options.ModelPath}' does not exist (full path '{Path.GetFullPath(options.ModelPath)}').");
        }
        else if (onnx && !options.ModelPath.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
        {
            failures.Add($"{prefix}{nameof(options.ModelPath)}: '{options.ModelPath}' is not an .onnx file; the ONNX runtime scores the file written by AnomalyDetector.ExportOnnx (a .safetensors checkpoint needs AddAnomalyDetector and libtorch).");
        }

        if (onnx)
        {
            if (!string.Equals(options.Device, "cpu", StringComparison.Ordinal))
            {
                failures.Add($"{prefix}{nameof(options.Device)} applies to TorchSharp detectors only; an ONNX service chooses its device with {onnxPrefix}{nameof(OnnxScorerServiceOptions.ExecutionProvider)} and {onnxPrefix}{nameof(OnnxScorerServiceOptions.DeviceId)}; got '{options.Device}'.");
            }
        }
        else if (string.IsNullOrWhiteSpace(options.Device) || !DevicePattern().IsMatch(options.Device))
        {
            failures.Add($"{prefix}{nameof(options.Device)} must be 'cpu', 'cuda' or 'cuda:N'; got '{options.Device}'.");
        }

        if (options.MaxBatchSize < 1 || options.MaxBatchSize > AnomalyDetectorServiceOptions.MaxBatchSizeLimit)
        {
            failures.Add($"{prefix}{nameof(options.MaxBatchSize)} must lie in 1..{AnomalyDetectorServiceOptions.MaxBatchSizeLimit}; got {options.MaxBatchSize}.");
        }

        if (options.MaxBatchDelay < TimeSpan.Zero || options.MaxBatchDelay > AnomalyDetectorServiceOptions.MaxBatchDelayLimit)
        {
            failures.Add($"{prefix}{nameof(options.MaxBatchDelay)} must lie in 0..{AnomalyDetectorServiceOptions.MaxBatchDelayLimit}; got {options.MaxBatchDelay}.");
        }

        if (options.QueueCapacity < 1)
        {
            failures.Add($"{prefix}{nameof(options.QueueCapacity)} must be at least 1; got {options.QueueCapacity}.");
        }

        if (options.MaxImageBytes < 1 || options.MaxImageBytes > Array.MaxLength)
        {
            failures.Add($"{prefix}{nameof(options.MaxImageBytes)} must lie in 1..{Array.MaxLength}; got {options.MaxImageBytes}.");
        }

        if (options.MaxDecodedBytes < DecodedMemoryBudget.MinimumBytes)
        {
            failures.Add($"{prefix}{nameof(options.MaxDecodedBytes)} must be at least {DecodedMemoryBudget.MinimumBytes} (64 MiB); got {options.MaxDecodedBytes}.");
        }

        if (options.Sensitivity is { } s && !(s >= 0 && s <= 1))
        {
            failures.Add($"{prefix}{nameof(options.Sensitivity)} must lie in [0, 1]; got {s.ToString(CultureInfo.InvariantCulture)}.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    [GeneratedRegex(@"^(cpu|cuda(:\d+)?)$", RegexOptions.CultureInvariant)]
    private static partial Regex DevicePattern();
}
