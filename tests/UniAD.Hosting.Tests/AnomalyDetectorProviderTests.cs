using Microsoft.Extensions.Options;
using UniAD.Core.Detection;

namespace UniAD.Hosting.Tests;

/// <summary>The provider: loading at start, leases, hot swaps that dispose the old detector only after its last call.</summary>
[Collection(ModelsCollection.Name)]
public sealed class AnomalyDetectorProviderTests(TestModels models)
{
    private static AnomalyDetectorProvider Create(string modelPath, double? sensitivity = null) =>
        new(Options.Create(new AnomalyDetectorServiceOptions { ModelPath = modelPath, Sensitivity = sensitivity }));

    [Fact]
    public async Task Start_loads_the_configured_model_and_nothing_is_lent_before()
    {
        using var provider = Create(models.ModelA);
        Assert.False(provider.IsLoaded);
        Assert.Null(provider.Model);
        Assert.Throws<InvalidOperationException>(() => provider.Acquire());

        await provider.StartAsync(CancellationToken.None);
        Assert.True(provider.IsLoaded);
        Assert.Equal(models.ModelA, provider.Model!.Source);
        Assert.Equal(1, provider.Model.Generation);
        using var lease = provider.Acquire();
        Assert.NotNull(lease.Detector.Calibration);
        Assert.Same(provider.Model, lease.Model);
        using var reference = AnomalyDetector.Load(models.ModelA);
        var bytes = models.Images[0].Bytes;
        Assert.Equal(reference.Score(bytes).Score, lease.Detector.Score(bytes).Score);
    }

    [Fact]
    public async Task A_swapped_out_detector_is_disposed_only_after_its_last_lease()
    {
        using var provider = Create(models.ModelA);
        await provider.StartAsync(CancellationToken.None);
        var bytes = models.Images[0].Bytes;
        var inFlight = provider.Acquire();
        var old = inFlight.Detector;

        var replacement = AnomalyDetector.Load(models.ModelB);
        var oldDisposed = provider.Swap(replacement, "in memory");
        Assert.Equal(2, provider.Model!.Generation);
        Assert.Equal("in memory", provider.Model.Source);
        using (var lease = provider.Acquire())
        {
            Assert.Same(replacement, lease.Detector); // new callers get the new detector at once
        }

        Assert.False(oldDisposed.IsCompleted);
        _ = old.Score(bytes); // the in-flight call's detector still works
        inFlight.Dispose();
        await oldDisposed.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Throws<ObjectDisposedException>(() => old.Score(bytes));
        inFlight.Dispose(); // a second dispose does nothing (no double release)
        using var still = provider.Acquire();
        _ = still.Detector.Score(bytes);
        Assert.Throws<ArgumentException>(() => { _ = provider.Swap(replacement); });
    }

    [Fact]
    public async Task Reload_loads_another_file_with_the_configured_sensitivity()
    {
        using var provider = Create(models.ModelA, sensitivity: 0.8);
        await provider.StartAsync(CancellationToken.None);
        using (var lease = provider.Acquire())
        {
            Assert.Equal(0.8, lease.Detector.Calibration!.ImageSensitivity);
        }

        var info = await provider.ReloadAsync(models.ModelB);
        Assert.Equal(models.ModelB, info.Source);
        Assert.Equal(2, info.Generation);
        using (var lease = provider.Acquire())
        {
            Assert.Equal(0.8, lease.Detector.Calibration!.ImageSensitivity);
            using var reference = AnomalyDetector.Load(models.ModelB);
            reference.SetSensitivity(0.8);
            var bytes = models.Images[1].Bytes;
            Assert.Equal(reference.Score(bytes).IsAnomalous, lease.Detector.Score(bytes).IsAnomalous);
            Assert.Equal(reference.Score(bytes).Score, lease.Detector.Score(bytes).Score);
        }

        await Assert.ThrowsAsync<FileNotFoundException>(() => provider.ReloadAsync(Path.Combine(models.Root, "missing.safetensors")));
        Assert.Equal(2, provider.Model!.Generation); // a failed reload keeps the current detector
    }

    [Fact]
    public async Task A_sensitivity_on_an_uncalibrated_model_fails_the_start()
    {
        var path = Path.Combine(models.Root, "uncalibrated.safetensors");
        using (var detector = TestModels.TinyBuilder(3).Build())
        {
            detector.Save(path);
        }

        using var provider = Create(path, sensitivity: 0.6);
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => provider.StartAsync(CancellationToken.None));
        Assert.Contains("UniAD:Sensitivity", ex.Message);
        Assert.False(provider.IsLoaded);
    }

    [Fact]
    public async Task Dispose_retires_the_detector_after_its_leases()
    {
        var provider = Create(models.ModelA);
        await provider.StartAsync(CancellationToken.None);
        var lease = provider.Acquire();
        provider.Dispose();
        Assert.Throws<ObjectDisposedException>(() => provider.Acquire());
        using (var refused = AnomalyDetector.Load(models.ModelB))
        {
            Assert.Throws<ObjectDisposedException>(() => { _ = provider.Swap(refused); }); // not taken: still the caller's
        }

        var bytes = models.Images[0].Bytes;
        _ = lease.Detector.Score(bytes);
        lease.Dispose();
        Assert.Throws<ObjectDisposedException>(() => lease.Detector.Score(bytes));
        provider.Dispose();
    }

    [Fact]
    public async Task Leases_taken_during_swaps_never_see_a_disposed_detector()
    {
        using var provider = Create(models.ModelA);
        await provider.StartAsync(CancellationToken.None);
        var replacements = Enumerable.Range(0, 6).Select(i => AnomalyDetector.Load(i % 2 == 0 ? models.ModelB : models.ModelA)).ToList();
        using var stop = new CancellationTokenSource();
        long uses = 0;
        var readers = Enumerable.Range(0, 3).Select(_ => Task.Factory.StartNew(
            () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    using var lease = provider.Acquire();
                    lease.Detector.UseModel(_ => 0); // throws ObjectDisposedException on a disposed detector
                    Interlocked.Increment(ref uses);
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default)).ToList();

        var retired = new List<Task>();
        foreach (var detector in replacements)
        {
            await Task.Delay(20);
            retired.Add(provider.Swap(detector));
        }

        await Task.Delay(20);
        await stop.CancelAsync();
        await Task.WhenAll(readers);
        await Task.WhenAll(retired).WaitAsync(TimeSpan.FromSeconds(10)); // every old detector was disposed in the end
        Assert.True(Interlocked.Read(ref uses) > 10);
        Assert.Equal(7, provider.Model!.Generation);
    }
}
