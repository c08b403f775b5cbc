using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Options;
using SkiaSharp;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.ScoringService;

namespace UniAD.Hosting.Tests.ScoringService;

/// <summary>The sample's endpoints over real HTTP on loopback (Kestrel at 127.0.0.1, a free port), with a tiny saved model.</summary>
[Collection(ModelsCollection.Name)]
public sealed class ScoringEndpointsTests(TestModels models) : IAsyncLifetime
{
    public const int MaxImageBytes = 100_000;
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private ServiceHost host = null!;

    public async Task InitializeAsync() => host = await ServiceHost.StartAsync(ServiceHost.Settings(models.ModelA, ("MaxImageBytes", MaxImageBytes.ToString(System.Globalization.CultureInfo.InvariantCulture))));

    public async Task DisposeAsync() => await host.DisposeAsync();

    public static ByteArrayContent Raw(byte[] bytes, string contentType = "image/png")
    {
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
        return content;
    }

    public static string ScoreUri(string name, string query = "") => $"/score?name={Uri.EscapeDataString(name)}{query}";

    [Fact]
    public async Task The_json_verdict_equals_the_detectors_score_on_the_same_bytes()
    {
        using var reference = AnomalyDetector.Load(models.ModelA);
        Assert.True(models.Images.Count >= 8);
        foreach (var (name, bytes) in models.Images)
        {
            using var response = await host.Client.PostAsync(ScoreUri(name), Raw(bytes));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("application/json", response.Content.Headers.ContentType!.MediaType);
            var verdict = (await response.Content.ReadFromJsonAsync<ScoreResponse>(Json))!;
            var expected = reference.Score(bytes, name);
            Assert.Equal(name, verdict.Source);
            Assert.True(Math.Abs(expected.Score - verdict.Score) <= 1e-6 * Math.Max(1, Math.Abs(expected.Score)), $"{name}: {verdict.Score} over HTTP, {expected.Score} in process");
            Assert.Equal(expected.NormalizedScore!.Value, verdict.Normalized!.Value, 1e-6);
            Assert.True(expected.IsAnomalous == verdict.Anomalous || NearThreshold(expected.Score, reference.Calibration!.EffectiveImageThreshold), $"{name}: verdict {verdict.Anomalous} over HTTP, {expected.IsAnomalous} in process");
            Assert.Equal((64, 64), (verdict.Width, verdict.Height));
            Assert.Equal(expected.Map.Max, verdict.MapMax, 1e-5 * Math.Max(1, Math.Abs(expected.Map.Max)));
            Assert.Equal(expected.Mask!.Count(m => m != 0), verdict.AnomalousPixels);
            Assert.Equal((1, models.ModelA), (verdict.ModelGeneration, verdict.Model));
        }

        // Both verdicts occur: the calibrated tiny model flags some test images and passes others.
        var all = await Task.WhenAll(models.Images.Select(async i => (await (await host.Client.PostAsync(ScoreUri(i.Name), Raw(i.Bytes))).Content.ReadFromJsonAsync<ScoreResponse>(Json))!.Anomalous));
        Assert.Contains(true, all);
        Assert.Contains(false, all);
    }

    [Fact]
    public async Task A_multipart_file_gets_the_same_verdict()
    {
        var (name, bytes) = models.Images[3];
        using var form = new MultipartFormDataContent { { Raw(bytes), "image", name } };
        using var response = await host.Client.PostAsync("/score", form);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var verdict = (await response.Content.ReadFromJsonAsync<ScoreResponse>(Json))!;
        using var reference = AnomalyDetector.Load(models.ModelA);
        Assert.Equal(name, verdict.Source);
        Assert.Equal(reference.Score(bytes).Score, verdict.Score, 1e-6 * Math.Max(1, Math.Abs(verdict.Score)));

        using var octets = await host.Client.PostAsync(ScoreUri(name), Raw(bytes, "application/octet-stream"));
        Assert.Equal(verdict.Score, (await octets.Content.ReadFromJsonAsync<ScoreResponse>(Json))!.Score);
        using var unnamed = await host.Client.PostAsync("/score", Raw(bytes));
        Assert.Equal("body", (await unnamed.Content.ReadFromJsonAsync<ScoreResponse>(Json))!.Source);
        using var noFile = await host.Client.PostAsync("/score", new MultipartFormDataContent { { new StringContent("x"), "text" } });
        Assert.Equal(HttpStatusCode.BadRequest, noFile.StatusCode);
        Assert.Equal("no_image", (await ReadProblem(noFile)).GetProperty("error").GetString());
    }

    [Fact]
    public async Task The_heat_map_is_a_png_of_the_images_size()
    {
        var (name, bytes) = models.Images.Last();
        using var reference = AnomalyDetector.Load(models.ModelA);
        var image = ImageDecoder.Decode(bytes, name);
        using var expected = HeatmapRenderer.Overlay(image, reference.Score(image, name), reference.Calibration);

        using var byQuery = await host.Client.PostAsync(ScoreUri(name, "&heatmap=true"), Raw(bytes));
        using var request = new HttpRequestMessage(HttpMethod.Post, ScoreUri(name)) { Content = Raw(bytes) };
        request.Headers.Accept.ParseAdd("image/png");
        using var byAccept = await host.Client.SendAsync(request);
        foreach (var response in new[] { byQuery, byAccept })
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("image/png", response.Content.Headers.ContentType!.MediaType);
            var png = await response.Content.ReadAsByteArrayAsync();
            Assert.True(png.AsSpan(0, 8).SequenceEqual(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }));
            using var decoded = SKBitmap.Decode(png);
            Assert.Equal((image.Width, image.Height), (decoded.Width, decoded.Height));
            using var rgba = decoded.Copy(SKColorType.Rgba8888);
            var got = rgba.GetPixelSpan().ToArray();
            var want = expected.GetPixelSpan().ToArray();
            Assert.Equal(want.Length, got.Length);
            Assert.True(want.Zip(got).All(p => Math.Abs(p.First - p.Second) <= 1), "the PNG is the library's overlay");
            Assert.Equal(reference.Score(bytes).Score, double.Parse(response.Headers.GetValues("X-UniAD-Score").Single(), System.Globalization.CultureInfo.InvariantCulture), 1e-6 * Math.Max(1, Math.Abs(reference.Score(bytes).Score)));
        }

        using var json = await host.Client.PostAsync(ScoreUri(name, "&heatmap=false"), Raw(bytes));
        Assert.Equal("application/json", json.Content.Headers.ContentType!.MediaType);
    }

    [Fact]
    public async Task Bad_or_empty_images_are_400_naming_the_reason()
    {
        var png = models.Images[0].Bytes;
        var cases = new (string Name, byte[] Bytes, string Reason)[]
        {
            ("garbage.png", "definitely not a PNG"u8.ToArray(), "not a readable image"),
            ("empty.png", Array.Empty<byte>(), "empty"),
            ("truncated.png", png[..(png.Length / 3)], string.Empty),
        };
        foreach (var (name, bytes, reason) in cases)
        {
            using var response = await host.Client.PostAsync(ScoreUri(name), Raw(bytes));
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
            var problem = await ReadProblem(response);
            Assert.Equal(400, problem.GetProperty("status").GetInt32());
            Assert.Equal("bad_image", problem.GetProperty("error").GetString());
            Assert.Equal(name, problem.GetProperty("source").GetString());
            Assert.Contains(reason, problem.GetProperty("detail").GetString());
            Assert.False(string.IsNullOrWhiteSpace(problem.GetProperty("detail").GetString()));
        }

        // The service goes on scoring after bad requests.
        using var ok = await host.Client.PostAsync(ScoreUri("fine.png"), Raw(png));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task Oversized_images_are_413()
    {
        var big = new byte[MaxImageBytes + 1];
        using var withLength = await host.Client.PostAsync(ScoreUri("big.png"), Raw(big));
        await AssertTooLarge(withLength);

        using var chunkedRequest = new HttpRequestMessage(HttpMethod.Post, ScoreUri("big.png")) { Content = Raw(big) };
        chunkedRequest.Headers.TransferEncodingChunked = true; // no Content-Length: the limit is found while reading
        using var chunked = await host.Client.SendAsync(chunkedRequest);
        await AssertTooLarge(chunked);

        using var form = new MultipartFormDataContent { { Raw(big), "image", "big.png" } };
        using var multipart = await host.Client.PostAsync("/score", form);
        await AssertTooLarge(multipart);

        using var huge = await host.Client.PostAsync("/score", new MultipartFormDataContent { { Raw(new byte[4 * MaxImageBytes]), "image", "huge.png" } });
        await AssertTooLarge(huge); // beyond the request body limit: refused by Kestrel's limit

        using var exactly = await host.Client.PostAsync(ScoreUri("limit.png"), Raw(new byte[MaxImageBytes]));
        Assert.Equal(HttpStatusCode.BadRequest, exactly.StatusCode); // at the limit: read, and refused as no image

        static async Task AssertTooLarge(HttpResponseMessage response)
        {
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
            var problem = await ReadProblem(response);
            Assert.Equal("too_large", problem.GetProperty("error").GetString());
            Assert.Contains("UniAD:MaxImageBytes", problem.GetProperty("detail").GetString());
        }
    }

    [Fact]
    public async Task Other_content_types_are_415()
    {
        using var response = await host.Client.PostAsync("/score", new StringContent("hello"));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
        Assert.Equal("unsupported_media_type", (await ReadProblem(response)).GetProperty("error").GetString());
    }

    [Fact]
    public async Task Health_reports_the_model_and_turns_unhealthy_when_the_scorer_stops()
    {
        using (var healthy = await host.Client.GetAsync("/health"))
        {
            Assert.Equal(HttpStatusCode.OK, healthy.StatusCode);
            using var doc = JsonDocument.Parse(await healthy.Content.ReadAsStringAsync());
            Assert.Equal("Healthy", doc.RootElement.GetProperty("status").GetString());
            var data = doc.RootElement.GetProperty("checks").GetProperty("uniad").GetProperty("data");
            Assert.Equal(models.ModelA, data.GetProperty("modelPath").GetString());
            Assert.Equal(0, data.GetProperty("epochsTrained").GetInt32());
            Assert.True(data.GetProperty("calibrated").GetBoolean());
            Assert.True(data.GetProperty("scorerRunning").GetBoolean());
            Assert.Equal(1, data.GetProperty("generation").GetInt32());
        }

        await host.Scorer.StopAsync(CancellationToken.None);
        using (var unhealthy = await host.Client.GetAsync("/health"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, unhealthy.StatusCode);
            using var doc = JsonDocument.Parse(await unhealthy.Content.ReadAsStringAsync());
            Assert.Equal("Unhealthy", doc.RootElement.GetProperty("status").GetString());
            var check = doc.RootElement.GetProperty("checks").GetProperty("uniad");
            Assert.Contains("scorer is not running", check.GetProperty("description").GetString());
            Assert.False(check.GetProperty("data").GetProperty("scorerRunning").GetBoolean());
        }

        using var refused = await host.Client.PostAsync("/score", Raw(models.Images[0].Bytes));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.Equal("unavailable", (await ReadProblem(refused)).GetProperty("error").GetString());
    }

    [Fact]
    public async Task Metrics_count_the_requests()
    {
        Assert.Same(host.MeterFactory, host.Metrics.Meter.Scope); // the host's meter factory made the meter
        using var metrics = new MetricsRecorder(host.Metrics.Meter);
        var good = models.Images.Take(6).ToList();
        var verdicts = new List<ScoreResponse>();
        foreach (var (name, bytes) in good)
        {
            using var response = await host.Client.PostAsync(ScoreUri(name), Raw(bytes));
            verdicts.Add((await response.Content.ReadFromJsonAsync<ScoreResponse>(Json))!);
        }

        for (int i = 0; i < 2; i++)
        {
            using var bad = await host.Client.PostAsync(ScoreUri($"bad{i}.png"), Raw(new byte[] { 1, 2, 3 }));
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        }

        Assert.Equal(6, metrics.Sum(AnomalyScoringMetrics.ImagesScoredName));
        Assert.Equal(verdicts.Count(v => v.Anomalous == true), metrics.Sum(AnomalyScoringMetrics.AnomaliesName));
        Assert.Equal(2, metrics.Sum(AnomalyScoringMetrics.FailuresName));
        var latency = metrics.WithTags(AnomalyScoringMetrics.LatencyName);
        Assert.Equal(8, latency.Count);
        Assert.Equal(6, latency.Count(m => m.Tags.Contains(new KeyValuePair<string, object?>("outcome", "success"))));
        Assert.All(latency, m => Assert.True(m.Value > 0 && m.Value < 60_000));
        Assert.Equal(6, metrics.Sum(AnomalyScoringMetrics.BatchSizeName)); // one at a time: six passes of one image
        metrics.Observe();
        Assert.Equal(0, Assert.Single(metrics.Values(AnomalyScoringMetrics.QueueLengthName)));
    }

    [Fact]
    public async Task Concurrent_requests_are_scored_in_batches()
    {
        using var metrics = new MetricsRecorder(host.Metrics.Meter);
        var images = models.Images.Take(8).ToList();
        Task<HttpResponseMessage>[] responses;
        Task<AnomalyResult> blocked;
        using (new ModelBlock(host.Provider))
        {
            blocked = host.Scorer.ScoreAsync(images[0].Bytes, "blocked"); // queued in process: taken, then waits for the model
            await Wait.Until(() => host.Scorer.QueueLength == 0, "the first request to be taken");
            await Task.Delay(100); // past its batch delay (5 ms): its batch is closed
            responses = images.Select(i => host.Client.PostAsync(ScoreUri(i.Name), Raw(i.Bytes))).ToArray();
            await Wait.Until(() => host.Scorer.QueueLength == 8, "eight HTTP requests to queue up behind it");
        }

        Assert.Equal("blocked", (await blocked).Source);
        using var reference = AnomalyDetector.Load(models.ModelA);
        for (int i = 0; i < images.Count; i++)
        {
            using var response = await responses[i];
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var verdict = (await response.Content.ReadFromJsonAsync<ScoreResponse>(Json))!;
            Assert.Equal(images[i].Name, verdict.Source);
            Assert.Equal(reference.Score(images[i].Bytes).Score, verdict.Score, 1e-5 * Math.Max(1, Math.Abs(verdict.Score))); // batched = alone, to float precision
        }

        Assert.Equal(new[] { 1.0, 8.0 }, metrics.Values(AnomalyScoringMetrics.BatchSizeName)); // the eight went through in one forward pass
    }

    [Fact]
    public async Task A_full_queue_is_503_with_retry_after()
    {
        await using var small = await ServiceHost.StartAsync(ServiceHost.Settings(models.ModelA, ("QueueCapacity", "1"), ("MaxBatchSize", "1"), ("MaxBatchDelay", "00:00:00")));
        var bytes = models.Images[0].Bytes;
        Task<AnomalyResult> first;
        Task<HttpResponseMessage> second;
        using (new ModelBlock(small.Provider))
        {
            first = small.Scorer.ScoreAsync(bytes); // in process: taken by the loop, then blocked in its forward pass
            await Wait.Until(() => small.Scorer.QueueLength == 0, "the first request to be taken");
            second = small.Client.PostAsync("/score", Raw(bytes));
            await Wait.Until(() => small.Scorer.QueueLength == 1, "the second request to queue");
            using var refused = await small.Client.PostAsync("/score", Raw(bytes));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.Equal("1", refused.Headers.GetValues("Retry-After").Single());
            var problem = await ReadProblem(refused);
            Assert.Equal("queue_full", problem.GetProperty("error").GetString());
            Assert.Contains("QueueCapacity", problem.GetProperty("detail").GetString());
        }

        _ = await first;
        Assert.Equal(HttpStatusCode.OK, (await second).StatusCode);
    }

    [Fact]
    public async Task The_service_does_not_start_without_a_model()
    {
        await using var app = ServiceHost.Build(new Dictionary<string, string?> { ["UniAD:MaxBatchSize"] = "4" });
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync());
        Assert.Contains("UniAD:ModelPath is required", ex.Message);

        await using var wrong = ServiceHost.Build(ServiceHost.Settings(Path.Combine(models.Root, "missing.safetensors")));
        Assert.Contains("does not exist", (await Assert.ThrowsAsync<OptionsValidationException>(() => wrong.StartAsync())).Message);
    }

    public static async Task<JsonElement> ReadProblem(HttpResponseMessage response)
    {
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return doc.RootElement.Clone();
    }

    /// <summary>A score within float32 rounding of the threshold: either verdict is right there (float order decides).</summary>
    private static bool NearThreshold(double score, double threshold) => Math.Abs(score - threshold) <= 1e-5 * Math.Max(1, Math.Abs(threshold));
}
