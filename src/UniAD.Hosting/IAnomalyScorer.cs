using UniAD.Core.Data;
using UniAD.Core.Detection;

namespace UniAD.Hosting;

/// <summary>
/// Scores encoded images (PNG, JPEG, BMP) for a service. The registered implementation, <see cref="BatchingAnomalyScorer"/>,
/// gathers concurrent requests into batches on a bounded queue; each caller gets its own result or its own exception.
/// </summary>
public interface IAnomalyScorer
{
    /// <summary>Scores one encoded image.</summary>
    /// <param name="image">The encoded bytes (not copied: do not change them until the task completes).</param>
    /// <param name="name">A name for the result's <see cref="AnomalyResult.Source"/> and for error messages, or null.</param>
    /// <param name="cancellationToken">Cancels this request only (a batch it was gathered into goes on for the others).</param>
    /// <exception cref="ImageFileException">The bytes are not a decodable image (empty, corrupt, truncated, unsupported or too many pixels).</exception>
    /// <exception cref="ImageTooLargeException">The bytes exceed <see cref="AnomalyDetectorServiceOptions.MaxImageBytes"/>, or decoded the image would exceed the whole <see cref="AnomalyDetectorServiceOptions.MaxDecodedBytes"/>.</exception>
    /// <exception cref="ScoringQueueFullException">The queue is full.</exception>
    /// <exception cref="ScoringMemoryBusyException">The decoded-memory budget has too little left for this image now.</exception>
    /// <exception cref="ScorerUnavailableException">The scorer is stopped or stopping.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled before the result came.</exception>
    Task<AnomalyResult> ScoreAsync(ReadOnlyMemory<byte> image, string? name = null, CancellationToken cancellationToken = default);

    /// <summary>As <see cref="ScoreAsync"/>, with the decoded image and the calibration used (for heat maps: <see cref="ScoredImage.RenderHeatmapPng"/>).</summary>
    /// <inheritdoc cref="ScoreAsync" path="/param"/>
    /// <inheritdoc cref="ScoreAsync" path="/exception"/>
    Task<ScoredImage> ScoreImageAsync(ReadOnlyMemory<byte> image, string? name = null, CancellationToken cancellationToken = default);
}

/// <summary>
/// A scored image: the verdict, the decoded image it was computed on, and what the detector that scored it knew. Dispose it
/// when done (after rendering a heat map): that gives its share of the scorer's decoded-memory budget
/// (<see cref="AnomalyDetectorServiceOptions.MaxDecodedBytes"/>) back; an undisposed one gives it back when finalised.
/// </summary>
/// <param name="Result">The verdict (map at the image's size).</param>
/// <param name="Image">The decoded image.</param>
/// <param name="Calibration">The scoring detector's calibration (heat-map range), or null when it was not calibrated.</param>
/// <param name="Model">The scoring detector's description (source, generation).</param>
public sealed record ScoredImage(AnomalyResult Result, RgbImage Image, Calibration? Calibration, AnomalyModelInfo Model) : IDisposable
{
    /// <summary>The share of the scorer's decoded-memory budget this result holds, or null.</summary>
    internal DecodedMemoryBudget.Reservation? Lease { get; init; }

    /// <summary>Gives the result's share of the decoded-memory budget back (idempotent).</summary>
    public void Dispose() => Lease?.Dispose();

    /// <summary>The heat-map overlay (<see cref="HeatmapRenderer.Overlay"/>) encoded as PNG, at the image's size.</summary>
    public byte[] RenderHeatmapPng(HeatmapOptions? options = null)
    {
        using var overlay = HeatmapRenderer.Overlay(Image, Result, Calibration, options);
        using var data = overlay.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100)
            ?? throw new InvalidOperationException($"SkiaSharp could not encode a {overlay.Width} x {overlay.Height} PNG.");
        return data.ToArray();
    }
}
