using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using UniAD.Onnx;

namespace UniAD.Hosting;

/// <summary>
/// Registration of the hosted anomaly model: <see cref="AddAnomalyDetector(IServiceCollection, IConfiguration)"/> for a
/// TorchSharp checkpoint (libtorch), <see cref="AddOnnxAnomalyScorer(IServiceCollection, IConfiguration)"/> for an
/// exported <c>.onnx</c> file (ONNX Runtime, no libtorch needed). One service hosts one of them.
/// </summary>
public static class AnomalyDetectorServiceCollectionExtensions
{
    /// <summary>
    /// Registers the hosted detector with options bound from <paramref name="configuration"/> (usually
    /// <c>configuration.GetSection("UniAD")</c>; keys as <see cref="AnomalyDetectorServiceOptions"/>' properties) and validated
    /// when the host starts: <see cref="AnomalyDetectorServiceOptions"/>, <see cref="AnomalyDetectorProvider"/> (loads the
    /// model at start), <see cref="BatchingAnomalyScorer"/> as <see cref="IAnomalyScorer"/> and both as hosted services (the
    /// provider first), and <see cref="AnomalyScoringMetrics"/>. Bad options fail the host's start with an
    /// <see cref="OptionsValidationException"/> whose message names each bad key (e.g. <c>UniAD:ModelPath</c>).
    /// </summary>
    public static IServiceCollection AddAnomalyDetector(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        services.AddOptions<AnomalyDetectorServiceOptions>().Bind(configuration);
        return AddCore(services, (configuration as IConfigurationSection)?.Path, onnx: false);
    }

    /// <summary>As <see cref="AddAnomalyDetector(IServiceCollection, IConfiguration)"/>, with the options set in code (messages name e.g. <c>AnomalyDetectorServiceOptions.ModelPath</c>).</summary>
    public static IServiceCollection AddAnomalyDetector(this IServiceCollection services, Action<AnomalyDetectorServiceOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        services.AddOptions<AnomalyDetectorServiceOptions>().Configure(configure);
        return AddCore(services, null, onnx: false);
    }

    /// <summary>
    /// Registers the hosted ONNX scorer: as <see cref="AddAnomalyDetector(IServiceCollection, IConfiguration)"/> (the same
    /// provider with hot swap, batching scorer, health check and metrics, the same <see cref="AnomalyDetectorServiceOptions"/>
    /// bound from <paramref name="configuration"/>), but the provider loads <see cref="AnomalyDetectorServiceOptions.ModelPath"/>,
    /// an <c>.onnx</c> file written by <c>AnomalyDetector.ExportOnnx</c>, with <see cref="OnnxAnomalyScorer.Load"/> on
    /// ONNX Runtime, so the application needs no libtorch (nor TorchSharp's native package). ONNX Runtime's options are
    /// <see cref="OnnxScorerServiceOptions"/>, bound from the sub-section <c>Onnx</c> (<c>UniAD:Onnx:ExecutionProvider</c>,
    /// <c>UniAD:Onnx:IntraOpThreads</c>, ...). <see cref="AnomalyDetectorServiceOptions.Sensitivity"/> is applied to the
    /// file's calibration as <see cref="OnnxScorerOptions.Sensitivity"/>. Both option sets are validated when the host
    /// starts (an <see cref="OptionsValidationException"/> naming each bad key: a missing or non-<c>.onnx</c> model path,
    /// a <c>UniAD:Device</c> other than <c>cpu</c>, negative threads, ...). The application references ONNX Runtime's
    /// native package of its execution provider (<c>Microsoft.ML.OnnxRuntime</c> for the CPU).
    /// </summary>
    /// <exception cref="InvalidOperationException"><c>AddAnomalyDetector</c> was called on these services already.</exception>
    public static IServiceCollection AddOnnxAnomalyScorer(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        var path = (configuration as IConfigurationSection)?.Path;
        services.AddOptions<AnomalyDetectorServiceOptions>().Bind(configuration);
        services.AddOptions<OnnxScorerServiceOptions>().Bind(configuration.GetSection(OnnxScorerServiceOptions.SectionName));
        return AddOnnxCore(services, path, string.IsNullOrEmpty(path) ? OnnxScorerServiceOptions.SectionName : $"{path}:{OnnxScorerServiceOptions.SectionName}");
    }

    /// <summary>
    /// As <see cref="AddOnnxAnomalyScorer(IServiceCollection, IConfiguration)"/>, with the options set in code (messages
    /// name e.g. <c>AnomalyDetectorServiceOptions.ModelPath</c> and <c>OnnxScorerServiceOptions.IntraOpThreads</c>).
    /// </summary>
    /// <exception cref="InvalidOperationException"><c>AddAnomalyDetector</c> was called on these services already.</exception>
    public static IServiceCollection AddOnnxAnomalyScorer(this IServiceCollection services, Action<AnomalyDetectorServiceOptions> configure, Action<OnnxScorerServiceOptions>? configureOnnx = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        services.AddOptions<AnomalyDetectorServiceOptions>().Configure(configure);
        var onnx = services.AddOptions<OnnxScorerServiceOptions>();
        if (configureOnnx is not null)
        {
            onnx.Configure(configureOnnx);
        }

        return AddOnnxCore(services, null, null);
    }

    /// <summary>
    /// Adds <see cref="AnomalyDetectorHealthCheck"/> (healthy when a detector is loaded and the scorer is running) under
    /// <paramref name="name"/>; register the detector with <c>AddAnomalyDetector</c> too.
    /// </summary>
    public static IHealthChecksBuilder AddAnomalyDetectorHealthCheck(this IHealthChecksBuilder builder, string name = "uniad", HealthStatus? failureStatus = null, IEnumerable<string>? tags = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddCheck<AnomalyDetectorHealthCheck>(name, failureStatus, tags ?? Array.Empty<string>());
    }

    private static IServiceCollection AddOnnxCore(IServiceCollection services, string? sectionPath, string? onnxSectionPath)
    {
        services.AddOptions<OnnxScorerServiceOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<OnnxScorerServiceOptions>>(new OnnxScorerServiceOptionsValidator(onnxSectionPath)));
        services.TryAddSingleton(sp =>
        {
            var options = sp.GetRequiredService<IOptions<AnomalyDetectorServiceOptions>>();
            var onnx = sp.GetRequiredService<IOptions<OnnxScorerServiceOptions>>();
            var loggers = sp.GetService<ILoggerFactory>();
            var scorerLogger = (loggers ?? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance).CreateLogger<OnnxAnomalyScorer>();
            return new AnomalyDetectorProvider(options, loggers, path => OnnxAnomalyScorer.Load(
                path,
                onnx.Value.ToScorerOptions(options.Value.Sensitivity, warning => scorerLogger.LogWarning("{Warning}", warning))));
        });
        return AddCore(services, sectionPath, onnx: true);
    }

    private static IServiceCollection AddCore(IServiceCollection services, string? sectionPath, bool onnx)
    {
        string runtime = onnx ? "onnx" : "torch";
        if (services.FirstOrDefault(d => d.ServiceType == typeof(HostedRuntime))?.ImplementationInstance is HostedRuntime { } registered && registered.Name != runtime)
        {
            throw new InvalidOperationException($"{(onnx ? "AddOnnxAnomalyScorer" : "AddAnomalyDetector")} was called after {(onnx ? "AddAnomalyDetector" : "AddOnnxAnomalyScorer")}: a service hosts one runtime's model (the provider, scorer and options are shared).");
        }

        services.TryAddSingleton(new HostedRuntime(runtime));
        services.AddOptions<AnomalyDetectorServiceOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<AnomalyDetectorServiceOptions>>(new AnomalyDetectorServiceOptionsValidator(sectionPath, onnx)));
        services.TryAddSingleton(sp => new AnomalyScoringMetrics(sp.GetService<System.Diagnostics.Metrics.IMeterFactory>()));
        services.TryAddSingleton(sp => new AnomalyDetectorProvider(sp.GetRequiredService<IOptions<AnomalyDetectorServiceOptions>>(), sp.GetService<ILoggerFactory>()));
        services.TryAddSingleton(sp => new BatchingAnomalyScorer(
            sp.GetRequiredService<AnomalyDetectorProvider>(),
            sp.GetRequiredService<IOptions<AnomalyDetectorServiceOptions>>(),
            sp.GetRequiredService<AnomalyScoringMetrics>(),
            sp.GetService<ILogger<BatchingAnomalyScorer>>()));
        services.TryAddSingleton<IAnomalyScorer>(sp => sp.GetRequiredService<BatchingAnomalyScorer>());
        services.AddHostedService(sp => sp.GetRequiredService<AnomalyDetectorProvider>()); // loads the model first
        services.AddHostedService(sp => sp.GetRequiredService<BatchingAnomalyScorer>());
        return services;
    }
}

/// <summary>Which runtime the services' registration chose (one per service collection).</summary>
internal sealed record HostedRuntime(string Name);
