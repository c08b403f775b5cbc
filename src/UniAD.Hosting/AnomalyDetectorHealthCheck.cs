using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace UniAD.Hosting;

/// <summary>
/// Healthy when a model is loaded and the batching scorer's loop is running; the data report the model's source
/// (<c>modelPath</c>), <c>generation</c>, <c>loadedAt</c>, <c>runtime</c> (<c>torch</c> or <c>onnx</c>), whether it is
/// <c>calibrated</c>, <c>epochsTrained</c> and <c>device</c> (TorchSharp detector) or <c>executionProvider</c> (ONNX
/// scorer), and the queue's length and capacity. Otherwise the registration's
/// failure status (unhealthy by default) with the reason. Registered by
/// <see cref="AnomalyDetectorServiceCollectionExtensions.AddAnomalyDetectorHealthCheck"/>.
/// </summary>
public sealed class AnomalyDetectorHealthCheck : IHealthCheck
{
    private readonly AnomalyDetectorProvider provider;
    private readonly BatchingAnomalyScorer scorer;

    /// <summary>Creates the check on the service's provider and scorer.</summary>
    public AnomalyDetectorHealthCheck(AnomalyDetectorProvider provider, BatchingAnomalyScorer scorer)
    {
        ArgumentNullException.ThrowIfNull(provider);
        ArgumentNullException.ThrowIfNull(scorer);
        this.provider = provider;
        this.scorer = scorer;
    }

    /// <inheritdoc />
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        var data = new Dictionary<string, object>
        {
            ["scorerRunning"] = scorer.IsRunning,
            ["queueLength"] = scorer.QueueLength,
            ["queueCapacity"] = scorer.QueueCapacity,
        };
        string? problem = null;
        try
        {
            using var lease = provider.Acquire();
            data["modelPath"] = lease.Model.Source ?? string.Empty;
            data["generation"] = lease.Model.Generation;
            data["loadedAt"] = lease.Model.LoadedAt;
            ScorerFacts.Report(lease.Scorer, data);
        }
        catch (Exception ex) when (ex is InvalidOperationException or ObjectDisposedException)
        {
            problem = "no anomaly detector is loaded";
        }

        if (!scorer.IsRunning)
        {
            problem = problem is null ? "the batching scorer is not running" : problem + " and the batching scorer is not running";
        }

        var result = problem is null
            ? HealthCheckResult.Healthy("A detector is loaded and the scorer is running.", data)
            : new HealthCheckResult(context.Registration.FailureStatus, char.ToUpperInvariant(problem[0]) + problem[1..] + ".", data: data);
        return Task.FromResult(result);
    }
}
