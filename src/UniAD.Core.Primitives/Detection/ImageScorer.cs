using System.Globalization;
using SkiaSharp;
using UniAD.Core.Data;

namespace UniAD.Core.Detection;

/// <summary>
/// The scoring entry points shared by both runtimes: UniAD.Core's <c>AnomalyDetector</c> (libtorch) and UniAD.Onnx's
/// <c>OnnxAnomalyScorer</c> (ONNX Runtime) derive from it, so files, streams, bytes, bitmaps and decoded images are read,
/// batched, cancelled and reported identically by both; only the network differs. Not meant to be derived from
/// elsewhere (its one abstract member is internal).
/// </summary>
/// <remarks>
/// Errors: a missing file is a <see cref="FileNotFoundException"/>, an undecodable one an <see cref="ImageFileException"/>
/// naming it (in a batch, the first failing file in input order, as itself, never wrapped); a model with per-class
/// reference maps needs the images' class (<see cref="ArgumentException"/> when it is missing or unknown); a model that
/// produces a non-finite map is an <see cref="InvalidDataException"/>.
/// </remarks>
public abstract class ImageScorer : IImageScorer
{
    /// <summary>Only the library's runtimes derive from this class.</summary>
    private protected ImageScorer()
    {
    }

    /// <summary>
    /// An untiled scorer resizes every image to its input size. When an image's aspect ratio differs from the input's by
    /// more than this factor (4: a 1 x 5000 strip scored at 224 x 224, say), it warns that the image is stretched (the
    /// detector in its log, the ONNX scorer through <c>OnnxScorerOptions.OnWarning</c>): tile such parts or crop them.
    /// </summary>
    public const double MaxUntiledStretch = 4.0;

    /// <summary>Images with more pixels are refused before decoding (decompression bombs).</summary>
    private protected abstract long MaxImagePixels { get; }

    /// <summary>Passes <paramref name="warn"/> one warning per image that an untiled scorer of input <paramref name="input"/> stretches beyond <see cref="MaxUntiledStretch"/>.</summary>
    private protected static void WarnStretched(IReadOnlyList<(RgbImage Image, string? Name)> images, GridSize input, Action<string> warn)
    {
        foreach (var (image, name) in images)
        {
            if (StretchWarning(name, image.Width, image.Height, input) is { } stretched)
            {
                warn(stretched);
            }
        }
    }

    /// <summary>The warning for an image stretched beyond <see cref="MaxUntiledStretch"/> by an untiled scorer, or null.</summary>
    private static string? StretchWarning(string? name, int width, int height, GridSize input)
    {
        double stretch = (width / (double)height) / (input.Width / (double)input.Height);
        stretch = Math.Max(stretch, 1 / stretch);
        return stretch <= MaxUntiledStretch ? null : string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"'{name ?? "image"}' ({width} x {height}) is stretched to the model's {input.Width} x {input.Height} input: its aspect ratio differs by a factor of {stretch:G3}, more than {MaxUntiledStretch}. Tile such parts (DetectorOptions.Tiling) or crop them.");
    }

    /// <summary>Scores an image file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ImageFileException">The file is empty, corrupt, truncated, of an unsupported format or too large.</exception>
    /// <exception cref="InvalidDataException">The model produced a non-finite map (its weights hold NaN or infinity).</exception>
    /// <exception cref="ArgumentException">The model has per-class reference maps and <paramref name="className"/> is null or unknown.</exception>
    /// <param name="imagePath">The image file.</param>
    /// <param name="className">The image's class: needed when the model has per-class reference maps, ignored otherwise.</param>
    public AnomalyResult Score(string imagePath, string? className = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(imagePath);
        return ScoreDecoded(new[] { (ImageDecoder.Decode(imagePath, MaxImagePixels), (string?)imagePath) }, className)[0];
    }

    /// <summary>Scores an encoded image (PNG, JPEG, BMP) read from a stream (synchronously; <see cref="ScoreAsync(Stream, string?, string?, CancellationToken)"/> reads asynchronously).</summary>
    /// <exception cref="ImageFileException">The data is not a decodable image.</exception>
    /// <param name="stream">The encoded image.</param>
    /// <param name="name">A name for messages and the result's source.</param>
    /// <param name="className">The image's class: needed when the model has per-class reference maps, ignored otherwise.</param>
    public AnomalyResult Score(Stream stream, string? name = null, string? className = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var image = ImageDecoder.Decode(ScoringSteps.Copy(stream), name ?? "stream", MaxImagePixels);
        return ScoreDecoded(new[] { (image, name) }, className)[0];
    }

    /// <summary>Scores an encoded image (PNG, JPEG, BMP) held in memory.</summary>
    /// <exception cref="ImageFileException">The data is not a decodable image.</exception>
    /// <param name="encoded">The file's bytes.</param>
    /// <param name="name">A name for messages and the result's source.</param>
    /// <param name="className">The image's class: needed when the model has per-class reference maps, ignored otherwise.</param>
    public AnomalyResult Score(byte[] encoded, string? name = null, string? className = null)
    {
        ArgumentNullException.ThrowIfNull(encoded);
        return ScoreDecoded(new[] { (ImageDecoder.Decode(encoded, name ?? "bytes", MaxImagePixels), name) }, className)[0];
    }

    /// <summary>Scores a decoded SkiaSharp bitmap (any colour type; alpha is dropped).</summary>
    /// <param name="bitmap">The image.</param>
    /// <param name="name">A name for the result's source.</param>
    /// <param name="className">The image's class: needed when the model has per-class reference maps, ignored otherwise.</param>
    public AnomalyResult Score(SKBitmap bitmap, string? name = null, string? className = null) => Score(ScoringSteps.ToRgb(bitmap), name, className);

    /// <summary>Scores a decoded RGB image.</summary>
    /// <param name="image">The image.</param>
    /// <param name="name">A name for the result's source.</param>
    /// <param name="className">The image's class: needed when the model has per-class reference maps, ignored otherwise.</param>
    public AnomalyResult Score(RgbImage image, string? name = null, string? className = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        return ScoreDecoded(new[] { (image, name) }, className)[0];
    }

    /// <summary>
    /// Scores decoded images together: untiled in one forward pass, tiled one image after another with their tiles 8 at a
    /// time; the results keep the input order and equal <see cref="Score(RgbImage, string?, string?)"/> of each image to
    /// float precision. For services that gather requests into batches (UniAD.Hosting's batching scorer).
    /// </summary>
    /// <exception cref="ArgumentException">No image, or the number of names differs from the number of images.</exception>
    /// <exception cref="InvalidDataException">The model produced a non-finite map (its weights hold NaN or infinity).</exception>
    /// <param name="images">The decoded images.</param>
    /// <param name="names">Names for the results' sources, or null.</param>
    /// <param name="className">The images' class: needed when the model has per-class reference maps.</param>
    public IReadOnlyList<AnomalyResult> ScoreBatch(IReadOnlyList<RgbImage> images, IReadOnlyList<string?>? names = null, string? className = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count == 0 || (names is not null && names.Count != images.Count))
        {
            throw new ArgumentException($"Expected at least one image and as many names; got {images.Count} images and {names?.Count.ToString(CultureInfo.InvariantCulture) ?? "no"} names.", nameof(images));
        }

        var items = new (RgbImage, string?)[images.Count];
        for (int i = 0; i < items.Length; i++)
        {
            items[i] = (images[i] ?? throw new ArgumentException($"Image {i} is null.", nameof(images)), names?[i]);
        }

        return ScoreDecoded(items, className);
    }

    /// <summary>Scores many image files, <paramref name="batchSize"/> at a time; the results keep the input order.</summary>
    /// <exception cref="FileNotFoundException">A file does not exist (the first such file in input order, not wrapped).</exception>
    /// <exception cref="ImageFileException">A file is empty, corrupt, truncated, of an unsupported format or too large (the first such file in input order, not wrapped).</exception>
    /// <param name="imagePaths">The files.</param>
    /// <param name="batchSize">Images per forward pass.</param>
    /// <param name="className">The images' class: needed when the model has per-class reference maps.</param>
    /// <param name="cancellationToken">Cancels between batches.</param>
    public IReadOnlyList<AnomalyResult> ScoreBatch(IEnumerable<string> imagePaths, int batchSize = 8, string? className = null, CancellationToken cancellationToken = default) =>
        ScoreStream(imagePaths, batchSize, className, cancellationToken).ToList();

    /// <summary>
    /// Scores image files lazily, <paramref name="batchSize"/> at a time, yielding each result as its batch completes.
    /// Memory stays flat however many images are scored. A file that cannot be read stops the enumeration with its
    /// own exception (the results of earlier batches have been yielded); to go on past bad files, score each file
    /// with <see cref="Score(string, string?)"/> and catch <see cref="IOException"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The batch size is not positive.</exception>
    /// <exception cref="FileNotFoundException">A file does not exist.</exception>
    /// <exception cref="ImageFileException">A file is empty, corrupt, truncated, of an unsupported format or too large.</exception>
    /// <param name="imagePaths">The files.</param>
    /// <param name="batchSize">Images per forward pass.</param>
    /// <param name="className">The images' class: needed when the model has per-class reference maps.</param>
    /// <param name="cancellationToken">Cancels between batches.</param>
    public IEnumerable<AnomalyResult> ScoreStream(IEnumerable<string> imagePaths, int batchSize = 8, string? className = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(imagePaths);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        return ScoringSteps.Batched(imagePaths, batchSize, paths => ScoreDecoded(ScoringSteps.DecodeFiles(paths, MaxImagePixels, cancellationToken), className));
    }

    /// <summary>
    /// Scores an image file: read asynchronously, decoded and scored on the thread pool. Cancellation is observed
    /// before decoding and before the network runs (a forward pass in progress completes).
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ImageFileException">The file is empty, corrupt, truncated, of an unsupported format or too large.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <param name="imagePath">The file.</param>
    /// <param name="className">The image's class: needed when the model has per-class reference maps.</param>
    /// <param name="cancellationToken">Cancels the read, and before decoding and before the network runs.</param>
    public async Task<AnomalyResult> ScoreAsync(string imagePath, string? className = null, CancellationToken cancellationToken = default)
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
    /// <param name="className">The image's class: needed when the model has per-class reference maps.</param>
    /// <param name="cancellationToken">Cancels the copy, and before decoding and before the network runs.</param>
    public async Task<AnomalyResult> ScoreAsync(Stream stream, string? name = null, string? className = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var bytes = await ScoringSteps.CopyAsync(stream, cancellationToken).ConfigureAwait(false);
        return await ScoreEncodedAsync(bytes, name ?? "stream", name, className, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Scores an encoded image (PNG, JPEG, BMP) held in memory, on the thread pool.</summary>
    /// <exception cref="ImageFileException">The data is not a decodable image.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <param name="encoded">The file's bytes.</param>
    /// <param name="name">A name for messages and the result's source.</param>
    /// <param name="className">The image's class: needed when the model has per-class reference maps.</param>
    /// <param name="cancellationToken">Cancels before decoding and before the network runs.</param>
    public Task<AnomalyResult> ScoreAsync(byte[] encoded, string? name = null, string? className = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(encoded);
        return ScoreEncodedAsync(encoded, name ?? "bytes", name, className, cancellationToken);
    }

    /// <summary>Scores a decoded SkiaSharp bitmap on the thread pool.</summary>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <param name="bitmap">The image (copied before the call returns).</param>
    /// <param name="name">A name for the result's source.</param>
    /// <param name="className">The image's class: needed when the model has per-class reference maps.</param>
    /// <param name="cancellationToken">Cancels before the network runs.</param>
    public Task<AnomalyResult> ScoreAsync(SKBitmap bitmap, string? name = null, string? className = null, CancellationToken cancellationToken = default)
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
    /// <param name="className">The images' class: needed when the model has per-class reference maps.</param>
    /// <param name="cancellationToken">Cancels between files and batches.</param>
    public IAsyncEnumerable<AnomalyResult> ScoreManyAsync(IEnumerable<string> imagePaths, int batchSize = 8, string? className = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(imagePaths);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        return ScoringSteps.BatchedAsync(
            imagePaths,
            batchSize,
            (paths, ct) => ScoringSteps.ScoreFilesAsync(paths, MaxImagePixels, images => ScoreDecoded(images, className), ct),
            cancellationToken);
    }

    /// <summary>
    /// The runtime's scoring of decoded images (all of one class): untiled in one pass, tiled image by image; results in
    /// input order, maps at each image's own size.
    /// </summary>
    private protected abstract IReadOnlyList<AnomalyResult> ScoreDecoded(IReadOnlyList<(RgbImage Image, string? Name)> images, string? className);

    private Task<AnomalyResult> ScoreEncodedAsync(byte[] encoded, string messageName, string? name, string? className, CancellationToken cancellationToken) =>
        ScoringSteps.ScoreEncodedAsync(encoded, messageName, name, MaxImagePixels, images => ScoreDecoded(images, className), cancellationToken);
}
