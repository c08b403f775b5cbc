using System.Diagnostics;
using System.Globalization;
using System.Net;
using Xunit.Abstractions;

namespace UniAD.Hosting.Tests.ScoringService;

/// <summary>A bounded load test over loopback HTTP: 2,000 requests, 8 at a time; all succeed; memory stays flat.</summary>
[Collection(ModelsCollection.Name)]
public sealed class LoadTests(TestModels models, ITestOutputHelper output)
{
    public const int Requests = 2000;
    public const int Concurrency = 8;
    public const double WorkingSetBoundMb = 150;
    public const double ManagedHeapBoundMb = 32;

    [Fact]
    public Task Two_thousand_requests_eight_at_a_time_all_succeed_with_flat_memory() => LoadAsync(models.ModelA, "load");

    /// <summary>The same load on the exported model, scored on ONNX Runtime (the service's ONNX runtime).</summary>
    [Fact]
    public Task Two_thousand_requests_on_the_onnx_model_all_succeed_with_flat_memory() => LoadAsync(models.OnnxA, "onnx load");

    private async Task LoadAsync(string model, string label)
    {
        await using var host = await ServiceHost.StartAsync(ServiceHost.Settings(model));
        await RunAsync(host, 500); // warm-up: JIT, connection pool, the C allocator's arenas (the working set grows during the first ~1,000 requests, then stays flat)
        var (workingSetBefore, heapBefore) = Memory();

        var clock = Stopwatch.StartNew();
        var latencies = await RunAsync(host, Requests);
        clock.Stop();
        var (workingSetAfter, heapAfter) = Memory();

        Array.Sort(latencies);
        double throughput = Requests / clock.Elapsed.TotalSeconds;
        double p50 = Percentile(latencies, 0.50), p99 = Percentile(latencies, 0.99);
        string load = File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";
        string line = string.Create(CultureInfo.InvariantCulture, $"{label}: {Requests} requests, {Concurrency} concurrent, {throughput:F0} req/s, p50 {p50:F1} ms, p99 {p99:F1} ms, working set {workingSetBefore:F0} -> {workingSetAfter:F0} MB, managed heap {heapBefore:F1} -> {heapAfter:F1} MB, {clock.Elapsed.TotalSeconds:F1} s, load average {load}");
        output.WriteLine(line);
        File.AppendAllText(Path.Combine(AppContext.BaseDirectory, "load-test.txt"), line + Environment.NewLine);
        Console.Error.WriteLine(line);

        Assert.Equal(Requests, latencies.Length);
        Assert.True(workingSetAfter <= workingSetBefore + WorkingSetBoundMb, line);
        Assert.True(heapAfter <= heapBefore + ManagedHeapBoundMb, line);
        Assert.Equal(0, host.Scorer.QueueLength);
    }

    private static double Percentile(double[] sorted, double q) => sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];

    private static (double WorkingSetMb, double ManagedHeapMb) Memory()
    {
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        using var process = Process.GetCurrentProcess();
        process.Refresh();
        return (process.WorkingSet64 / 1048576.0, GC.GetGCMemoryInfo(GCKind.Any).HeapSizeBytes / 1048576.0); // the GC heap after that full compacting collection
    }

    /// <summary>Sends <paramref name="count"/> requests from <see cref="Concurrency"/> workers; every one must be 200 with a verdict. Returns the latencies (ms).</summary>
    private async Task<double[]> RunAsync(ServiceHost host, int count)
    {
        var latencies = new double[count];
        int next = -1;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120)); // bounded in time as well as in count
        var workers = Enumerable.Range(0, Concurrency).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < count)
            {
                var (name, bytes) = models.Images[i % models.Images.Count];
                long start = Stopwatch.GetTimestamp();
                using var response = await host.Client.PostAsync(ScoringEndpointsTests.ScoreUri(name), ScoringEndpointsTests.Raw(bytes), timeout.Token);
                string body = await response.Content.ReadAsStringAsync(timeout.Token);
                latencies[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                Assert.True(response.StatusCode == HttpStatusCode.OK, $"request {i}: {(int)response.StatusCode} {body}");
                Assert.Contains("\"score\":", body);
            }
        })).ToArray();
        await Task.WhenAll(workers);
        return latencies;
    }
}
