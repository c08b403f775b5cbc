using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using UniAD.Core.Detection;

namespace UniAD.Hosting;

/// <summary>What the provider knows of the model it serves.</summary>
/// <param name="Source">The file it was loaded from, or the source named to <see cref="AnomalyDetectorProvider.Swap(ImageScorer, string?)"/> (null when none was named).</param>
/// <param name="Generation">1 for the first model, then one more at every swap or reload.</param>
/// <param name="LoadedAt">When it became the current model.</param>
public sealed record AnomalyModelInfo(string? Source, int Generation, DateTimeOffset LoadedAt)
{
    /// <summary>The runtime the model scores on: <c>torch</c> (UniAD.Core's <see cref="AnomalyDetector"/>, libtorch; the default) or <c>onnx</c> (UniAD.Onnx's <c>OnnxAnomalyScorer</c>, ONNX Runtime).</summary>
    public string Runtime { get; init; } = ScorerFacts.Torch;
}

/// <summary>
/// Holds the service's current model, an <see cref="ImageScorer"/> (UniAD.Core's <see cref="AnomalyDetector"/> on libtorch
/// or UniAD.Onnx's <c>OnnxAnomalyScorer</c> on ONNX Runtime), and hot-swaps it atomically. Scoring code borrows the
/// current model with <see cref="Acquire"/> (a reference-counted <see cref="AnomalyDetectorLease"/>);
/// <see cref="Swap(ImageScorer, string?)"/> and <see cref="ReloadAsync"/> replace it at once for new callers, and the old
/// instance is disposed only when the last lease on it is released, never while a call is using it.
/// </summary>
/// <remarks>
/// <para>The pattern for a service that retrains: score with the current detector, train (or load) another instance
/// elsewhere, then <see cref="Swap(AnomalyDetector, string?)"/> it in. Training holds a detector's lock for the whole
/// run, so never train the instance that is serving.</para>
/// <para>Models are loaded from files by the registration's loader: <c>AddAnomalyDetector</c> loads checkpoints with
/// <see cref="AnomalyDetector.Load(string, string?, ILoggerFactory?)"/> on
/// <see cref="AnomalyDetectorServiceOptions.Device"/>; <c>AddOnnxAnomalyScorer</c> loads <c>.onnx</c> files with
/// <c>OnnxAnomalyScorer.Load</c> and the <see cref="OnnxScorerServiceOptions"/>. The service code sees only the scoring
/// contract of <see cref="ImageScorer"/>; the few facts it reports beyond it (calibration, runtime, epochs or execution
/// provider) are read from the two runtimes' own public members.</para>
/// <para>As a hosted service (registered by <c>AddAnomalyDetector</c> or <c>AddOnnxAnomalyScorer</c>), it loads
/// <see cref="AnomalyDetectorServiceOptions.ModelPath"/> when the host starts, unless a model was swapped in before; a
/// model that cannot be loaded stops the host's start. Disposing the provider disposes the current model (after its
/// leases are released).</para>
/// </remarks>
public sealed class AnomalyDetectorProvider : IHostedService, IDisposable
{
    private readonly IOptions<AnomalyDetectorServiceOptions> options;
    private readonly Func<string, ImageScorer>? loader;
    private readonly ILoggerFactory loggerFactory;
    private readonly ILogger logger;
    private readonly object swapGate = new();
    private readonly SemaphoreSlim reloadGate = new(1, 1);
    private Holder? current;
    private int generation;
    private bool disposed;

    /// <summary>
    /// Creates an empty provider of TorchSharp detectors; <see cref="StartAsync"/> loads the configured checkpoint on
    /// <see cref="AnomalyDetectorServiceOptions.Device"/> and applies <see cref="AnomalyDetectorServiceOptions.Sensitivity"/>.
    /// </summary>
    public AnomalyDetectorProvider(IOptions<AnomalyDetectorServiceOptions> options, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        this.options = options; // read when used: resolving the provider never throws the options' validation
        this.loggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        logger = this.loggerFactory.CreateLogger<AnomalyDetectorProvider>();
    }

    /// <summary>
    /// Creates an empty provider whose models <paramref name="loader"/> loads from files (at start, from
    /// <see cref="AnomalyDetectorServiceOptions.ModelPath"/>, and at every <see cref="ReloadAsync"/>), e.g.
    /// <c>path =&gt; OnnxAnomalyScorer.Load(path, onnxOptions)</c>. The loader returns a model ready to serve (its
    /// sensitivity applied: the provider does not apply <see cref="AnomalyDetectorServiceOptions.Sensitivity"/> itself);
    /// the provider owns and disposes what it returns. <see cref="AnomalyDetectorServiceOptions.Device"/> is not used.
    /// </summary>
    /// <param name="options">The service's options (model path).</param>
    /// <param name="loggerFactory">The loggers, or null.</param>
    /// <param name="loader">Loads a model from a file; its exceptions (a missing or corrupt file) stop the host's start or fail the reload.</param>
    public AnomalyDetectorProvider(IOptions<AnomalyDetectorServiceOptions> options, ILoggerFactory? loggerFactory, Func<string, ImageScorer> loader)
        : this(options, loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(loader);
        this.loader = loader;
    }

    /// <summary>Whether a model is loaded.</summary>
    public bool IsLoaded => Volatile.Read(ref current) is not null;

    /// <summary>The current model's description, or null before the first load.</summary>
    public AnomalyModelInfo? Model => Volatile.Read(ref current)?.Info;

    /// <summary>
    /// Borrows the current model until the lease is disposed: a swap meanwhile does not dispose it. Keep leases short
    /// (one scoring call or batch): a retired model's memory is freed only when its last lease ends.
    /// </summary>
    /// <exception cref="InvalidOperationException">No model is loaded yet.</exception>
    /// <exception cref="ObjectDisposedException">The provider was disposed.</exception>
    public AnomalyDetectorLease Acquire()
    {
        while (true)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref disposed), this);
            var holder = Volatile.Read(ref current) ?? throw new InvalidOperationException("No anomaly detector is loaded yet (the provider loads UniAD:ModelPath when the host starts).");
            if (holder.TryAddRef())
            {
                return new AnomalyDetectorLease(holder.Scorer, holder.Info, holder.Release);
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

    /// <summary>
    /// Makes <paramref name="scorer"/> (an <see cref="AnomalyDetector"/> or an <c>OnnxAnomalyScorer</c>) the current model at
    /// once; the provider owns it from now on and disposes it in its turn. The previous model is disposed when its last
    /// lease is released; the returned task completes then (at once when there was none).
    /// </summary>
    /// <param name="scorer">The new model (not the current one).</param>
    /// <param name="source">What to report as its source (e.g. the file it came from), or null.</param>
    /// <exception cref="ArgumentException">The model is already the current one.</exception>
    /// <exception cref="ObjectDisposedException">The provider was disposed.</exception>
    public Task Swap(ImageScorer scorer, string? source = null) => SwapCore(scorer, source).OldDisposed;

    private (AnomalyModelInfo Info, Task OldDisposed) SwapCore(ImageScorer detector, string? source)
    {
        ArgumentNullException.ThrowIfNull(detector);
        Holder? old;
        Holder holder;
        lock (swapGate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (current is { } c && ReferenceEquals(c.Scorer, detector))
            {
                throw new ArgumentException("That model is already the current one.", nameof(detector));
            }

            holder = new Holder(detector, new AnomalyModelInfo(source, ++generation, DateTimeOffset.UtcNow) { Runtime = ScorerFacts.Runtime(detector) }, logger);
            old = Interlocked.Exchange(ref current, holder);
        }

        logger.LogInformation("Anomaly model generation {Generation} is current (source {Source}, {Model}).", holder.Info.Generation, source ?? "(none)", ScorerFacts.Describe(detector));
        if (old is null)
        {
            return (holder.Info, Task.CompletedTask);
        }

        old.Release(); // the provider's own reference: the detector goes when its last lease does
        return (holder.Info, old.Disposed);
    }

    /// <summary>
    /// Loads a model from <paramref name="path"/> (default: <see cref="AnomalyDetectorServiceOptions.ModelPath"/>) on the
    /// thread pool with the registration's loader (a checkpoint on the configured device, or an <c>.onnx</c> file with the
    /// ONNX options), applies the configured <see cref="AnomalyDetectorServiceOptions.Sensitivity"/> and swaps it in (see
    /// <see cref="Swap(ImageScorer, string?)"/>; the old model is disposed after its in-flight calls). Reloads run one at a time.
    /// </summary>
    /// <returns>The new model's description (once it is current; the old one may still be finishing its calls).</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a model of the runtime (a checkpoint, or a UniAD ONNX export) or is corrupt.</exception>
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
                (detector as IDisposable)?.Dispose();
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

    private ImageScorer Load(string path)
    {
        var scorer = loader is null ? LoadDetector(path) : loader(path) ?? throw new InvalidOperationException($"The model loader returned null for '{path}'.");
        if (ScorerFacts.ClassesNeeded(scorer) is { } classes)
        {
            (scorer as IDisposable)?.Dispose();
            throw new InvalidDataException($"The model '{path}' needs each image's class (per-class reference maps or memory banks: {string.Join(", ", classes)}), but the service scores images without one. Serve a model with one bank for all classes and no reference maps, or score it with the library (Score(path, className)).");
        }

        return scorer;
    }

    private AnomalyDetector LoadDetector(string path)
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

    /// <summary>A model with its reference count: 1 for the provider while current, 1 per lease.</summary>
    private sealed class Holder(ImageScorer scorer, AnomalyModelInfo info, ILogger logger)
    {
        private readonly TaskCompletionSource disposed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int references = 1;

        public ImageScorer Scorer { get; } = scorer;

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
                (Scorer as IDisposable)?.Dispose();
                logger.LogInformation("Anomaly model generation {Generation} (source {Source}) disposed after its last call.", Info.Generation, Info.Source ?? "(none)");
            }
            finally
            {
                disposed.TrySetResult();
            }
        }
    }
}

/// <summary>
/// A borrowed model (<see cref="AnomalyDetectorProvider.Acquire"/>): it stays alive, even if swapped out, until this lease
/// is disposed. Dispose it exactly once, as soon as the call is done; do not keep the model beyond it.
/// </summary>
public sealed class AnomalyDetectorLease : IDisposable
{
    private Action? release;

    internal AnomalyDetectorLease(ImageScorer scorer, AnomalyModelInfo model, Action release)
    {
        Scorer = scorer;
        Model = model;
        this.release = release;
    }

    /// <summary>The borrowed model, of either runtime: score with its <see cref="ImageScorer"/> methods.</summary>
    public ImageScorer Scorer { get; }

    /// <summary>The borrowed model as a TorchSharp detector (for what only <see cref="AnomalyDetector"/> does).</summary>
    /// <exception cref="InvalidOperationException">The model is not an <see cref="AnomalyDetector"/> (an ONNX service: use <see cref="Scorer"/>).</exception>
    public AnomalyDetector Detector => Scorer as AnomalyDetector
        ?? throw new InvalidOperationException($"The current model is a {Scorer.GetType().Name} ({Model.Runtime} runtime), not an AnomalyDetector: use the lease's Scorer.");

    /// <summary>Its description (source and generation).</summary>
    public AnomalyModelInfo Model { get; }

    /// <summary>Returns the detector; the last lease of a swapped-out detector disposes it. Further calls do nothing.</summary>
    public void Dispose() => Interlocked.Exchange(ref release, null)?.Invoke();
}
