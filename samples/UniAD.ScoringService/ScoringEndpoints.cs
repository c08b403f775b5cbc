using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;
using UniAD.Core.Data;
using UniAD.Hosting;

namespace UniAD.ScoringService;

/// <summary>The JSON verdict of <c>POST /score</c>.</summary>
/// <param name="Source">The image's name: the multipart file name, the <c>name</c> query parameter, or <c>body</c>.</param>
/// <param name="Score">The raw image score.</param>
/// <param name="Normalized">The score mapped to [0, 1] with the threshold at 0.5 (null when the model is not calibrated).</param>
/// <param name="Anomalous">Whether the score reaches the threshold (null when the model is not calibrated).</param>
/// <param name="Width">The image's width in pixels (the map's too).</param>
/// <param name="Height">The image's height in pixels.</param>
/// <param name="MapMax">The largest value of the anomaly map (raw scale).</param>
/// <param name="AnomalousPixels">Pixels at or above the calibrated pixel threshold (null without one).</param>
/// <param name="ModelGeneration">Which model scored it (1, then one more per hot swap).</param>
/// <param name="Model">The model's file.</param>
public sealed record ScoreResponse(string? Source, double Score, double? Normalized, bool? Anomalous, int Width, int Height, float MapMax, int? AnomalousPixels, int ModelGeneration, string? Model)
{
    /// <summary>The response for a scored image.</summary>
    public static ScoreResponse From(ScoredImage scored)
    {
        ArgumentNullException.ThrowIfNull(scored);
        var r = scored.Result;
        return new ScoreResponse(r.Source, r.Score, r.NormalizedScore, r.IsAnomalous, r.Map.Width, r.Map.Height, r.Map.Max, r.Mask?.Count(m => m != 0), scored.Model.Generation, scored.Model.Source);
    }
}

/// <summary>The scoring service's registration and endpoints, shared by Program.cs and the HTTP tests.</summary>
public static class ScoringEndpoints
{
    /// <summary>Room for multipart boundaries and headers above <see cref="AnomalyDetectorServiceOptions.MaxImageBytes"/> in the request body limit.</summary>
    public const long MultipartOverheadBytes = 64 * 1024;

    /// <summary>The configuration key that chooses the runtime: <c>UniAD:Runtime</c>.</summary>
    public const string RuntimeKey = AnomalyDetectorServiceOptions.SectionName + ":Runtime";

    /// <summary>
    /// The runtime the configuration asks for: <c>UniAD:Runtime</c> (<c>torch</c> or <c>onnx</c>, any case), or, when it
    /// is not set, <c>onnx</c> for a <c>UniAD:ModelPath</c> ending with <c>.onnx</c> and <c>torch</c> otherwise.
    /// </summary>
    /// <exception cref="InvalidOperationException"><c>UniAD:Runtime</c> is another value.</exception>
    public static string Runtime(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var runtime = configuration[RuntimeKey];
        if (string.IsNullOrWhiteSpace(runtime))
        {
            var model = configuration[$"{AnomalyDetectorServiceOptions.SectionName}:{nameof(AnomalyDetectorServiceOptions.ModelPath)}"];
            return model?.Trim().EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) == true ? "onnx" : "torch";
        }

        return runtime.Trim().ToLowerInvariant() switch
        {
            "torch" => "torch",
            "onnx" => "onnx",
            _ => throw new InvalidOperationException($"{RuntimeKey} must be 'torch' (a .safetensors checkpoint on libtorch) or 'onnx' (an exported .onnx file on ONNX Runtime); got '{runtime}'."),
        };
    }

    /// <summary>
    /// Registers the hosted model from the configuration section <c>UniAD</c> (<see cref="AnomalyDetectorServiceOptions"/>,
    /// and <see cref="OnnxScorerServiceOptions"/> from <c>UniAD:Onnx</c>; validated at start) on the runtime of
    /// <see cref="Runtime"/>, its health check and problem details.
    /// </summary>
    /// <exception cref="InvalidOperationException"><c>UniAD:Runtime</c> is not <c>torch</c> nor <c>onnx</c>, or is <c>torch</c> in a build without libtorch.</exception>
    public static IServiceCollection AddScoringService(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var section = configuration.GetSection(AnomalyDetectorServiceOptions.SectionName);
        if (Runtime(configuration) == "onnx")
        {
            services.AddOnnxAnomalyScorer(section);
        }
        else
        {
#if UNIAD_ONNX_ONLY
            throw new InvalidOperationException($"This build of the service ships ONNX Runtime only (UniADScoringRuntime=onnx), no libtorch: set UniAD:ModelPath to an .onnx file written by AnomalyDetector.ExportOnnx (or {RuntimeKey}=onnx), or build with UniADScoringRuntime=torch to score a .safetensors checkpoint.");
#else
            services.AddAnomalyDetector(section);
#endif
        }

        services.AddHealthChecks().AddAnomalyDetectorHealthCheck();
        services.AddProblemDetails();
        return services;
    }

    /// <summary>
    /// Maps <c>POST /score</c> (raw image body or multipart file; JSON verdict, or the PNG heat map with <c>?heatmap=true</c> or
    /// <c>Accept: image/png</c>) and <c>GET /health</c> (JSON; 200 healthy, 503 unhealthy).
    /// </summary>
    public static IEndpointRouteBuilder MapScoringEndpoints(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        endpoints.MapPost("/score", ScoreAsync);
        endpoints.MapHealthChecks("/health", new HealthCheckOptions { ResponseWriter = WriteHealthAsync });
        return endpoints;
    }

    private static async Task<IResult> ScoreAsync(HttpContext context, IAnomalyScorer scorer, IOptions<AnomalyDetectorServiceOptions> options)
    {
        var request = context.Request;
        var cancellationToken = context.RequestAborted;
        long limit = options.Value.MaxImageBytes;
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } bodySize)
        {
            bodySize.MaxRequestBodySize = limit + MultipartOverheadBytes; // Kestrel then refuses larger bodies itself
        }

        byte[] image;
        string name;
        try
        {
            if (request.HasFormContentType)
            {
                var form = await request.ReadFormAsync(cancellationToken);
                var file = form.Files.GetFile("image") ?? form.Files.FirstOrDefault();
                if (file is null)
                {
                    return Problem(StatusCodes.Status400BadRequest, "No image in the form", "The multipart form has no file part; send the image as the file 'image'.", "no_image");
                }

                if (file.Length > limit)
                {
                    return TooLarge(file.FileName, file.Length, limit);
                }

                name = string.IsNullOrEmpty(file.FileName) ? file.Name : file.FileName;
                image = new byte[file.Length];
                await using var stream = file.OpenReadStream();
                await stream.ReadExactlyAsync(image, cancellationToken);
            }
            else if (IsImageContent(request.ContentType))
            {
                name = request.Query["name"] is { Count: > 0 } n && !string.IsNullOrEmpty(n[0]) ? n[0]! : "body";
                if (request.ContentLength is long length && length > limit)
                {
                    return TooLarge(name, length, limit);
                }

                var body = await ReadBodyAsync(request.Body, limit, cancellationToken);
                if (body is null)
                {
                    return TooLarge(name, limit + 1, limit);
                }

                image = body;
            }
            else
            {
                return Problem(StatusCodes.Status415UnsupportedMediaType, "Unsupported media type", $"Send the image as the raw body (Content-Type image/png, image/jpeg, image/bmp or application/octet-stream) or as a multipart/form-data file; got '{request.ContentType}'.", "unsupported_media_type");
            }
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return TooLarge("body", limit + 1, limit);
        }
        catch (InvalidDataException ex)
        {
            // The form reader's own limits (multipart section or body length).
            return Problem(StatusCodes.Status413PayloadTooLarge, "Image too large", ex.Message, "too_large");
        }

        try
        {
            using var scored = await scorer.ScoreImageAsync(image, name, cancellationToken); // disposing gives its decoded memory back
            if (WantsHeatmap(request))
            {
                var headers = context.Response.Headers;
                headers["X-UniAD-Score"] = scored.Result.Score.ToString("R", CultureInfo.InvariantCulture);
                if (scored.Result.IsAnomalous is { } anomalous)
                {
                    headers["X-UniAD-Anomalous"] = anomalous ? "true" : "false";
                }

                return Results.File(scored.RenderHeatmapPng(), "image/png");
            }

            return Results.Ok(ScoreResponse.From(scored));
        }
        catch (ImageFileException ex)
        {
            return Problem(StatusCodes.Status400BadRequest, "The image could not be decoded", ex.Reason, "bad_image", ex.FilePath);
        }
        catch (ImageTooLargeException ex) when (ex.Setting == nameof(AnomalyDetectorServiceOptions.MaxImageBytes))
        {
            return TooLarge(ex.Name, ex.Length, ex.Limit);
        }
        catch (ImageTooLargeException ex)
        {
            return Problem(StatusCodes.Status413PayloadTooLarge, "Image too large", ex.Message, "too_large", ex.Name);
        }
        catch (ScorerUnavailableException ex)
        {
            context.Response.Headers.RetryAfter = "1";
            var (title, error) = ex switch
            {
                ScoringQueueFullException => ("Scoring queue full", "queue_full"),
                ScoringMemoryBusyException => ("Scoring memory busy", "memory_busy"),
                _ => ("Scorer unavailable", "unavailable"),
            };
            return Problem(StatusCodes.Status503ServiceUnavailable, title, ex.Message, error);
        }
    }

    private static IResult TooLarge(string? name, long length, long limit) =>
        Problem(StatusCodes.Status413PayloadTooLarge, "Image too large", $"'{name ?? "image"}' has {length} bytes{(length == limit + 1 ? " or more" : string.Empty)}; the limit is {limit} bytes (UniAD:MaxImageBytes).", "too_large", name);

    private static IResult Problem(int status, string title, string detail, string error, string? source = null) =>
        Results.Problem(detail, statusCode: status, title: title, extensions: new Dictionary<string, object?> { ["error"] = error, ["source"] = source });

    private static bool IsImageContent(string? contentType) =>
        contentType is not null && MediaTypeHeaderValue.TryParse(contentType, out var media) &&
        (media.MediaType.StartsWith("image/", StringComparison.OrdinalIgnoreCase) || media.MediaType.Equals("application/octet-stream", StringComparison.OrdinalIgnoreCase));

    /// <summary><c>?heatmap=true</c>, or an Accept header that ranks image/png above application/json.</summary>
    private static bool WantsHeatmap(HttpRequest request)
    {
        if (request.Query["heatmap"] is { Count: > 0 } q)
        {
            return bool.TryParse(q[0], out bool on) ? on : q[0] == "1";
        }

        var accept = request.GetTypedHeaders().Accept;
        double png = -1, json = -1;
        foreach (var media in accept)
        {
            double quality = media.Quality ?? 1;
            if (media.MediaType.Equals("image/png", StringComparison.OrdinalIgnoreCase))
            {
                png = Math.Max(png, quality);
            }
            else if (media.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase) || media.MediaType.Equals("*/*", StringComparison.Ordinal))
            {
                json = Math.Max(json, quality);
            }
        }

        return png > 0 && png > json;
    }

    /// <summary>The body, or null when it holds more than <paramref name="limit"/> bytes (read no further).</summary>
    private static async Task<byte[]?> ReadBodyAsync(Stream body, long limit, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int read;
        while ((read = await body.ReadAsync(chunk, cancellationToken)) > 0)
        {
            if (buffer.Length + read > limit)
            {
                return null;
            }

            buffer.Write(chunk, 0, read);
        }

        return buffer.ToArray();
    }

    private static Task WriteHealthAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json; charset=utf-8";
        var body = new
        {
            status = report.Status.ToString(),
            durationMs = report.TotalDuration.TotalMilliseconds,
            checks = report.Entries.ToDictionary(
                e => e.Key,
                e => new { status = e.Value.Status.ToString(), description = e.Value.Description, data = e.Value.Data }),
        };
        return context.Response.WriteAsync(JsonSerializer.Serialize(body, JsonOptions), context.RequestAborted);
    }

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web);
}
