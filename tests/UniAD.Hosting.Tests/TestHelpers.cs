using System.Diagnostics;

namespace UniAD.Hosting.Tests;

/// <summary>Holds a detector's lock from another thread, so that its scoring waits: requests pile up deterministically.</summary>
public sealed class ModelBlock : IDisposable
{
    private readonly ManualResetEventSlim entered = new();
    private readonly ManualResetEventSlim release = new();
    private readonly AnomalyDetectorLease lease;
    private readonly Task holder;
    private bool disposed;

    public ModelBlock(AnomalyDetectorProvider provider)
    {
        lease = provider.Acquire();
        var detector = lease.Detector;
        holder = Task.Factory.StartNew(
            () => detector.UseModel(_ =>
            {
                entered.Set();
                release.Wait();
                return 0;
            }),
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
        entered.Wait();
    }

    public void Dispose()
    {
        if (disposed)
        {
            return;
        }

        disposed = true;
        release.Set();
        holder.Wait();
        lease.Dispose();
        entered.Dispose();
        release.Dispose();
    }
}

public static class Wait
{
    /// <summary>Polls <paramref name="condition"/> until it holds (fails after <paramref name="seconds"/>).</summary>
    public static async Task Until(Func<bool> condition, string what, double seconds = 20)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed.TotalSeconds < seconds, $"Timed out after {seconds} s waiting for {what}.");
            await Task.Delay(5);
        }
    }
}
