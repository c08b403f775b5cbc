using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace UniAD.Hosting.Tests;

/// <summary>Options are bound from configuration and validated when the host starts, naming each bad key.</summary>
[Collection(ModelsCollection.Name)]
public sealed class AnomalyDetectorServiceOptionsTests(TestModels models)
{
    private static IHost FromConfiguration(Dictionary<string, string?> settings)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddAnomalyDetector(builder.Configuration.GetSection(AnomalyDetectorServiceOptions.SectionName));
        return builder.Build();
    }

    [Fact]
    public async Task A_missing_model_path_fails_the_start_naming_the_key()
    {
        using var host = FromConfiguration(new() { ["UniAD:MaxBatchSize"] = "4" });
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        Assert.Contains("UniAD:ModelPath is required", ex.Message);
        Assert.False(host.Services.GetRequiredService<AnomalyDetectorProvider>().IsLoaded);
    }

    [Fact]
    public async Task A_model_file_that_does_not_exist_fails_the_start()
    {
        var missing = Path.Combine(models.Root, "nowhere", "model.safetensors");
        using var host = FromConfiguration(new() { ["UniAD:ModelPath"] = missing });
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        Assert.Contains("UniAD:ModelPath", ex.Message);
        Assert.Contains(missing, ex.Message);
    }

    [Fact]
    public async Task Bad_numbers_fail_the_start_each_named()
    {
        using var host = FromConfiguration(new()
        {
            ["UniAD:ModelPath"] = models.ModelA,
            ["UniAD:Device"] = "gpu",
            ["UniAD:MaxBatchSize"] = "0",
            ["UniAD:MaxBatchDelay"] = "00:00:05",
            ["UniAD:QueueCapacity"] = "-1",
            ["UniAD:MaxImageBytes"] = "0",
            ["UniAD:Sensitivity"] = "1.5",
            ["UniAD:MaxDecodedBytes"] = "1000",
        });
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        foreach (var key in new[] { "Device", "MaxBatchSize", "MaxBatchDelay", "QueueCapacity", "MaxImageBytes", "Sensitivity", "MaxDecodedBytes" })
        {
            Assert.Contains($"UniAD:{key}", ex.Message);
        }

        Assert.Equal(7, ex.Failures.Count());
        Assert.DoesNotContain("ModelPath", ex.Message);
    }

    [Fact]
    public void Configuration_binds_every_key()
    {
        using var host = FromConfiguration(new()
        {
            ["UniAD:ModelPath"] = models.ModelA,
            ["UniAD:Device"] = "cuda:1",
            ["UniAD:MaxBatchSize"] = "16",
            ["UniAD:MaxBatchDelay"] = "00:00:00.020",
            ["UniAD:QueueCapacity"] = "9",
            ["UniAD:MaxImageBytes"] = "12345",
            ["UniAD:Sensitivity"] = "0.7",
        });
        var o = host.Services.GetRequiredService<IOptions<AnomalyDetectorServiceOptions>>().Value;
        Assert.Equal((models.ModelA, "cuda:1", 16, TimeSpan.FromMilliseconds(20), 9, 12345L, 0.7), (o.ModelPath, o.Device, o.MaxBatchSize, o.MaxBatchDelay, o.QueueCapacity, o.MaxImageBytes, o.Sensitivity));
        var defaults = new AnomalyDetectorServiceOptions();
        Assert.Equal(("cpu", 8, TimeSpan.FromMilliseconds(5), 256, 16L << 20, (double?)null), (defaults.Device, defaults.MaxBatchSize, defaults.MaxBatchDelay, defaults.QueueCapacity, defaults.MaxImageBytes, defaults.Sensitivity));
    }

    [Fact]
    public async Task Options_set_in_code_are_validated_too()
    {
        using var host = ScorerHost.Build(o => o.MaxBatchSize = 1000);
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        Assert.Contains("AnomalyDetectorServiceOptions.ModelPath is required", ex.Message);
        Assert.Contains("AnomalyDetectorServiceOptions.MaxBatchSize must lie in 1..256; got 1000", ex.Message);
    }
}
