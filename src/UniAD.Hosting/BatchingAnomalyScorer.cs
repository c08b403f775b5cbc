using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using UniAD.Core.Data;
using UniAD.Core.Detection;

namespace UniAD.Hosting;

/// <summary>
/// The hosted <see cref="IAnomalyScorer"/>: requests go into a bounded queue (<see cref="AnomalyDetectorServiceOptions.QueueCapacity"/>;
/// a full queue refuses at once with <see cref="ScoringQueueFullException"/>); one loop takes what is queued, waits at most
/// <see cref="AnomalyDetectorServiceOptions.MaxBatchDelay"/> for more, and scores up to
/// <see cref="AnomalyDetectorServiceOptions.MaxBatchSize"/> images in one forward pass of the provider's current model
/// (<see cref="ImageScorer.ScoreBatch(IReadOnlyList{RgbImage}, IReadOnlyList{string?}?, string?)"/>: a TorchSharp detector or an ONNX scorer alike).
/// </summary>
/// <remarks>
/// <para>Isolation: each request is decoded on its own, so a bad image fails only its request (its own
/// <see cref="ImageFileException"/>); when a forward pass fails, its images are scored again one by one so that each caller
/// gets its own outcome. A request cancelled before its forward pass is dropped from the batch; one cancelled later simply
/// does not wait for its result; the others are never affected.</para>
/// <para>Shutdown: stopping refuses new requests (<see cref="ScorerUnavailableException"/>) and scores what is queued until
/// the host's shutdown timeout; whatever is left then fails with <see cref="ScorerUnavailableException"/>. No request is
/// left waiting.</para>
/// </remarks>
public sealed class BatchingAnomalyScorer : BackgroundService, IAnomalyScorer
{
    private readonly AnomalyDetectorProvider provider;
    private readonly AnomalyDetectorServiceOptions options;
    private readonly AnomalyScoringMetrics metrics;
    private readonly ILogger logger;
    private readonly Channel<Request> queue;
    private readonly DecodedMemoryBudget memory;
    private readonly CancellationTokenSource abort = new();
    private readonly CancellationToken abortToken; // read by the loop, so that it never touches the source after Dispose
    private volatile bool accepting = true;
    private volatile bool running;
    private int disposed;

    /// <summary>Creates the scorer (it scores once started as a hosted service).</summary>
    public BatchingAnomalyScorer(AnomalyDetectorProvider provider, IOptions<AnomalyDetectorServiceOptions> options, AnomalyScoringMetrics metrics, ILogger<BatchingAnomalyScorer>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(provider);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(metrics);
        this.provider = provider;
        this.options = options.Value;
        this.metrics = metrics;
        this.logger = (ILogger?)logger ?? NullLogger.Instance;
        queue = Channel.CreateBounded<Request>(new BoundedChannelOptions(Math.Max(1, this.options.QueueCapacity))
        {
            SingleReader = true,
            SingleWriter = false,
            FullMode = BoundedChannelFullMode.Wait, // writers use TryWrite: a full queue refuses, it never blocks nor drops
        });
        metrics.ObserveQueue(() => QueueLength);
        memory = new DecodedMemoryBudget(Math.Max(DecodedMemoryBudget.MinimumBytes, this.options.MaxDecodedBytes));
        abortToken = abort.Token;
    }

    /// <summary>Whether the scoring loop is running (started and not stopped).</summary>
    public bool IsRunning => running;

    /// <summary>Requests waiting in the queue.</summary>
    public int QueueLength => queue.Reader.Count;

    /// <summary>The queue's capacity.</summary>
    public int QueueCapacity => Math.Max(1, options.QueueCapacity);

    /// <summary>The decoded-memory budget (<see cref="AnomalyDetectorServiceOptions.MaxDecodedBytes"/>) and what is reserved of it.</summary>
    public DecodedMemoryBudget Memory => memory;

    /// <inheritdoc />
    public async Task<AnomalyResult> ScoreAsync(ReadOnlyMemory<byte> image, string? name = null, CancellationToken cancellationToken = default)
    {
        using var scored = await ScoreImageAsync(image, name, cancellationToken).ConfigureAwait(false);
        return scored.Result;
    }

    /// <inheritdoc />
    public Task<ScoredImage> ScoreImageAsync(ReadOnlyMemory<byte> image, string? name = null, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<ScoredImage>(cancellationToken);
        }

        if (image.Length > options.MaxImageBytes)
        {
            metrics.Failed("too_large");
            return Task.FromException<ScoredImage>(new ImageTooLargeException(name, image.Length, options.MaxImageBytes));
        }

        // Decoded memory is reserved from the header before anything is decoded: a burst of large images is refused at once
        // (503) instead of decoded side by side, and the reservation lasts until the caller disposes the result.
        long cost = DecodedMemoryBudget.Cost(image);
        if (cost > memory.Capacity)
        {
            metrics.Failed("too_large");
            return Task.FromException<ScoredImage>(new ImageTooLargeException(name, cost, memory.Capacity, nameof(AnomalyDetectorServiceOptions.MaxDecodedBytes)));
        }

        if (!memory.TryReserve(cost, out var reservation))
        {
            metrics.Failed("memory_busy");
            return Task.FromException<ScoredImage>(new ScoringMemoryBusyException(name, cost, memory.Available, memory.Capacity));
        }

        var request = new Request(image, name, cancellationToken, reservation!);
        request.WatchCancellation(); // before the loop can see it, so that a completed request never keeps a registration
        if (!accepting || !queue.Writer.TryWrite(request))
        {
            request.Forget();
            request.Release();
            bool full = accepting;
            metrics.Failed(full ? "queue_full" : "unavailable");
            return Task.FromException<ScoredImage>(full ? new ScoringQueueFullException(QueueCapacity) : Stopped());
        }

        return request.Task;
    }

    /// <summary>Refuses new requests, scores the queued ones until <paramref name="cancellationToken"/> (the host's shutdown timeout) fires, fails the rest.</summary>
    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        accepting = false;
        queue.Writer.TryComplete();
        using (cancellationToken.Register(static s => ((CancellationTokenSource)s!).Cancel(), abort))
        {
            await base.StopAsync(cancellationToken).ConfigureAwait(false);
        }

        if (cancellationToken.IsCancellationRequested)
        {
            await abort.CancelAsync().ConfigureAwait(false); // the timeout passed (the registration may not have run before it was disposed)
        }

        if (ExecuteTask is null)
        {
            FailQueued(); // never started: nothing will score them
        }
    }

    /// <summary>Refuses new requests and ends the loop at once (without the drain of <see cref="StopAsync"/>); queued requests fail.</summary>
    public override void Dispose()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0)
        {
            return; // registered as itself and as a hosted service: the container may dispose it twice
        }

        accepting = false;
        queue.Writer.TryComplete();
        abort.Cancel();
        if (ExecuteTask is null or { IsCompleted: true })
        {
            FailQueued();
        }

        base.Dispose();
        abort.Dispose();
    }

    /// <summary>The scoring loop; the host's stopping token is not used: <see cref="StopAsync"/> completes the queue, and the loop drains it.</summary>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        running = true;
        logger.LogInformation("Batching scorer started: batches of up to {MaxBatchSize}, waiting at most {Delay} ms, queue of {Capacity}.", options.MaxBatchSize, options.MaxBatchDelay.TotalMilliseconds, QueueCapacity);
        var batch = new List<Request>(options.MaxBatchSize);
        try
        {
            var reader = queue.Reader;
            while (await reader.WaitToReadAsync(abortToken).ConfigureAwait(false))
            {
                await GatherAsync(reader, batch, abortToken).ConfigureAwait(false);
                if (batch.Count > 0)
                {
                    try
                    {
                        Process(batch);
                    }
                    catch (Exception ex) when (ex is not OutOfMemoryException)
                    {
                        // Never let one batch end the loop: its unanswered requests fail, the next batch goes on.
                        logger.LogError(ex, "A scoring batch of {Count} failed unexpectedly.", batch.Count);
                        foreach (var r in batch)
                        {
                            Fail(r, ex, "error");
                        }
                    }
                }

                batch.Clear();
            }
        }
        catch (OperationCanceledException) when (abortToken.IsCancellationRequested)
        {
            // the shutdown timeout passed: what is left fails below
        }
        finally
        {
            running = false;
            foreach (var r in batch)
            {
                Fail(r, Stopped(), "unavailable");
            }

            FailQueued();
            logger.LogInformation("Batching scorer stopped.");
        }
    }

    private static ScorerUnavailableException Stopped() => new("The anomaly scorer is stopped or stopping; it takes no new requests.");

    private static double MillisecondsSince(long timestamp) => Stopwatch.GetElapsedTime(timestamp).TotalMilliseconds;

    private static byte[] ToArray(ReadOnlyMemory<byte> memory) =>
        MemoryMarshal.TryGetArray(memory, out var segment) && segment.Array is { } array && segment.Offset == 0 && segment.Count == array.Length
            ? array
            : memory.ToArray();

    private void FailQueued()
    {
        while (queue.Reader.TryRead(out var r))
        {
            Fail(r, Stopped(), "unavailable");
        }
    }

    /// <summary>Takes what is queued (up to a batch), then waits up to the batch delay, counted from the first request, for more.</summary>
    private async Task GatherAsync(ChannelReader<Request> reader, List<Request> batch, CancellationToken cancellationToken)
    {
        int max = Math.Max(1, options.MaxBatchSize);
        Take(reader, batch, max);
        if (batch.Count == 0 || batch.Count >= max || options.MaxBatchDelay <= TimeSpan.Zero)
        {
            return;
        }

        long start = Stopwatch.GetTimestamp();
        while (batch.Count < max)
        {
            var left = options.MaxBatchDelay - Stopwatch.GetElapsedTime(start);
            if (left <= TimeSpan.Zero)
            {
                return;
            }

            using var timer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timer.CancelAfter(left);
            try
            {
                if (!await reader.WaitToReadAsync(timer.Token).ConfigureAwait(false))
                {
                    return; // completed: score what we have
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return; // the delay is over
            }

            Take(reader, batch, max);
        }
    }

    private static void Take(ChannelReader<Request> reader, List<Request> batch, int max)
    {
        while (batch.Count < max && reader.TryRead(out var r))
        {
            if (!r.IsCompleted)
            {
                batch.Add(r);
            }
            else
            {
                r.Release(); // a request cancelled while queued is dropped here, and its memory given back
            }
        }
    }

    private void Process(List<Request> batch)
    {
        AnomalyDetectorLease lease;
        try
        {
            lease = provider.Acquire();
        }
        catch (Exception ex) when (ex is InvalidOperationException or ObjectDisposedException)
        {
            foreach (var r in batch)
            {
                Fail(r, new ScorerUnavailableException("No anomaly detector is available: " + ex.Message, ex), "unavailable");
            }

            return;
        }

        using (lease)
        {
            var detector = lease.Scorer;
            long maxPixels = ScorerFacts.MaxImagePixels(detector);
            var images = new RgbImage?[batch.Count];
            void Decode(int i)
            {
                var r = batch[i];
                if (r.IsCompleted)
                {
                    return;
                }

                try
                {
                    images[i] = ImageDecoder.Decode(ToArray(r.Image), r.Name ?? "image", maxPixels);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    Fail(r, ex, Reason(ex)); // this request only
                }
            }

            if (batch.Count == 1)
            {
                Decode(0);
            }
            else
            {
                Parallel.For(0, batch.Count, Decode);
            }

            var live = Enumerable.Range(0, batch.Count).Where(i => images[i] is not null && !batch[i].IsCompleted).ToList();
            if (live.Count == 0)
            {
                return;
            }

            try
            {
                Score(detector, lease.Model, live.Select(i => (batch[i], images[i]!)).ToList());
            }
            catch (Exception ex) when (live.Count > 1 && ex is not OutOfMemoryException)
            {
                // One image (or the pass) failed: score them one by one, so that each caller gets its own outcome.
                logger.LogWarning(ex, "A batch of {Count} failed; scoring its images one by one.", live.Count);
                foreach (int i in live)
                {
                    try
                    {
                        Score(detector, lease.Model, new List<(Request, RgbImage)> { (batch[i], images[i]!) });
                    }
                    catch (Exception single) when (single is not OutOfMemoryException)
                    {
                        Fail(batch[i], single, Reason(single));
                    }
                }
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                Fail(batch[live[0]], ex, Reason(ex));
            }
        }
    }

    private void Score(ImageScorer detector, AnomalyModelInfo model, List<(Request Request, RgbImage Image)> items)
    {
        metrics.Batch(items.Count);
        var results = detector.ScoreBatch(items.Select(x => x.Image).ToList(), items.Select(x => x.Request.Name).ToList());
        var calibration = ScorerFacts.Calibration(detector);
        for (int i = 0; i < items.Count; i++)
        {
            var (request, image) = items[i];
            metrics.Scored(results[i].IsAnomalous, MillisecondsSince(request.Enqueued)); // before the caller sees it
            request.Succeed(new ScoredImage(results[i], image, calibration, model));
        }
    }

    private static string Reason(Exception ex) => ex is IOException or ArgumentException ? "bad_image" : "error";

    private void Fail(Request request, Exception ex, string reason)
    {
        if (request.IsCompleted)
        {
            return; // cancelled by its caller
        }

        metrics.Failed(reason, MillisecondsSince(request.Enqueued));
        if (reason == "error")
        {
            logger.LogError(ex, "Scoring {Name} failed.", request.Name ?? "an image");
        }

        request.Fail(ex);
    }

    /// <summary>One queued request, its caller's task and its share of the decoded-memory budget.</summary>
    private sealed class Request(ReadOnlyMemory<byte> image, string? name, CancellationToken cancellationToken, DecodedMemoryBudget.Reservation reservation)
    {
        private readonly TaskCompletionSource<ScoredImage> completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private CancellationTokenRegistration registration;

        public ReadOnlyMemory<byte> Image { get; } = image;

        public string? Name { get; } = name;

        public long Enqueued { get; } = Stopwatch.GetTimestamp();

        public Task<ScoredImage> Task => completion.Task;

        public bool IsCompleted => completion.Task.IsCompleted;

        public void WatchCancellation()
        {
            if (cancellationToken.CanBeCanceled)
            {
                registration = cancellationToken.UnsafeRegister(static (s, token) => ((Request)s!).completion.TrySetCanceled(token), this);
            }
        }

        public void Forget() => registration.Unregister();

        /// <summary>Gives the request's memory back (no result will hold it).</summary>
        public void Release() => reservation.Dispose();

        /// <summary>Hands the result, and with it the reservation, to the caller (released when the caller disposes it).</summary>
        public void Succeed(ScoredImage result)
        {
            registration.Unregister();
            if (!completion.TrySetResult(result with { Lease = reservation }))
            {
                reservation.Dispose(); // cancelled meanwhile: nobody will dispose the result
            }
        }

        public void Fail(Exception ex)
        {
            registration.Unregister();
            completion.TrySetException(ex);
            reservation.Dispose();
        }
    }
}
