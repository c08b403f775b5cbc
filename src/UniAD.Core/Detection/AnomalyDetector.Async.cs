using SkiaSharp;
using UniAD.Core.Data;

namespace UniAD.Core.Detection;

/// <summary>Asynchronous scoring, for services: files and streams are read asynchronously, the network runs on the thread pool.</summary>
public sealed partial class AnomalyDetector
{
    /// <summary>
    /// Scores an image file: read asynchronously, decoded and scored on the thread pool. Cancellation is observed
    /// before decoding and before the network runs (a forward pass in progress completes).
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ImageFileException">The file is empty, corrupt, truncated, of an unsupported format or too large.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <param name="imagePath">The file.</param>
    /// <param name="cancellationToken">Cancels before decoding and before the network runs.</param>
    /// <param name="className">The image's class: needed when the detector has <see cref="ReferenceMaps"/>.</param>
    public async Task<AnomalyResult> ScoreAsync(string imagePath, CancellationToken cancellationToken = default, string? className = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(imagePath);
        var bytes = await ScoringSteps.ReadFileAsync(imagePath, cancellationToken).ConfigureAwait(false);
        return await ScoreEncodedAsync(bytes, imagePath, imagePath, className, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Scores an encoded image (PNG, JPEG, BMP) read asynchronously from a stream (no synchronous copy).</summary>
    /// <exception cref="ImageFileException">The data is not a decodable image.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <param name="stream">The encoded image.</param>
    /// <param name="name">A name for messages and the result's source.</param>
    /// <param name="cancellationToken">Cancels the copy, and before decoding and before the network runs.</param>
    /// <param name="className">The image's class: needed when the detector has <see cref="ReferenceMaps"/>.</param>
    public async Task<AnomalyResult> ScoreAsync(Stream stream, string? name = null, CancellationToken cancellationToken = default, string? className = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var bytes = await ScoringSteps.CopyAsync(stream, cancellationToken).ConfigureAwait(false);
        return await ScoreEncodedAsync(bytes, name ?? "stream", name, className, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Scores an encoded image (PNG, JPEG, BMP) held in memory.</summary>
    /// <exception cref="ImageFileException">The data is not a decodable image.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <param name="encoded">The file's bytes.</param>
    /// <param name="name">A name for messages and the result's source.</param>
    /// <param name="cancellationToken">Cancels before decoding and before the network runs.</param>
    /// <param name="className">The image's class: needed when the detector has <see cref="ReferenceMaps"/>.</param>
    public Task<AnomalyResult> ScoreAsync(byte[] encoded, string? name = null, CancellationToken cancellationToken = default, string? className = null)
    {
        ArgumentNullException.ThrowIfNull(encoded);
        return ScoreEncodedAsync(encoded, name ?? "bytes", name, className, cancellationToken);
    }

    /// <summary>Scores a decoded SkiaSharp bitmap on the thread pool.</summary>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <param name="bitmap">The image (copied before the call returns).</param>
    /// <param name="name">A name for the result's source.</param>
    /// <param name="cancellationToken">Cancels before the network runs.</param>
    /// <param name="className">The image's class: needed when the detector has <see cref="ReferenceMaps"/>.</param>
    public Task<AnomalyResult> ScoreAsync(SKBitmap bitmap, string? name = null, CancellationToken cancellationToken = default, string? className = null)
    {
        ArgumentNullException.ThrowIfNull(bitmap);
        var image = ScoringSteps.ToRgb(bitmap); // copied now: the caller may dispose the bitmap once the task is started
        return Task.Run(
            () =>
            {
                cancellationToken.ThrowIfCancellationRequested();
                return Score(image, name, className);
            },
            cancellationToken);
    }

    /// <summary>Scores an encoded image (PNG, JPEG, BMP) held in memory, synchronously.</summary>
    /// <exception cref="ImageFileException">The data is not a decodable image.</exception>
    /// <param name="encoded">The file's bytes.</param>
    /// <param name="name">A name for messages and the result's source.</param>
    /// <param name="className">The image's class: needed when the detector has <see cref="ReferenceMaps"/>.</param>
    public AnomalyResult Score(byte[] encoded, string? name = null, string? className = null)
    {
        ArgumentNullException.ThrowIfNull(encoded);
        return ScoreImages(new[] { (ImageDecoder.Decode(encoded, name ?? "bytes", Preprocess.MaxImagePixels), name) }, className)[0];
    }

    /// <summary>
    /// Scores image files <paramref name="batchSize"/> at a time and yields each result as its batch completes, in
    /// input order; files are read asynchronously while the network runs on the thread pool. Memory stays flat.
    /// A file that cannot be read stops the enumeration with its own exception (earlier results were yielded).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The batch size is not positive.</exception>
    /// <exception cref="FileNotFoundException">A file does not exist.</exception>
    /// <exception cref="ImageFileException">A file is empty, corrupt, truncated, of an unsupported format or too large.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled (between batches or files).</exception>
    /// <param name="imagePaths">The files.</param>
    /// <param name="batchSize">Images per forward pass.</param>
    /// <param name="cancellationToken">Cancels between files and batches.</param>
    /// <param name="className">The images' class: needed when the detector has <see cref="ReferenceMaps"/>.</param>
    public IAsyncEnumerable<AnomalyResult> ScoreManyAsync(IEnumerable<string> imagePaths, int batchSize = 8, CancellationToken cancellationToken = default, string? className = null)
    {
        ArgumentNullException.ThrowIfNull(imagePaths);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        return ScoringSteps.BatchedAsync(
            imagePaths,
            batchSize,
            (paths, ct) => ScoringSteps.ScoreFilesAsync(paths, Preprocess.MaxImagePixels, images => ScoreImages(images, className), ct),
            cancellationToken);
    }

    private Task<AnomalyResult> ScoreEncodedAsync(byte[] encoded, string messageName, string? name, string? className, CancellationToken cancellationToken) =>
        ScoringSteps.ScoreEncodedAsync(encoded, messageName, name, Preprocess.MaxImagePixels, images => ScoreImages(images, className), cancellationToken);
}
