using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using UniAD.Core.Detection;
using UniAD.ScoringService;

namespace UniAD.Hosting.Tests.ScoringService;

/// <summary>Train one instance, hot-swap the scorer: requests keep succeeding over HTTP while the provider swaps models.</summary>
[Collection(ModelsCollection.Name)]
public sealed class HotSwapTests(TestModels models)
{
    private static bool IsDisposed(AnomalyDetector detector)
    {
        try
        {
            detector.UseModel(_ => 0);
            return false;
        }
        catch (ObjectDisposedException)
        {
            return true;
        }
    }

    [Fact]
    public async Task Requests_keep_succeeding_while_models_are_swapped_and_old_ones_are_disposed_after()
    {
        await using var host = await ServiceHost.StartAsync(ServiceHost.Settings(models.ModelA));
        var (name, bytes) = models.Images[4];
        double scoreA, scoreB;
        using (var a = AnomalyDetector.Load(models.ModelA))
        using (var b = AnomalyDetector.Load(models.ModelB))
        {
            (scoreA, scoreB) = (a.Score(bytes).Score, b.Score(bytes).Score);
        }

        Assert.True(Math.Abs(scoreA - scoreB) > 1e-3, "the two models must score differently to tell them apart");
        var json = new JsonSerializerOptions(JsonSerializerDefaults.Web);
        var seen = new ConcurrentQueue<(HttpStatusCode Status, ScoreResponse? Verdict)>();
        using var stop = new CancellationTokenSource();
        var clients = Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                using var response = await host.Client.PostAsync(ScoringEndpointsTests.ScoreUri(name), ScoringEndpointsTests.Raw(bytes));
                seen.Enqueue((response.StatusCode, response.IsSuccessStatusCode ? await response.Content.ReadFromJsonAsync<ScoreResponse>(json) : null));
            }
        })).ToList();

        await Wait.Until(() => seen.Count >= 20, "requests on the first model");
        var retired = new List<AnomalyDetector>();
        var disposals = new List<Task>();
        for (int i = 0; i < 4; i++)
        {
            using (var lease = host.Provider.Acquire())
            {
                retired.Add(lease.Detector);
            }

            if (i % 2 == 0)
            {
                var info = await host.Provider.ReloadAsync(models.ModelB); // from a file
                Assert.Equal(i + 2, info.Generation);
            }
            else
            {
                disposals.Add(host.Provider.Swap(AnomalyDetector.Load(models.ModelA), "retrained A")); // "trained" elsewhere, swapped in
            }

            int before = seen.Count;
            await Wait.Until(() => seen.Count >= before + 15, $"requests after swap {i + 1}");
        }

        await stop.CancelAsync();
        await Task.WhenAll(clients);
        await Task.WhenAll(disposals).WaitAsync(TimeSpan.FromSeconds(20));
        await Wait.Until(() => retired.All(IsDisposed), "every swapped-out detector to be disposed");

        var all = seen.ToList();
        Assert.All(all, r => Assert.Equal(HttpStatusCode.OK, r.Status));
        Assert.Equal(new[] { 1, 2, 3, 4, 5 }, all.Select(r => r.Verdict!.ModelGeneration).Distinct().Order());
        foreach (var (_, verdict) in all)
        {
            double expected = verdict!.ModelGeneration % 2 == 1 ? scoreA : scoreB; // generations 1, 3, 5: A; 2, 4: B
            Assert.True(Math.Abs(expected - verdict.Score) < 1e-5 * Math.Max(1, Math.Abs(expected)), $"generation {verdict.ModelGeneration} scored {verdict.Score}, expected {expected}");
        }

        Assert.False(IsDisposed(host.Provider.Acquire().Detector));
    }
}
