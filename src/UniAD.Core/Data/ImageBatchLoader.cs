using System.Runtime.ExceptionServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using static TorchSharp.torch;

namespace UniAD.Core.Data;

/// <summary>Options of <see cref="ImageBatchLoader"/>.</summary>
public sealed record LoaderOptions
{
    /// <summary>Images per batch (the last batch may be smaller unless <see cref="DropLast"/>).</summary>
    public int BatchSize { get; init; } = 8;

    /// <summary>Visit the samples in a new seeded random order every epoch.</summary>
    public bool Shuffle { get; init; }

    /// <summary>Seed of the shuffling and the augmentations (the reference's seed is 133).</summary>
    public long Seed { get; init; } = 133;

    /// <summary>Leave out a last batch smaller than <see cref="BatchSize"/>.</summary>
    public bool DropLast { get; init; }

    /// <summary>Images decoded at the same time; 0 means one per logical core.</summary>
    public int MaxDegreeOfParallelism { get; init; }

    /// <summary>Decode the next batch in the background while the current one is used.</summary>
    public bool Prefetch { get; init; } = true;

    /// <summary>Read the masks (off for training, which never needs them).</summary>
    public bool LoadMasks { get; init; } = true;

    /// <summary>Resize and normalisation.</summary>
    public PreprocessOptions Preprocess { get; init; } = new();

    /// <summary>Training augmentations (none by default).</summary>
    public AugmentationOptions Augmentation { get; init; } = AugmentationOptions.None;

    /// <summary>What to do with an image or mask that cannot be used (corrupt, truncated, too large, mismatched mask).</summary>
    public BadInputPolicy OnBadInput { get; init; } = BadInputPolicy.Throw;

    /// <summary>The parallelism actually used.</summary>
    internal int Parallelism => OptionCheck.Threads(MaxDegreeOfParallelism);

    /// <summary>Checks every value and throws an exception naming the first one that is impossible.</summary>
    /// <exception cref="ArgumentException">A value is out of range.</exception>
    public void Validate()
    {
        OptionCheck.Positive(BatchSize);
        OptionCheck.Parallelism(MaxDegreeOfParallelism);

        if (!Enum.IsDefined(OnBadInput))
        {
            throw new ArgumentException($"{nameof(OnBadInput)} = {OnBadInput} is not a known policy.", nameof(OnBadInput));
        }

        ArgumentNullException.ThrowIfNull(Preprocess, nameof(Preprocess));
        ArgumentNullException.ThrowIfNull(Augmentation, nameof(Augmentation));
        Preprocess.Validate();
        Augmentation.Validate(Preprocess.InputSize);
    }
}

/// <summary>What every batch carries besides its tensors: the samples, their labels, class names and paths. Dispose it when done.</summary>
public abstract class SampleBatch : IDisposable
{
    private protected SampleBatch(IReadOnlyList<ImageSample> samples)
    {
        Samples = samples;
        ClassNames = samples.Select(s => s.ClassName).ToList();
        Paths = samples.Select(s => s.ImagePath).ToList();
        Labels = tensor(samples.Select(s => (long)s.Label).ToArray(), new long[] { samples.Count }, device: CPU);
        Labels.DetachFromDisposeScope();
    }

    /// <summary>B labels (0 normal, 1 anomalous), int64.</summary>
    public Tensor Labels { get; }

    /// <summary>Each image's class name.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>Each image's path.</summary>
    public IReadOnlyList<string> Paths { get; }

    /// <summary>Each image's sample.</summary>
    public IReadOnlyList<ImageSample> Samples { get; }

    /// <summary>Images in the batch.</summary>
    public int Count => Samples.Count;

    /// <summary>Disposes the batch's tensors.</summary>
    public void Dispose()
    {
        DisposeTensors();
        Labels.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>Disposes the tensors the derived batch adds.</summary>
    private protected abstract void DisposeTensors();

    /// <summary>Takes a tensor out of any dispose scope of the caller's: the batch owns it.</summary>
    private protected static Tensor Own(Tensor t)
    {
        t.DetachFromDisposeScope();
        return t;
    }
}

/// <summary>
/// One batch of images: images B x 3 x H x W (normalised float32), masks B x 1 x H x W (0/1, or null when
/// masks are not loaded), labels B (int64), and each image's class name, path and sample. It owns its
/// tensors: dispose it when done.
/// </summary>
public sealed class ImageBatch : SampleBatch
{
    internal ImageBatch(Tensor images, Tensor? masks, IReadOnlyList<ImageSample> samples)
        : base(samples)
    {
        Images = Own(images);
        Masks = masks is null ? null : Own(masks);
        HasMask = samples.Select(s => masks is not null && s.HasPixelLabels).ToList();
    }

    /// <summary>
    /// Per image: whether its row of <see cref="Masks"/> is ground truth. False when masks are not loaded and for
    /// an anomalous image without a mask (<see cref="ImageSample.HasPixelLabels"/>), whose row is all zeros and
    /// must not be used: such an image has an image-level label only.
    /// </summary>
    public IReadOnlyList<bool> HasMask { get; }

    /// <summary>B x 3 x H x W normalised images.</summary>
    public Tensor Images { get; }

    /// <summary>B x 1 x H x W masks (1 = anomalous pixel), or null when the loader does not load masks; rows whose <see cref="HasMask"/> is false are not ground truth.</summary>
    public Tensor? Masks { get; }

    /// <summary>Deconstructs into (images, masks, labels, class names, paths).</summary>
    public void Deconstruct(out Tensor images, out Tensor? masks, out Tensor labels, out IReadOnlyList<string> classNames, out IReadOnlyList<string> paths)
    {
        images = Images;
        masks = Masks;
        labels = Labels;
        classNames = ClassNames;
        paths = Paths;
    }

    private protected override void DisposeTensors()
    {
        Images.Dispose();
        Masks?.Dispose();
    }
}

/// <summary>
/// Turns an <see cref="IImageSource"/> into batches: decodes and preprocesses images in parallel, shuffles
/// with a seed per epoch, applies the (seeded) augmentations, and decodes the next batch in the background
/// while the caller uses the current one. Bad images stop the epoch with an exception naming the file, or
/// (policy Skip) are left out, logged and listed in <see cref="Skipped"/>; batches are then filled up from
/// the following images, so only the last batch is ever short.
/// </summary>
public sealed class ImageBatchLoader
{
    private readonly ILogger logger;
    private readonly BadInput bad;
    private readonly HashSet<int> badSamples = new();
    private readonly float[][] lut;

    /// <summary>Creates a loader; nothing is read until <see cref="Batches"/> is enumerated.</summary>
    /// <exception cref="ArgumentException">An option is impossible (see <see cref="LoaderOptions.Validate"/>).</exception>
    public ImageBatchLoader(IImageSource source, LoaderOptions? options = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        Source = source;
        Options = options ?? new LoaderOptions();
        Options.Validate();
        this.logger = logger ?? NullLogger.Instance;
        bad = new BadInput(Options.OnBadInput, this.logger);
        lut = ImagePreprocessor.Lut(Options.Preprocess);
    }

    /// <summary>The images.</summary>
    public IImageSource Source { get; }

    /// <summary>The options.</summary>
    public LoaderOptions Options { get; }

    /// <summary>Everything skipped so far: the source's own report, then the images skipped while loading.</summary>
    public IReadOnlyList<SkippedFile> Skipped => Source.Skipped.Concat(bad.Skipped).ToList();

    /// <summary>The images skipped while loading (not the source's own report).</summary>
    internal IReadOnlyList<SkippedFile> SkippedWhileLoading => bad.Skipped;

    /// <summary>
    /// The batches of one epoch. The order (with <see cref="LoaderOptions.Shuffle"/>) and the augmentations
    /// depend only on the seed, the epoch and the samples, never on thread timing.
    /// </summary>
    /// <exception cref="ImageFileException">(Policy Throw) an image or mask cannot be used; the message names it.</exception>
    /// <exception cref="FileNotFoundException">(Policy Throw) an image or mask has disappeared.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public IEnumerable<ImageBatch> Batches(int epoch = 0, IProgress<DataProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var size = Options.Preprocess.InputSize;
        int done = 0;
        foreach (var prepared in Prepared(Order(epoch), epoch, Options.LoadMasks, cancellationToken))
        {
            var images = prepared.ImageTensor(size);
            var masks = prepared.MaskTensor(size);
            done += prepared.Consumed;
            progress?.Report(new DataProgress("decode", done, Source.Samples.Count));
            yield return new ImageBatch(images, masks, prepared.Samples);
        }
    }

    /// <summary>The sample indices of an epoch, shuffled or not.</summary>
    internal int[] Order(int epoch)
    {
        var order = Enumerable.Range(0, Source.Samples.Count).ToArray();
        if (Options.Shuffle)
        {
            SeededRandom.For(Options.Seed, 0x5A5A, epoch).Shuffle(order);
        }

        return order;
    }

    /// <summary>Batches of preprocessed floats for the given sample order (used by the feature cache too).</summary>
    internal IEnumerable<PreparedBatch> Prepared(int[] order, int epoch, bool withMasks, CancellationToken cancellationToken)
    {
        var batches = Produce(order, epoch, withMasks, cancellationToken);
        return Options.Prefetch ? Prefetch(batches, cancellationToken) : batches;
    }

    private IEnumerable<PreparedBatch> Produce(int[] order, int epoch, bool withMasks, CancellationToken cancellationToken)
    {
        var size = Options.Preprocess.InputSize;
        int imageLength = 3 * size.Count;
        int maskLength = withMasks ? size.Count : 0;
        int batchSize = Options.BatchSize;
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = Options.Parallelism, CancellationToken = cancellationToken };
        int next = 0;
        while (next < order.Length)
        {
            var images = new float[batchSize * imageLength];
            var masks = withMasks ? new float[batchSize * maskLength] : null;
            var samples = new List<ImageSample>(batchSize);
            var sampleIndices = new List<int>(batchSize);
            int consumed = 0;
            while (samples.Count < batchSize && next < order.Length)
            {
                int filled = samples.Count;
                int take = Math.Min(batchSize - filled, order.Length - next);
                var indices = order.AsSpan(next, take).ToArray();
                next += take;
                consumed += take;
                var errors = new Exception?[take];
                var ok = new bool[take];
                ParallelLoops.For(take, parallel, k =>
                {
                    int index = indices[k];
                    lock (badSamples)
                    {
                        if (badSamples.Contains(index))
                        {
                            return;
                        }
                    }

                    var sample = Source.Samples[index];
                    var random = Options.Augmentation.IsEnabled ? SeededRandom.For(Options.Seed, 0xA06, epoch, index) : null;
                    try
                    {
                        ImagePreprocessor.Prepare(Source, sample, Options.Preprocess, lut, Options.Augmentation, random,
                            images.AsSpan((filled + k) * imageLength, imageLength),
                            masks is null ? Span<float>.Empty : masks.AsSpan((filled + k) * maskLength, maskLength));
                        ok[k] = true;
                    }
                    catch (Exception e) when (BadInput.IsBadInput(e))
                    {
                        errors[k] = e;
                    }
                });

                for (int k = 0; k < take; k++)
                {
                    if (errors[k] is { } error)
                    {
                        if (bad.Policy == BadInputPolicy.Throw)
                        {
                            ExceptionDispatchInfo.Capture(error).Throw();
                        }

                        lock (badSamples)
                        {
                            badSamples.Add(indices[k]);
                        }

                        bad.Report(error is ImageFileException f ? f.FilePath : Source.Samples[indices[k]].ImagePath, BadInput.Reason(error), error);
                    }
                }

                // Move the good images down over the holes left by bad ones.
                for (int k = 0; k < take; k++)
                {
                    if (!ok[k])
                    {
                        continue;
                    }

                    int from = filled + k, to = samples.Count;
                    if (from != to)
                    {
                        Array.Copy(images, from * imageLength, images, to * imageLength, imageLength);
                        if (masks is not null)
                        {
                            Array.Copy(masks, from * maskLength, masks, to * maskLength, maskLength);
                        }
                    }

                    samples.Add(Source.Samples[indices[k]]);
                    sampleIndices.Add(indices[k]);
                }
            }

            if (samples.Count == 0 || (samples.Count < batchSize && Options.DropLast))
            {
                yield break;
            }

            yield return new PreparedBatch(images, masks, samples, sampleIndices, consumed);
        }
    }

    /// <summary>Runs the next MoveNext of <paramref name="source"/> on the thread pool while the caller works on the current item.</summary>
    private static IEnumerable<T> Prefetch<T>(IEnumerable<T> source, CancellationToken cancellationToken)
    {
        using var e = source.GetEnumerator();
        var pending = Task.Run(e.MoveNext, cancellationToken);
        try
        {
            while (pending.GetAwaiter().GetResult())
            {
                var current = e.Current;
                pending = Task.Run(e.MoveNext, cancellationToken);
                yield return current;
            }
        }
        finally
        {
            // The enumerator must be idle before it is disposed; its outcome no longer matters.
            try
            {
                pending.Wait(CancellationToken.None);
            }
            catch (AggregateException)
            {
            }
        }
    }
}

/// <summary>Preprocessed floats of one batch, before they become tensors.</summary>
/// <param name="Images">Room for the batch size; the first Samples.Count images are filled.</param>
/// <param name="Masks">Likewise for masks, or null.</param>
/// <param name="Samples">The images in the batch.</param>
/// <param name="Indices">Their positions in the source.</param>
/// <param name="Consumed">Samples of the order used up by this batch (including skipped ones).</param>
internal sealed record PreparedBatch(float[] Images, float[]? Masks, List<ImageSample> Samples, List<int> Indices, int Consumed)
{
    /// <summary>The images as an n x 3 x H x W tensor.</summary>
    public Tensor ImageTensor(GridSize size) => tensor(Filled(Images, 3 * size.Count), new long[] { Samples.Count, 3, size.Height, size.Width }, device: CPU);

    /// <summary>The masks as an n x 1 x H x W tensor, or null.</summary>
    public Tensor? MaskTensor(GridSize size) => Masks is null ? null : tensor(Filled(Masks, size.Count), new long[] { Samples.Count, 1, size.Height, size.Width }, device: CPU);

    // The filled part of a buffer sized for a whole batch (the last batch may be short).
    private float[] Filled(float[] buffer, int perImage) => buffer.Length == Samples.Count * perImage ? buffer : buffer.AsSpan(0, Samples.Count * perImage).ToArray();
}
