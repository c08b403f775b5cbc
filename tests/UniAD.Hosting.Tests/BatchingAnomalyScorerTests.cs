using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using UniAD.Core.Data;
using UniAD.Core.Detection;

namespace UniAD.Hosting.Tests;

/// <summary>The batching scorer without HTTP: batches, per-request outcomes, cancellation, the bounded queue, shutdown.</summary>
[Collection(ModelsCollection.Name)]
public sealed class BatchingAnomalyScorerTests(TestModels models)
{
    private static readonly byte[] Garbage = "not an image at all"u8.ToArray();

    [Fact]
    public async Task Requests_queued_together_are_one_batch_and_each_gets_its_own_outcome()
    {
        using var host = await ScorerHost.StartAsync(o => (o.ModelPath, o.MaxBatchSize, o.MaxBatchDelay) = (models.ModelA, 8, TimeSpan.Zero));
        var scorer = host.Services.GetRequiredService<IAnomalyScorer>();
        var batching = host.Services.GetRequiredService<BatchingAnomalyScorer>();
        using var metrics = new MetricsRecorder(host.Services.GetRequiredService<AnomalyScoringMetrics>().Meter);
        using var reference = AnomalyDetector.Load(models.ModelA);
        var images = models.Images.Take(5).ToList();

        Task<AnomalyResult> first;
        var tasks = new List<Task<AnomalyResult>>();
        Task<AnomalyResult> bad, empty;
        using (new ModelBlock(host.Services.GetRequiredService<AnomalyDetectorProvider>()))
        {
            first = scorer.ScoreAsync(images[0].Bytes, images[0].Name);
            await Wait.Until(() => batching.QueueLength == 0, "the first request to be taken");
            tasks.AddRange(images.Skip(1).Select(i => scorer.ScoreAsync(i.Bytes, i.Name)));
            bad = scorer.ScoreAsync(Garbage, "garbage.png");
            empty = scorer.ScoreAsync(ReadOnlyMemory<byte>.Empty, "empty.png");
            tasks.Add(scorer.ScoreAsync(images[0].Bytes.AsMemory(), "again"));
            await Wait.Until(() => batching.QueueLength == 7, "seven queued requests");
            metrics.Observe();
            Assert.Contains(7.0, metrics.Values(AnomalyScoringMetrics.QueueLengthName));
        }

        var results = await Task.WhenAll(tasks.Prepend(first));
        var expected = images.Select(i => reference.Score(i.Bytes, i.Name)).Append(reference.Score(images[0].Bytes, "again")).ToList();
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Source, results[i].Source);
            Assert.Equal(expected[i].Score, results[i].Score, 1e-5 * Math.Max(1, Math.Abs(expected[i].Score)));
            // The tiny model is calibrated on these images, so a threshold equals one image's score: there either verdict is
            // right (batches of 1, 5 and 8 round float32 sums differently on some CPUs); everywhere else they must agree.
            Assert.True(expected[i].IsAnomalous == results[i].IsAnomalous || Math.Abs(expected[i].Score - reference.Calibration!.EffectiveImageThreshold) <= 1e-5 * Math.Max(1, Math.Abs(expected[i].Score)),
                $"{expected[i].Source}: verdict {results[i].IsAnomalous} batched, {expected[i].IsAnomalous} alone (score {expected[i].Score:G9})");
        }

        var badError = await Assert.ThrowsAsync<ImageFileException>(() => bad);
        Assert.Contains("garbage.png", badError.Message);
        Assert.Contains("empty", (await Assert.ThrowsAsync<ImageFileException>(() => empty)).Reason);
        Assert.Equal(new[] { 1.0, 5.0 }, metrics.Values(AnomalyScoringMetrics.BatchSizeName)); // the blocked one, then the five decodable ones together
        Assert.Equal(6, metrics.Sum(AnomalyScoringMetrics.ImagesScoredName));
        Assert.Equal(2, metrics.Sum(AnomalyScoringMetrics.FailuresName));
        Assert.All(metrics.WithTags(AnomalyScoringMetrics.FailuresName), m => Assert.Contains(new KeyValuePair<string, object?>("reason", "bad_image"), m.Tags));
        Assert.Equal(8, metrics.Values(AnomalyScoringMetrics.LatencyName).Count);
        await host.StopAsync();
    }

    [Fact]
    public async Task A_cancelled_request_does_not_cancel_the_others()
    {
        using var host = await ScorerHost.StartAsync(o => (o.ModelPath, o.MaxBatchDelay) = (models.ModelA, TimeSpan.Zero));
        var scorer = host.Services.GetRequiredService<IAnomalyScorer>();
        var batching = host.Services.GetRequiredService<BatchingAnomalyScorer>();
        var (name, bytes) = models.Images[2];
        using var firstCancel = new CancellationTokenSource();
        using var queuedCancel = new CancellationTokenSource();
        Task<AnomalyResult> first, queued, other;
        using (new ModelBlock(host.Services.GetRequiredService<AnomalyDetectorProvider>()))
        {
            first = scorer.ScoreAsync(bytes, "in-flight", firstCancel.Token);
            await Wait.Until(() => batching.QueueLength == 0, "the first request to be taken");
            queued = scorer.ScoreAsync(bytes, "queued", queuedCancel.Token);
            other = scorer.ScoreAsync(bytes, name);
            await firstCancel.CancelAsync();  // its forward pass is under way: it just stops waiting
            await queuedCancel.CancelAsync(); // still queued: dropped from the next batch
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => first.WaitAsync(TimeSpan.FromSeconds(10)));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queued.WaitAsync(TimeSpan.FromSeconds(10)));
        }

        Assert.Equal(name, (await other).Source);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => scorer.ScoreAsync(bytes, null, firstCancel.Token));
        await host.StopAsync();
    }

    [Fact]
    public async Task A_full_queue_refuses_at_once()
    {
        using var host = await ScorerHost.StartAsync(o => (o.ModelPath, o.MaxBatchSize, o.QueueCapacity) = (models.ModelA, 1, 2));
        var scorer = host.Services.GetRequiredService<IAnomalyScorer>();
        var batching = host.Services.GetRequiredService<BatchingAnomalyScorer>();
        using var metrics = new MetricsRecorder(host.Services.GetRequiredService<AnomalyScoringMetrics>().Meter);
        var bytes = models.Images[0].Bytes;
        var accepted = new List<Task<AnomalyResult>>();
        using (new ModelBlock(host.Services.GetRequiredService<AnomalyDetectorProvider>()))
        {
            accepted.Add(scorer.ScoreAsync(bytes));
            await Wait.Until(() => batching.QueueLength == 0, "the first request to be taken");
            accepted.Add(scorer.ScoreAsync(bytes));
            accepted.Add(scorer.ScoreAsync(bytes));
            var refused = scorer.ScoreAsync(bytes);
            Assert.True(refused.IsFaulted); // at once, not after a wait
            var ex = await Assert.ThrowsAsync<ScoringQueueFullException>(() => refused);
            Assert.Equal(2, ex.Capacity);
            Assert.Contains("QueueCapacity", ex.Message);
        }

        await Task.WhenAll(accepted);
        Assert.Equal(3, metrics.Sum(AnomalyScoringMetrics.ImagesScoredName));
        Assert.Equal(new KeyValuePair<string, object?>("reason", "queue_full"), Assert.Single(metrics.WithTags(AnomalyScoringMetrics.FailuresName)).Tags.Single());
        await host.StopAsync();
    }

    [Fact]
    public async Task Too_many_bytes_fail_before_queueing()
    {
        using var host = await ScorerHost.StartAsync(o => (o.ModelPath, o.MaxImageBytes) = (models.ModelA, 1000));
        var scorer = host.Services.GetRequiredService<IAnomalyScorer>();
        var ex = await Assert.ThrowsAsync<ImageTooLargeException>(() => scorer.ScoreAsync(new byte[1001], "big.png"));
        Assert.Equal((1001L, 1000L, "big.png"), (ex.Length, ex.Limit, ex.Name));
        await host.StopAsync();
    }

    [Fact]
    public async Task Stop_scores_what_is_queued_and_refuses_new_requests()
    {
        using var host = await ScorerHost.StartAsync(o => (o.ModelPath, o.MaxBatchSize) = (models.ModelA, 1));
        var scorer = host.Services.GetRequiredService<IAnomalyScorer>();
        var batching = host.Services.GetRequiredService<BatchingAnomalyScorer>();
        var bytes = models.Images[0].Bytes;
        Task<AnomalyResult>[] pending;
        Task stopping;
        using (new ModelBlock(host.Services.GetRequiredService<AnomalyDetectorProvider>()))
        {
            pending = Enumerable.Range(0, 3).Select(i => scorer.ScoreAsync(bytes, $"p{i}")).ToArray();
            await Wait.Until(() => batching.QueueLength == 2, "two queued requests");
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            stopping = batching.StopAsync(timeout.Token);
            await Assert.ThrowsAsync<ScorerUnavailableException>(() => scorer.ScoreAsync(bytes));
            Assert.False(stopping.IsCompleted);
        }

        await stopping.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(new[] { "p0", "p1", "p2" }, (await Task.WhenAll(pending)).Select(r => r.Source));
        Assert.False(batching.IsRunning);
        await host.StopAsync();
    }

    [Fact]
    public async Task Stop_fails_what_is_left_at_the_shutdown_timeout()
    {
        using var host = await ScorerHost.StartAsync(o => (o.ModelPath, o.MaxBatchSize) = (models.ModelA, 1));
        var scorer = host.Services.GetRequiredService<IAnomalyScorer>();
        var batching = host.Services.GetRequiredService<BatchingAnomalyScorer>();
        var bytes = models.Images[0].Bytes;
        Task<AnomalyResult>[] pending;
        using (new ModelBlock(host.Services.GetRequiredService<AnomalyDetectorProvider>()))
        {
            pending = Enumerable.Range(0, 3).Select(i => scorer.ScoreAsync(bytes, $"p{i}")).ToArray();
            await Wait.Until(() => batching.QueueLength == 2, "two queued requests");
            using var timeout = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
            await batching.StopAsync(timeout.Token); // returns at the timeout, the forward pass still blocked
        }

        Assert.Equal("p0", (await pending[0].WaitAsync(TimeSpan.FromSeconds(30))).Source); // the batch under way completes
        foreach (var task in pending.Skip(1))
        {
            await Assert.ThrowsAsync<ScorerUnavailableException>(() => task.WaitAsync(TimeSpan.FromSeconds(30)));
        }

        await Wait.Until(() => !batching.IsRunning, "the loop to end");
        await host.StopAsync();
    }
}
