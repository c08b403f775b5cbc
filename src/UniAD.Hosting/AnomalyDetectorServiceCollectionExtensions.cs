using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace UniAD.Hosting;

/// <summary>Registration of the hosted anomaly detector.</summary>
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
        return AddCore(services, (configuration as IConfigurationSection)?.Path);
    }

    /// <summary>As <see cref="AddAnomalyDetector(IServiceCollection, IConfiguration)"/>, with the options set in code (messages name e.g. <c>AnomalyDetectorServiceOptions.ModelPath</c>).</summary>
    public static IServiceCollection AddAnomalyDetector(this IServiceCollection services, Action<AnomalyDetectorServiceOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        services.AddOptions<AnomalyDetectorServiceOptions>().Configure(configure);
        return AddCore(services, null);
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

    private static IServiceCollection AddCore(IServiceCollection services, string? sectionPath)
    {
        services.AddOptions<AnomalyDetectorServiceOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<AnomalyDetectorServiceOptions>>(new AnomalyDetectorServiceOptionsValidator(sectionPath)));
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
