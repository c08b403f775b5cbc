using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace UniAD.Hosting.Tests;

/// <summary>A plain generic host (no HTTP) with the hosted detector registered in code.</summary>
public static class ScorerHost
{
    public static IHost Build(Action<AnomalyDetectorServiceOptions> configure)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true, EnvironmentName = "Testing" });
        builder.Logging.ClearProviders();
        builder.Services.AddAnomalyDetector(configure);
        return builder.Build();
    }

    /// <summary>As <see cref="Build"/>, with the ONNX scorer (<c>AddOnnxAnomalyScorer</c>).</summary>
    public static IHost BuildOnnx(Action<AnomalyDetectorServiceOptions> configure, Action<OnnxScorerServiceOptions>? configureOnnx = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true, EnvironmentName = "Testing" });
        builder.Logging.ClearProviders();
        builder.Services.AddOnnxAnomalyScorer(configure, configureOnnx);
        return builder.Build();
    }

    public static async Task<IHost> StartAsync(Action<AnomalyDetectorServiceOptions> configure)
    {
        var host = Build(configure);
        await host.StartAsync();
        return host;
    }
}
