using System.Diagnostics.Metrics;

namespace UniAD.Hosting;

/// <summary>
/// The scorer's <see cref="System.Diagnostics.Metrics"/> instruments, on the meter <see cref="MeterName"/> (created by the
/// host's <see cref="IMeterFactory"/> when there is one). Listen with OpenTelemetry
/// (<c>AddMeter("UniAD.Hosting")</c>), <c>dotnet-counters monitor --counters UniAD.Hosting</c> or a <see cref="MeterListener"/>.
/// </summary>
/// <remarks>
/// Every request that reaches the scorer ends in exactly one of: <see cref="ImagesScoredName"/> + 1 (success, recorded
/// before the caller sees the result), <see cref="FailuresName"/> + 1 (tag <c>reason</c>), or cancellation by its caller
/// (not counted). <see cref="LatencyName"/> records every success and failure of a queued request (tag <c>outcome</c>).
/// </remarks>
public sealed class AnomalyScoringMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "UniAD.Hosting";

    /// <summary>Counter (<c>{image}</c>): images scored successfully.</summary>
    public const string ImagesScoredName = "uniad.scoring.images";

    /// <summary>Counter (<c>{image}</c>): scored images found anomalous (only with a calibrated model).</summary>
    public const string AnomaliesName = "uniad.scoring.anomalies";

    /// <summary>Counter (<c>{request}</c>): failed requests; tag <c>reason</c>: <c>bad_image</c>, <c>too_large</c>, <c>queue_full</c>, <c>unavailable</c> or <c>error</c>.</summary>
    public const string FailuresName = "uniad.scoring.failures";

    /// <summary>Histogram (<c>ms</c>): time from queueing a request to its result (queue wait, decoding and the forward pass); tag <c>outcome</c>: <c>success</c> or <c>failure</c>.</summary>
    public const string LatencyName = "uniad.scoring.latency";

    /// <summary>Histogram (<c>{image}</c>): images per forward pass.</summary>
    public const string BatchSizeName = "uniad.scoring.batch_size";

    /// <summary>Observable gauge (<c>{request}</c>): requests waiting in the queue.</summary>
    public const string QueueLengthName = "uniad.scoring.queue_length";

    private readonly Meter meter;
    private readonly bool ownsMeter;
    private readonly Counter<long> images;
    private readonly Counter<long> anomalies;
    private readonly Counter<long> failures;
    private readonly Histogram<double> latency;
    private readonly Histogram<int> batchSize;
    private Func<int>? queueLength;

    /// <summary>Creates the instruments on a meter from <paramref name="meterFactory"/>, or on a meter of its own without one.</summary>
    public AnomalyScoringMetrics(IMeterFactory? meterFactory = null)
    {
        ownsMeter = meterFactory is null;
        meter = meterFactory?.Create(new MeterOptions(MeterName)) ?? new Meter(MeterName);
        images = meter.CreateCounter<long>(ImagesScoredName, "{image}", "Images scored successfully.");
        anomalies = meter.CreateCounter<long>(AnomaliesName, "{image}", "Scored images found anomalous.");
        failures = meter.CreateCounter<long>(FailuresName, "{request}", "Scoring requests that failed.");
        latency = meter.CreateHistogram<double>(LatencyName, "ms", "Time from queueing a scoring request to its result.");
        batchSize = meter.CreateHistogram<int>(BatchSizeName, "{image}", "Images per forward pass.");
        meter.CreateObservableGauge(QueueLengthName, ObserveQueueLength, "{request}", "Scoring requests waiting in the queue.");
    }

    /// <summary>The meter the instruments belong to.</summary>
    public Meter Meter => meter;

    /// <summary>Disposes the meter when it is the metrics' own (a factory's meters go with the factory).</summary>
    public void Dispose()
    {
        if (ownsMeter)
        {
            meter.Dispose();
        }
    }

    internal void ObserveQueue(Func<int> length) => queueLength = length;

    internal void Scored(bool? anomalous, double milliseconds)
    {
        images.Add(1);
        if (anomalous == true)
        {
            anomalies.Add(1);
        }

        latency.Record(milliseconds, new KeyValuePair<string, object?>("outcome", "success"));
    }

    internal void Failed(string reason, double? milliseconds = null)
    {
        failures.Add(1, new KeyValuePair<string, object?>("reason", reason));
        if (milliseconds is { } ms)
        {
            latency.Record(ms, new KeyValuePair<string, object?>("outcome", "failure"));
        }
    }

    internal void Batch(int size) => batchSize.Record(size);

    private IEnumerable<Measurement<int>> ObserveQueueLength()
    {
        if (queueLength is { } length)
        {
            yield return new Measurement<int>(length());
        }
    }
}
