using SkiaSharp;
using UniAD.Core.Data;

namespace UniAD.Core.Detection;

/// <summary>
/// The scoring contract both runtimes share: UniAD.Core's <c>AnomalyDetector</c> (libtorch) and UniAD.Onnx's
/// <c>OnnxAnomalyScorer</c> (ONNX Runtime) implement it through <see cref="ImageScorer"/>. Write inspection code against
/// this interface and it runs on either runtime; in its unit tests, fake it (a mocking library such as NSubstitute or
/// Moq, or a class of your own) or use the small real detector of <c>TestDetectors.Tiny()</c>, which needs no weights,
/// data or GPU.
/// </summary>
/// <remarks>
/// The library's implementations report errors as documented on <see cref="ImageScorer"/>: a missing file is a
/// <see cref="FileNotFoundException"/>, an undecodable one an <see cref="ImageFileException"/>, a model that produces a
/// non-finite map an <see cref="InvalidDataException"/>, a missing or unknown class where the model needs one an
/// <see cref="ArgumentException"/>. The class name is only needed by models with per-class reference maps.
/// </remarks>
public interface IImageScorer
{
    /// <summary>Scores an image file.</summary>
    /// <param name="imagePath">The file (PNG, JPEG, BMP).</param>
    /// <param name="className">The image's class, or null.</param>
    /// <returns>The score, the verdict when calibrated, and the map at the image's size.</returns>
    AnomalyResult Score(string imagePath, string? className = null);

    /// <summary>Scores an encoded image read synchronously from a stream.</summary>
    /// <param name="stream">The encoded image.</param>
    /// <param name="name">A name for messages and the result's source.</param>
    /// <param name="className">The image's class, or null.</param>
    /// <returns>The result.</returns>
    AnomalyResult Score(Stream stream, string? name = null, string? className = null);

    /// <summary>Scores an encoded image held in memory.</summary>
    /// <param name="encoded">The file's bytes.</param>
    /// <param name="name">A name for messages and the result's source.</param>
    /// <param name="className">The image's class, or null.</param>
    /// <returns>The result.</returns>
    AnomalyResult Score(byte[] encoded, string? name = null, string? className = null);

    /// <summary>Scores a decoded SkiaSharp bitmap.</summary>
    /// <param name="bitmap">The image.</param>
    /// <param name="name">A name for the result's source.</param>
    /// <param name="className">The image's class, or null.</param>
    /// <returns>The result.</returns>
    AnomalyResult Score(SKBitmap bitmap, string? name = null, string? className = null);

    /// <summary>Scores a decoded RGB image.</summary>
    /// <param name="image">The image.</param>
    /// <param name="name">A name for the result's source.</param>
    /// <param name="className">The image's class, or null.</param>
    /// <returns>The result.</returns>
    AnomalyResult Score(RgbImage image, string? name = null, string? className = null);

    /// <summary>Scores decoded images together; the results keep the input order.</summary>
    /// <param name="images">The images.</param>
    /// <param name="names">Names for the results' sources, or null.</param>
    /// <param name="className">The images' class, or null.</param>
    /// <returns>One result per image.</returns>
    IReadOnlyList<AnomalyResult> ScoreBatch(IReadOnlyList<RgbImage> images, IReadOnlyList<string?>? names = null, string? className = null);

    /// <summary>Scores image files <paramref name="batchSize"/> at a time; the results keep the input order.</summary>
    /// <param name="imagePaths">The files.</param>
    /// <param name="batchSize">Images per forward pass.</param>
    /// <param name="className">The images' class, or null.</param>
    /// <param name="cancellationToken">Cancels between batches.</param>
    /// <returns>One result per file.</returns>
    IReadOnlyList<AnomalyResult> ScoreBatch(IEnumerable<string> imagePaths, int batchSize = 8, string? className = null, CancellationToken cancellationToken = default);

    /// <summary>Scores image files lazily, yielding each result as its batch completes (flat memory).</summary>
    /// <param name="imagePaths">The files.</param>
    /// <param name="batchSize">Images per forward pass.</param>
    /// <param name="className">The images' class, or null.</param>
    /// <param name="cancellationToken">Cancels between batches.</param>
    /// <returns>The results in input order.</returns>
    IEnumerable<AnomalyResult> ScoreStream(IEnumerable<string> imagePaths, int batchSize = 8, string? className = null, CancellationToken cancellationToken = default);

    /// <summary>Scores an image file read asynchronously.</summary>
    /// <param name="imagePath">The file.</param>
    /// <param name="className">The image's class, or null.</param>
    /// <param name="cancellationToken">Cancels the read, and before decoding and before the network runs.</param>
    /// <returns>The result.</returns>
    Task<AnomalyResult> ScoreAsync(string imagePath, string? className = null, CancellationToken cancellationToken = default);

    /// <summary>Scores an encoded image read asynchronously from a stream.</summary>
    /// <param name="stream">The encoded image.</param>
    /// <param name="name">A name for messages and the result's source.</param>
    /// <param name="className">The image's class, or null.</param>
    /// <param name="cancellationToken">Cancels the copy, and before decoding and before the network runs.</param>
    /// <returns>The result.</returns>
    Task<AnomalyResult> ScoreAsync(Stream stream, string? name = null, string? className = null, CancellationToken cancellationToken = default);

    /// <summary>Scores an encoded image held in memory, on the thread pool.</summary>
    /// <param name="encoded">The file's bytes.</param>
    /// <param name="name">A name for messages and the result's source.</param>
    /// <param name="className">The image's class, or null.</param>
    /// <param name="cancellationToken">Cancels before decoding and before the network runs.</param>
    /// <returns>The result.</returns>
    Task<AnomalyResult> ScoreAsync(byte[] encoded, string? name = null, string? className = null, CancellationToken cancellationToken = default);

    /// <summary>Scores a decoded SkiaSharp bitmap on the thread pool.</summary>
    /// <param name="bitmap">The image (copied before the call returns).</param>
    /// <param name="name">A name for the result's source.</param>
    /// <param name="className">The image's class, or null.</param>
    /// <param name="cancellationToken">Cancels before the network runs.</param>
    /// <returns>The result.</returns>
    Task<AnomalyResult> ScoreAsync(SKBitmap bitmap, string? name = null, string? className = null, CancellationToken cancellationToken = default);

    /// <summary>Scores image files asynchronously, yielding each result as its batch completes, in input order.</summary>
    /// <param name="imagePaths">The files.</param>
    /// <param name="batchSize">Images per forward pass.</param>
    /// <param name="className">The images' class, or null.</param>
    /// <param name="cancellationToken">Cancels between files and batches.</param>
    /// <returns>The results.</returns>
    IAsyncEnumerable<AnomalyResult> ScoreManyAsync(IEnumerable<string> imagePaths, int batchSize = 8, string? className = null, CancellationToken cancellationToken = default);
}
