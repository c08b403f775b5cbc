using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using UniAD.Core.Detection;
using UniAD.Hosting.Tests.ScoringService;
using UniAD.Onnx;
using UniAD.ScoringService;

namespace UniAD.Hosting.Tests.Onnx;

/// <summary>
/// The hosting stack over an exported model (AddOnnxAnomalyScorer): the provider loads the .onnx file on ONNX Runtime, the
/// batching scorer and the HTTP service give OnnxAnomalyScorer's own numbers, hot swap, health, metrics, sensitivity, and
/// bad options refused at start with the key named.
/// </summary>
[Collection(ModelsCollection.Name)]
public sealed class OnnxHostingTests(TestModels models)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private static IHost FromConfiguration(Dictionary<string, string?> settings)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddOnnxAnomalyScorer(builder.Configuration.GetSection(AnomalyDetectorServiceOptions.SectionName));
        return builder.Build();
    }

    private static void AssertSame(AnomalyResult expected, AnomalyResult actual, string what)
    {
        Assert.True(Math.Abs(expected.Score - actual.Score) <= 1e-5 * Math.Max(1, Math.Abs(expected.Score)), $"{what}: score {actual.Score:G9}, OnnxAnomalyScorer {expected.Score:G9}");
        Assert.Equal(expected.IsAnomalous, actual.IsAnomalous);
        Assert.NotNull(expected.NormalizedScore);
        Assert.Equal(expected.NormalizedScore!.Value, actual.NormalizedScore!.Value, 1e-5);
        Assert.Equal(expected.Map.Width, actual.Map.Width);
        Assert.Equal(expected.Map.Max, actual.Map.Max, 1e-4f);
    }

    [Fact]
    public async Task The_provider_loads_the_onnx_file_and_the_batching_scorer_gives_the_scorers_own_numbers()
    {
        using var reference = OnnxAnomalyScorer.Load(models.OnnxA);
        using var host = await StartOnnxAsync(o =>
        {
            o.ModelPath = models.OnnxA;
            o.MaxBatchDelay = TimeSpan.FromMilliseconds(50); // concurrent requests are gathered into batches
        });
        var provider = host.Services.GetRequiredService<AnomalyDetectorProvider>();
        Assert.Equal("onnx", provider.Model!.Runtime);
        Assert.Equal(models.OnnxA, provider.Model.Source);
        using (var lease = provider.Acquire())
        {
            var scorer = Assert.IsType<OnnxAnomalyScorer>(lease.Scorer);
            Assert.Equal(models.OnnxA, scorer.ModelPath);
            Assert.Equal(reference.Calibration, scorer.Calibration);
            var wrong = Assert.Throws<InvalidOperationException>(() => lease.Detector);
            Assert.Contains("OnnxAnomalyScorer", wrong.Message);
        }

        var recorder = new MetricsRecorder(host.Services.GetRequiredService<AnomalyScoringMetrics>().Meter);
        using (recorder)
        {
            var scorer = host.Services.GetRequiredService<IAnomalyScorer>();
            var results = await Task.WhenAll(models.Images.Select(i => scorer.ScoreAsync(i.Bytes, i.Name)));
            for (int i = 0; i < results.Length; i++)
            {
                AssertSame(reference.Score(models.Images[i].Bytes, models.Images[i].Name), results[i], models.Images[i].Name);
                Assert.Equal(models.Images[i].Name, results[i].Source);
            }

            Assert.Contains(results, r => r.IsAnomalous == true);
            Assert.Contains(results, r => r.IsAnomalous == false);
            Assert.Equal(models.Images.Count, recorder.Sum(AnomalyScoringMetrics.ImagesScoredName));
            Assert.Equal(results.Count(r => r.IsAnomalous == true), recorder.Sum(AnomalyScoringMetrics.AnomaliesName));
            var batches = recorder.Values(AnomalyScoringMetrics.BatchSizeName);
            Assert.Equal(models.Images.Count, batches.Sum());
            Assert.True(batches.Max() > 1, $"batch sizes {string.Join(", ", batches)}: the concurrent requests were never batched");
            Assert.Equal(models.Images.Count, recorder.Values(AnomalyScoringMetrics.LatencyName).Count);
        }

        await host.StopAsync();
    }

    [Fact]
    public async Task Hot_swap_and_reload_replace_the_onnx_model_and_dispose_the_old_one_after_its_last_lease()
    {
        using var a = OnnxAnomalyScorer.Load(models.OnnxA);
        using var b = OnnxAnomalyScorer.Load(models.OnnxB);
        var (name, bytes) = models.Images[0];
        Assert.NotEqual(a.Score(bytes).Score, b.Score(bytes).Score);
        using var host = await StartOnnxAsync(o => o.ModelPath = models.OnnxA);
        var provider = host.Services.GetRequiredService<AnomalyDetectorProvider>();
        var scorer = host.Services.GetRequiredService<IAnomalyScorer>();
        AssertSame(a.Score(bytes, name), await scorer.ScoreAsync(bytes, name), "generation 1");

        var inFlight = provider.Acquire();
        var old = inFlight.Scorer;
        var info = await provider.ReloadAsync(models.OnnxB);
        Assert.Equal(2, info.Generation);
        Assert.Equal("onnx", info.Runtime);
        Assert.Equal(models.OnnxB, provider.Model!.Source);
        using (var scored = await scorer.ScoreImageAsync(bytes, name))
        {
            AssertSame(b.Score(bytes, name), scored.Result, "after the reload");
            Assert.Equal(2, scored.Model.Generation);
            Assert.Equal(b.Calibration, scored.Calibration);
        }

        _ = old.Score(bytes); // the in-flight lease keeps the old session alive
        inFlight.Dispose();
        await Wait.Until(() => Throws<ObjectDisposedException>(() => old.Score(bytes)), "the old scorer to be disposed after its last lease");

        // An ONNX scorer swapped in from code (as a retraining service would after ExportOnnx).
        var swapped = OnnxAnomalyScorer.Load(models.OnnxA);
        await provider.Swap(swapped, "exported in memory");
        Assert.Equal(3, provider.Model!.Generation);
        AssertSame(a.Score(bytes, name), await scorer.ScoreAsync(bytes, name), "after the swap");
        Assert.Throws<ArgumentException>(() => { _ = provider.Swap(swapped); });
        await host.StopAsync();
    }

    [Fact]
    public async Task The_http_service_on_an_onnx_file_gives_the_scorers_numbers_and_a_healthy_report()
    {
        using var reference = OnnxAnomalyScorer.Load(models.OnnxA);
        await using var host = await ServiceHost.StartAsync(ServiceHost.Settings(models.OnnxA)); // the extension chooses the runtime
        foreach (var (name, bytes) in models.Images.Take(4))
        {
            using var response = await host.Client.PostAsync(ScoringEndpointsTests.ScoreUri(name), ScoringEndpointsTests.Raw(bytes));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var verdict = (await response.Content.ReadFromJsonAsync<ScoreResponse>(Json))!;
            var expected = reference.Score(bytes, name);
            Assert.True(Math.Abs(expected.Score - verdict.Score) <= 1e-5 * Math.Max(1, Math.Abs(expected.Score)), $"{name}: {verdict.Score:G9} vs {expected.Score:G9}");
            Assert.Equal(expected.IsAnomalous, verdict.Anomalous);
            Assert.Equal(models.OnnxA, verdict.Model);
        }

        using var health = await host.Client.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        using var doc = JsonDocument.Parse(await health.Content.ReadAsStringAsync());
        var data = doc.RootElement.GetProperty("checks").GetProperty("uniad").GetProperty("data");
        Assert.Equal("onnx", data.GetProperty("runtime").GetString());
        Assert.Equal("Cpu", data.GetProperty("executionProvider").GetString());
        Assert.True(data.GetProperty("calibrated").GetBoolean());
        Assert.Equal(models.OnnxA, data.GetProperty("modelPath").GetString());
        Assert.False(data.TryGetProperty("epochsTrained", out _));

        await host.Scorer.StopAsync(CancellationToken.None);
        using var stopped = await host.Client.GetAsync("/health");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, stopped.StatusCode);
    }

    [Fact]
    public async Task The_service_sensitivity_moves_the_onnx_threshold_as_OnnxScorerOptions_Sensitivity()
    {
        using var plain = OnnxAnomalyScorer.Load(models.OnnxA);
        using var sensitive = OnnxAnomalyScorer.Load(models.OnnxA, new OnnxScorerOptions { Sensitivity = 0.9 });
        Assert.Equal(0.9, sensitive.Calibration!.ImageSensitivity);
        Assert.Equal(0.5, sensitive.Info.Calibration!.ImageSensitivity); // the file's own calibration is reported unchanged
        Assert.True(sensitive.Calibration.EffectiveImageThreshold < plain.Calibration!.EffectiveImageThreshold);

        using var host = await StartOnnxAsync(o => { o.ModelPath = models.OnnxA; o.Sensitivity = 0.9; });
        var scorer = host.Services.GetRequiredService<IAnomalyScorer>();
        int flagged = 0;
        foreach (var (name, bytes) in models.Images)
        {
            using var scored = await scorer.ScoreImageAsync(bytes, name);
            Assert.Equal(sensitive.Calibration, scored.Calibration);
            AssertSame(sensitive.Score(bytes, name), scored.Result, name);
            flagged += scored.Result.IsAnomalous == true ? 1 : 0;
        }

        Assert.True(flagged >= models.Images.Count(i => plain.Score(i.Bytes).IsAnomalous == true));
        await host.StopAsync();
    }

    [Fact]
    public async Task A_sensitivity_for_an_uncalibrated_export_fails_the_start_naming_the_file()
    {
        using var host = ScorerHost.BuildOnnx(o => { o.ModelPath = models.OnnxUncalibrated; o.Sensitivity = 0.7; });
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => host.StartAsync());
        Assert.Contains("exported uncalibrated", ex.Message);
        Assert.Contains(models.OnnxUncalibrated, ex.Message);
        Assert.Throws<ArgumentException>(() => new OnnxScorerOptions { Sensitivity = 1.5 }.Validate());
    }

    [Fact]
    public async Task Bad_onnx_options_fail_the_start_each_named()
    {
        using var host = FromConfiguration(new()
        {
            ["UniAD:ModelPath"] = models.ModelA, // a checkpoint, not an export
            ["UniAD:Device"] = "cuda",
            ["UniAD:MaxBatchSize"] = "0",
            ["UniAD:Onnx:IntraOpThreads"] = "-2",
            ["UniAD:Onnx:DeviceId"] = "-1",
            ["UniAD:Onnx:TileBatchSize"] = "0",
        });
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        var all = string.Join('\n', ex.Failures);
        if (ex.OptionsType == typeof(AnomalyDetectorServiceOptions))
        {
            Assert.Contains($"UniAD:ModelPath: '{models.ModelA}' is not an .onnx file", all);
            Assert.Contains("UniAD:Device applies to TorchSharp detectors only", all);
            Assert.Contains("UniAD:Onnx:ExecutionProvider", all);
            Assert.Contains("UniAD:MaxBatchSize must lie in 1..256; got 0", all);
            Assert.Equal(3, ex.Failures.Count());
        }
        else
        {
            Assert.Fail("the service options are validated first: " + all);
        }

        using var onnxOnly = FromConfiguration(new()
        {
            ["UniAD:ModelPath"] = models.OnnxA,
            ["UniAD:Onnx:IntraOpThreads"] = "-2",
            ["UniAD:Onnx:DeviceId"] = "-1",
            ["UniAD:Onnx:TileBatchSize"] = "0",
        });
        var onnx = await Assert.ThrowsAsync<OptionsValidationException>(() => onnxOnly.StartAsync());
        Assert.Equal(typeof(OnnxScorerServiceOptions), onnx.OptionsType);
        Assert.Contains("UniAD:Onnx:IntraOpThreads must be at least 0 (0 lets ONNX Runtime choose); got -2", onnx.Message);
        Assert.Contains("UniAD:Onnx:DeviceId must be at least 0; got -1", onnx.Message);
        Assert.Contains("UniAD:Onnx:TileBatchSize must be at least 1; got 0", onnx.Message);
        Assert.False(onnxOnly.Services.GetRequiredService<AnomalyDetectorProvider>().IsLoaded);
    }

    [Fact]
    public async Task An_unknown_execution_provider_or_runtime_is_refused_naming_the_key()
    {
        using var host = FromConfiguration(new() { ["UniAD:ModelPath"] = models.OnnxA, ["UniAD:Onnx:ExecutionProvider"] = "Quantum" });
        var ex = await Assert.ThrowsAnyAsync<InvalidOperationException>(() => host.StartAsync());
        Assert.Contains("UniAD:Onnx:ExecutionProvider", ex.Message + ex.InnerException?.Message);

        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["UniAD:Runtime"] = "tensorflow", ["UniAD:ModelPath"] = models.OnnxA }).Build();
        var runtime = Assert.Throws<InvalidOperationException>(() => ScoringEndpoints.Runtime(config));
        Assert.Contains("UniAD:Runtime must be 'torch'", runtime.Message);
        Assert.Contains("'tensorflow'", runtime.Message);
        Assert.Equal("onnx", ScoringEndpoints.Runtime(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["UniAD:ModelPath"] = "m.ONNX" }).Build()));
        Assert.Equal("torch", ScoringEndpoints.Runtime(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["UniAD:ModelPath"] = "m.safetensors" }).Build()));
        Assert.Equal("onnx", ScoringEndpoints.Runtime(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["UniAD:ModelPath"] = "m.bin", ["UniAD:Runtime"] = "ONNX" }).Build()));
    }

    [Fact]
    public void One_service_hosts_one_runtime()
    {
        var services = new ServiceCollection();
        services.AddAnomalyDetector(o => o.ModelPath = models.ModelA);
        var ex = Assert.Throws<InvalidOperationException>(() => services.AddOnnxAnomalyScorer(o => o.ModelPath = models.OnnxA));
        Assert.Contains("AddOnnxAnomalyScorer was called after AddAnomalyDetector", ex.Message);
        var onnx = new ServiceCollection().AddOnnxAnomalyScorer(o => o.ModelPath = models.OnnxA);
        Assert.Throws<InvalidOperationException>(() => onnx.AddAnomalyDetector(o => o.ModelPath = models.ModelA));
    }

    [Fact]
    public async Task The_onnx_thread_options_reach_the_session()
    {
        using var host = await StartOnnxAsync(o => o.ModelPath = models.OnnxA, onnx => { onnx.IntraOpThreads = 1; onnx.AllowSpinning = false; });
        using var lease = host.Services.GetRequiredService<AnomalyDetectorProvider>().Acquire();
        var scorer = Assert.IsType<OnnxAnomalyScorer>(lease.Scorer);
        Assert.Equal(1, scorer.Options.IntraOpThreads);
        Assert.False(scorer.Options.AllowSpinning);
        Assert.Equal(OnnxExecutionProvider.Cpu, scorer.ExecutionProvider);
        await host.StopAsync();
    }

    private static bool Throws<T>(Action action)
        where T : Exception
    {
        try
        {
            action();
            return false;
        }
        catch (T)
        {
            return true;
        }
    }

    private static async Task<IHost> StartOnnxAsync(Action<AnomalyDetectorServiceOptions> configure, Action<OnnxScorerServiceOptions>? configureOnnx = null)
    {
        var host = ScorerHost.BuildOnnx(configure, configureOnnx);
        await host.StartAsync();
        return host;
    }
}
