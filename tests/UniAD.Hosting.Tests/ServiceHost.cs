using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using UniAD.ScoringService;

namespace UniAD.Hosting.Tests;

/// <summary>The sample's endpoints on Kestrel at http://127.0.0.1:0 (a free loopback port), with the given UniAD settings.</summary>
public sealed class ServiceHost : IAsyncDisposable
{
    private ServiceHost(WebApplication app, HttpClient client)
    {
        App = app;
        Client = client;
    }

    public WebApplication App { get; }

    /// <summary>A client on the host's address (8+ connections, loopback only).</summary>
    public HttpClient Client { get; }

    public IServiceProvider Services => App.Services;

    public AnomalyDetectorProvider Provider => Services.GetRequiredService<AnomalyDetectorProvider>();

    public BatchingAnomalyScorer Scorer => Services.GetRequiredService<BatchingAnomalyScorer>();

    public IMeterFactory MeterFactory => Services.GetRequiredService<IMeterFactory>();

    public AnomalyScoringMetrics Metrics => Services.GetRequiredService<AnomalyScoringMetrics>();

    /// <summary>Builds the app (UniAD:* keys from <paramref name="settings"/>, no others), starts it and connects a client.</summary>
    public static async Task<ServiceHost> StartAsync(IDictionary<string, string?> settings)
    {
        var app = Build(settings);
        await app.StartAsync();
        var address = app.Urls.Single();
        var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 32 }) { BaseAddress = new Uri(address), Timeout = TimeSpan.FromSeconds(60) };
        return new ServiceHost(app, client);
    }

    /// <summary>The app, not started: what Program.cs builds, on a loopback port, quiet logging.</summary>
    public static WebApplication Build(IDictionary<string, string?> settings)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { EnvironmentName = "Testing", ContentRootPath = AppContext.BaseDirectory });
        builder.Configuration.Sources.Clear(); // no appsettings, environment or command line: the test says everything
        builder.Configuration.AddInMemoryCollection(settings);
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Services.AddScoringService(builder.Configuration);
        var app = builder.Build();
        app.MapScoringEndpoints();
        return app;
    }

    public static Dictionary<string, string?> Settings(string modelPath, params (string Key, string Value)[] more)
    {
        var settings = new Dictionary<string, string?> { ["UniAD:ModelPath"] = modelPath };
        foreach (var (key, value) in more)
        {
            settings["UniAD:" + key] = value;
        }

        return settings;
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}

/// <summary>Collects the measurements of the UniAD.Hosting instruments of one meter (one host's).</summary>
public sealed class MetricsRecorder : IDisposable
{
    private readonly MeterListener listener = new();
    private readonly List<(string Instrument, double Value, KeyValuePair<string, object?>[] Tags)> measurements = new();

    public MetricsRecorder(Meter meter)
    {
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, meter))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Add(i, v, tags));
        listener.SetMeasurementEventCallback<int>((i, v, tags, _) => Add(i, v, tags));
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Add(i, v, tags));
        listener.Start();
    }

    public IReadOnlyList<double> Values(string instrument)
    {
        lock (measurements)
        {
            return measurements.Where(m => m.Instrument == instrument).Select(m => m.Value).ToList();
        }
    }

    public double Sum(string instrument) => Values(instrument).Sum();

    public IReadOnlyList<(double Value, KeyValuePair<string, object?>[] Tags)> WithTags(string instrument)
    {
        lock (measurements)
        {
            return measurements.Where(m => m.Instrument == instrument).Select(m => (m.Value, m.Tags)).ToList();
        }
    }

    /// <summary>Reads the observable instruments (the queue-length gauge) now.</summary>
    public void Observe() => listener.RecordObservableInstruments();

    public void Dispose() => listener.Dispose();

    private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        lock (measurements)
        {
            measurements.Add((instrument.Name, value, tags.ToArray()));
        }
    }
}
