using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using UniAD.Core.Detection;

namespace UniAD.Hosting;

/// <summary>What the provider knows of the detector it serves.</summary>
/// <param name="Source">The file it was loaded from, or the source named to <see cref="AnomalyDetectorProvider.Swap"/> (null when none was named).</param>
/// <param name="Generation">1 for the first detector, then one more at every swap or reload.</param>
/// <param name="LoadedAt">When it became the current detector.</param>
public sealed record AnomalyModelInfo(string? Source, int Generation, DateTimeOffset LoadedAt);

/// <summary>
/// Holds the service's current <see cref="AnomalyDetector"/> and hot-swaps it atomically. Scoring code borrows the current
/// detector with <see cref="Acquire"/> (a reference-counted <see cref="AnomalyDetectorLease"/>); <see cref="Swap"/> and
/// <see cref="ReloadAsync"/> replace it at once for new callers, and the old instance is disposed only when the last
/// lease on it is released, never while a call is using it.
/// </summary>
/// <remarks>
/// <para>The pattern for a service that retrains: score with the current detector, train (or load) another instance
/// elsewhere, then <see cref="Swap"/> it in. Training holds a detector's lock for the whole run, so never train the
/// instance that is serving.</para>
/// <para>As a hosted service (registered by <c>AddAnomalyDetector</c>), it loads <see cref="AnomalyDetectorServiceOptions.ModelPath"/>
/// when the host starts, unless a detector was swapped in before; a model that cannot be loaded stops the host's start.
/// Disposing the provider disposes the current detector (after its leases are released).</para>
/// </remarks>
public sealed class AnomalyDetectorProvider : IHostedService, IDisposable
{
    private readonly IOptions<AnomalyDetectorServiceOptions> options;
    private readonly ILoggerFactory loggerFactory;
    private readonly ILogger logger;
    private readonly object swapGate = new();
    private readonly SemaphoreSlim reloadGate = new(1, 1);
    private Holder? current;
    private int generation;
    private bool disposed;

    /// <summary>Creates an empty provider; <see cref="StartAsync"/> loads the configured model.</summary>
    public AnomalyDetectorProvider(IOptions<AnomalyDetectorServiceOptions> options, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        this.options = options; // read when used: resolving the provider never throws the options' validation
        this.loggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        logger = this.loggerFactory.CreateLogger<AnomalyDetectorProvider>();
    }

    /// <summary>Whether a detector is loaded.</summary>
    public bool IsLoaded => Volatile.Read(ref current) is not null;

    /// <summary>The current detector's description, or null before the first load.</summary>
    public AnomalyModelInfo? Model => Volatile.Read(ref current)?.Info;

    /// <summary>
    /// Borrows the current detector until the lease is disposed: a swap meanwhile does not dispose it. Keep leases short
    /// (one scoring call or batch): a retired detector's memory is freed only when its last lease ends.
    /// </summary>
    /// <exception cref="InvalidOperationException">No detector is loaded yet.</exception>
    /// <exception cref="ObjectDisposedException">The provider was disposed.</exception>
    public AnomalyDetectorLease Acquire()
    {
        while (true)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref disposed), this);
            var holder = Volatile.Read(ref current) ?? throw new InvalidOperationException("No anomaly detector is loaded yet (the provider loads UniAD:ModelPath when the host starts).");
            if (holder.TryAddRef())
            {
                return new AnomalyDetectorLease(holder.Detector, holder.Info, holder.Release);
            }

            // That detector was retired between the read and the reference: the next read sees its successor.
        }
    }

    /// <summary>
    /// Makes <paramref name="detector"/> the current detector at once (the provider owns it from now on and disposes it in
    /// its turn). The previous detector is disposed when its last lease is released; the returned task completes then
    /// (at once when there was none).
    /// </summary>
    /// <param name="detector">The new detector (trained or loaded elsewhere; not the current one).</param>
    /// <param name="source">What to report as its source (e.g. the file it came from), or null.</param>
    /// <exception cref="ArgumentException">The detector is already the current one.</exception>
    /// <exception cref="ObjectDisposedException">The provider was disposed.</exception>
    public Task Swap(AnomalyDetector detector, string? source = null) => SwapCore(detector, source).OldDisposed;

    private (AnomalyModelInfo Info, Task OldDisposed) SwapCore(AnomalyDetector detector, string? source)
    {
        ArgumentNullException.ThrowIfNull(detector);
        Holder? old;
        Holder holder;
        lock (swapGate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (current is { } c && ReferenceEquals(c.Detector, detector))
            {
                throw new ArgumentException("That detector is already the current one.", nameof(detector));
            }

            holder = new Holder(detector, new AnomalyModelInfo(source, ++generation, DateTimeOffset.UtcNow), logger);
            old = Interlocked.Exchange(ref current, holder);
        }

        logger.LogInformation("Anomaly detector generation {Generation} is current (source {Source}, {Epochs} epochs, calibrated {Calibrated}).", holder.Info.Generation, source ?? "(none)", detector.EpochsTrained, detector.Calibration is not null);
        if (old is null)
        {
            return (holder.Info, Task.CompletedTask);
        }

        old.Release(); // the provider's own reference: the detector goes when its last lease does
        return (holder.Info, old.Disposed);
    }

    /// <summary>
    /// Loads a detector from <paramref name="path"/> (default: <see cref="AnomalyDetectorServiceOptions.ModelPath"/>) on the
    /// thread pool, on the configured device, applies the configured <see cref="AnomalyDetectorServiceOptions.Sensitivity"/>
    /// and swaps it in (see <see cref="Swap"/>; the old detector is disposed after its in-flight calls). Reloads run one at a time.
    /// </summary>
    /// <returns>The new detector's description (once it is current; the old one may still be finishing its calls).</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a detector checkpoint or is corrupt.</exception>
    /// <exception cref="InvalidOperationException">A sensitivity is configured but the model is not calibrated.</exception>
    public async Task<AnomalyModelInfo> ReloadAsync(string? path = null, CancellationToken cancellationToken = default)
    {
        path ??= options.Value.ModelPath;
        ArgumentException.ThrowIfNullOrEmpty(path);
        await reloadGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var detector = await Task.Run(() => Load(path), cancellationToken).ConfigureAwait(false);
            try
            {
                cancellationToken.ThrowIfCancellationRequested();
                return SwapCore(detector, path).Info;
            }
            catch
            {
                detector.Dispose();
                throw;
            }
        }
        finally
        {
            reloadGate.Release();
        }
    }

    /// <summary>Loads the configured model unless a detector is already current (swapped in before the host started).</summary>
    /// <exception cref="FileNotFoundException">The model file does not exist.</exception>
    /// <exception cref="InvalidDataException">The model file is not a detector checkpoint or is corrupt.</exception>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (IsLoaded)
        {
            return;
        }

        try
        {
            await ReloadAsync(options.Value.ModelPath, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            logger.LogCritical(ex, "Could not load the anomaly detector from {ModelPath}.", options.Value.ModelPath);
            throw;
        }
    }

    /// <summary>Nothing to do: the detector lives until the provider is disposed (requests may still be draining).</summary>
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Retires the current detector (disposed once its last lease is released); later <see cref="Acquire"/> calls fail.</summary>
    public void Dispose()
    {
        Holder? old;
        lock (swapGate)
        {
            if (disposed)
            {
                return;
            }

            Volatile.Write(ref disposed, true);
            old = Interlocked.Exchange(ref current, null);
        }

        old?.Release();
        reloadGate.Dispose();
    }

    private AnomalyDetector Load(string path)
    {
        var detector = AnomalyDetector.Load(path, options.Value.Device, loggerFactory);
        try
        {
            if (options.Value.Sensitivity is { } s)
            {
                if (detector.Calibration is null)
                {
                    throw new InvalidOperationException($"UniAD:Sensitivity is set ({s}) but the model '{path}' is not calibrated: calibrate it (or set thresholds) before saving.");
                }

                detector.SetSensitivity(s);
            }

            return detector;
        }
        catch
        {
            detector.Dispose();
            throw;
        }
    }

    /// <summary>A detector with its reference count: 1 for the provider while current, 1 per lease.</summary>
    private sealed class Holder(AnomalyDetector detector, AnomalyModelInfo info, ILogger logger)
    {
        private readonly TaskCompletionSource disposed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int references = 1;

        public AnomalyDetector Detector { get; } = detector;

        public AnomalyModelInfo Info { get; } = info;

        public Task Disposed => disposed.Task;

        public bool TryAddRef()
        {
            int seen = Volatile.Read(ref references);
            while (seen > 0)
            {
                int before = Interlocked.CompareExchange(ref references, seen + 1, seen);
                if (before == seen)
                {
                    return true;
                }

                seen = before;
            }

            return false;
        }

        public void Release()
        {
            int left = Interlocked.Decrement(ref references);
            if (left > 0)
            {
                return;
            }

            try
            {
                Detector.Dispose();
                logger.LogInformation("Anomaly detector generation {Generation} (source {Source}) disposed after its last call.", Info.Generation, Info.Source ?? "(none)");
            }
            finally
            {
                disposed.TrySetResult();
            }
        }
    }
}

/// <summary>
/// A borrowed detector (<see cref="AnomalyDetectorProvider.Acquire"/>): it stays alive, even if swapped out, until this lease
/// is disposed. Dispose it exactly once, as soon as the call is done; do not keep the detector beyond it.
/// </summary>
public sealed class AnomalyDetectorLease : IDisposable
{
    private Action? release;

    internal AnomalyDetectorLease(AnomalyDetector detector, AnomalyModelInfo model, Action release)
    {
        Detector = detector;
        Model = model;
        this.release = release;
    }

    /// <summary>The borrowed detector.</summary>
    public AnomalyDetector Detector { get; }

    /// <summary>Its description (source and generation).</summary>
    public AnomalyModelInfo Model { get; }

    /// <summary>Returns the detector; the last lease of a swapped-out detector disposes it. Further calls do nothing.</summary>
    public void Dispose() => Interlocked.Exchange(ref release, null)?.Invoke();
}
