using System.Diagnostics;
using System.Globalization;
using System.Net;
using SkiaSharp;
using UniAD.Core.Data;
using Xunit.Abstractions;

namespace UniAD.Hosting.Tests.ScoringService;

/// <summary>
/// Issue 26: 16 concurrent heat-map requests of a 9400 x 9400 PNG (under the body and pixel limits) stay within the
/// decoded-memory budget: the process's working set, sampled every 20 ms, never grows by more than the budget plus a stated
/// margin; what does not fit is refused at once (503 with Retry-After); and the memory falls back afterwards.
/// </summary>
[Collection(ModelsCollection.Name)]
public sealed class LargeImageLoadTests(TestModels models, ITestOutputHelper output)
{
    public const int Side = 9400;
    public const int Concurrency = 16;

    /// <summary>The budget of this test: 2 GiB, the default.</summary>
    public const long BudgetBytes = 2L * 1024 * 1024 * 1024;

    /// <summary>What the process may hold beyond the budget at its peak (the encoded bodies, Kestrel's buffers, the decoder's and encoder's own buffers).</summary>
    public const double MarginMb = 768;

    /// <summary>How far above the starting working set the process may stay once the burst is over.</summary>
    public const double AfterMb = 256;

    [Fact]
    public async Task Sixteen_concurrent_huge_heat_map_requests_stay_within_the_memory_budget_and_give_it_back()
    {
        var png = HugePng();
        Assert.True(png.Length < 16 * 1024 * 1024, $"the test image must pass the body limit; it is {png.Length} bytes");
        await using var host = await ServiceHost.StartAsync(ServiceHost.Settings(models.ModelA, ("MaxDecodedBytes", BudgetBytes.ToString(CultureInfo.InvariantCulture))));
        var before = WorkingSetMb(collect: true);

        double peak = before;
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                peak = Math.Max(peak, WorkingSetMb(collect: false));
                await Task.Delay(20);
            }
        });

        var clock = Stopwatch.StartNew();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(300)); // bounded in time as well as in count
        var responses = await Task.WhenAll(Enumerable.Range(0, Concurrency).Select(async i =>
        {
            using var response = await host.Client.PostAsync(ScoringEndpointsTests.ScoreUri($"huge-{i}.png") + "&heatmap=true", ScoringEndpointsTests.Raw(png), timeout.Token);
            var body = await response.Content.ReadAsByteArrayAsync(timeout.Token);
            return (response.StatusCode, RetryAfter: response.Headers.RetryAfter?.Delta, Body: body);
        }));
        clock.Stop();
        await sampling.CancelAsync();
        await sampler;
        peak = Math.Max(peak, WorkingSetMb(collect: false));
        await Wait.Until(() => host.Scorer.Memory.Used == 0 && host.Scorer.Memory.Compactions >= 1, "the budget to empty and return its memory", seconds: 60);
        var after = WorkingSetMb(collect: true);
        for (int i = 0; i < 20 && after > before + AfterMb; i++)
        {
            await Task.Delay(500); // the kernel's accounting of pages just given back can lag on a loaded machine
            after = WorkingSetMb(collect: true);
        }

        int ok = responses.Count(r => r.StatusCode == HttpStatusCode.OK), busy = responses.Count(r => r.StatusCode == HttpStatusCode.ServiceUnavailable);
        string load = File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";
        string line = string.Create(CultureInfo.InvariantCulture,
            $"large images: {Concurrency} concurrent POST /score?heatmap=true of a {Side} x {Side} PNG ({png.Length / 1024} KB), budget {BudgetBytes / 1048576} MiB: {ok} x 200, {busy} x 503 in {clock.Elapsed.TotalSeconds:F1} s; working set {before:F0} MB before, peak {peak:F0} MB (+{peak - before:F0}), {after:F0} MB after; {host.Scorer.Memory.Compactions} compactions; load average {load}");
        output.WriteLine(line);
        Console.Error.WriteLine(line);
        File.AppendAllText(Path.Combine(AppContext.BaseDirectory, "load-test.txt"), line + Environment.NewLine);

        Assert.Equal(Concurrency, ok + busy);
        Assert.True(ok >= 1, line);
        Assert.All(responses.Where(r => r.StatusCode == HttpStatusCode.ServiceUnavailable), r => Assert.Equal(TimeSpan.FromSeconds(1), r.RetryAfter));
        Assert.All(responses.Where(r => r.StatusCode == HttpStatusCode.OK), r => Assert.Equal((Side, Side), PngSize(r.Body)));
        Assert.True(peak - before <= (BudgetBytes / 1048576.0) + MarginMb, line);
        Assert.True(after <= before + AfterMb, line);
    }

    /// <summary>A 9400 x 9400 RGB PNG that compresses well (soft stripes): under a megabyte encoded, 88 million pixels decoded.</summary>
    private static byte[] HugePng()
    {
        var info = new SKImageInfo(Side, Side, SKColorType.Rgba8888, SKAlphaType.Opaque);
        using var bitmap = new SKBitmap(info);
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(new SKColor(120, 120, 120));
            using var paint = new SKPaint { Color = new SKColor(160, 150, 140) };
            for (int x = 0; x < Side; x += 400)
            {
                canvas.DrawRect(x, 0, 200, Side, paint);
            }
        }

        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 6);
        return data.ToArray();
    }

    private static (int, int) PngSize(byte[] png) => ImageDecoder.ReadSize(png) is { } size ? (size.Width, size.Height) : (0, 0);

    private static double WorkingSetMb(bool collect)
    {
        if (collect)
        {
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        }

        using var process = Process.GetCurrentProcess();
        return process.WorkingSet64 / 1048576.0;
    }
}
