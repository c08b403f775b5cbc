using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using static TorchSharp.torch;
using UniAD.Core.Files;

namespace UniAD.Core.Data;

/// <summary>Options of <see cref="FeatureCache"/>.</summary>
public sealed record FeatureCacheOptions
{
    /// <summary>Folder for cached features on disk, or null to keep them in memory only.</summary>
    public string? Directory { get; init; }

    /// <summary>Also keep features in memory (the fastest epochs; 272 x 14 x 14 floats are 213 KB per image).</summary>
    public bool KeepInMemory { get; init; } = true;

    /// <summary>Images per call of the extractor while filling the cache.</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Images decoded, and files read or written, at the same time; 0 means one per logical core.</summary>
    public int MaxDegreeOfParallelism { get; init; }

    /// <summary>The preprocessing the extractor sees (part of the cache key).</summary>
    public PreprocessOptions Preprocess { get; init; } = new();

    /// <summary>What to do with an image that cannot be decoded while filling the cache.</summary>
    public BadInputPolicy OnBadInput { get; init; } = BadInputPolicy.Throw;

    /// <summary>Checks every value and throws an exception naming the first one that is impossible.</summary>
    /// <exception cref="ArgumentException">A value is out of range, or the cache would hold nothing (no folder and not in memory).</exception>
    public void Validate()
    {
        if (Directory is null && !KeepInMemory)
        {
            throw new ArgumentException($"With no {nameof(Directory)} and {nameof(KeepInMemory)} = false the cache would keep nothing.", nameof(KeepInMemory));
        }

        if (Directory is { Length: 0 })
        {
            throw new ArgumentException($"{nameof(Directory)} must be null or a folder path, got an empty string.", nameof(Directory));
        }

        OptionCheck.Positive(BatchSize);
        OptionCheck.Parallelism(MaxDegreeOfParallelism);

        ArgumentNullException.ThrowIfNull(Preprocess, nameof(Preprocess));
        Preprocess.Validate();
    }
}

/// <summary>What <see cref="FeatureCache.Populate"/> found and did.</summary>
/// <param name="Total">Samples in the source.</param>
/// <param name="InMemory">Already in memory.</param>
/// <param name="FromDisk">Found valid on disk.</param>
/// <param name="Computed">Decoded and run through the extractor now (images skipped as bad input not counted).</param>
/// <param name="Skipped">Images left out as bad input (policy Skip), cumulative for this cache.</param>
public sealed record FeatureCacheReport(int Total, int InMemory, int FromDisk, int Computed, IReadOnlyList<SkippedFile> Skipped);

/// <summary>A batch of cached features: B x C x h x w float32, labels B (int64), and each image's sample. Dispose it when done.</summary>
public sealed class FeatureBatch : SampleBatch
{
    internal FeatureBatch(Tensor features, IReadOnlyList<ImageSample> samples)
        : base(samples)
    {
        Features = Own(features);
    }

    /// <summary>B x C x h x w features, as the extractor returned them.</summary>
    public Tensor Features { get; }

    private protected override void DisposeTensors() => Features.Dispose();
}

/// <summary>
/// Caches what a frozen feature extractor (the backbone and neck) returns for each image, in memory and/or
/// on disk, so that training epochs read features instead of decoding images and running the backbone.
/// The extractor is any function from normalised images (B x 3 x H x W) to features (B x C x h x w); it runs
/// under <c>no_grad</c>. Entries are keyed by <see cref="CacheKey"/> (say, a fingerprint of the backbone's
/// configuration and weights), the preprocessing, and each image's <see cref="IImageSource.ContentKey"/>
/// (path, length, time of last write), so a changed backbone or image never reads stale features.
/// </summary>
/// <remarks>
/// Disk format, one file per image under <c>&lt;Directory&gt;/&lt;key hash&gt;/</c>: the 8 bytes <c>UNIADFC1</c>,
/// the 32-byte SHA-256 of the cache key and preprocessing, C, h and w as little-endian int32, then
/// C·h·w little-endian float32. Files are written under a temporary name and moved into place; a file
/// that is truncated or carries another key is recomputed. Content keys are computed once per source
/// object. Augmentation has no place here: cached features are of the plain preprocessed image.
/// </remarks>
public sealed class FeatureCache
{
    private const int HeaderBytes = 8 + 32 + 12;
    private static readonly byte[] Magic = "UNIADFC1"u8.ToArray();

    private readonly Func<Tensor, Tensor> extractor;
    private readonly ILogger logger;
    private readonly byte[] keyHash;
    private readonly string? folder;
    private readonly ConcurrentDictionary<string, float[]> memory = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> onDisk = new(StringComparer.Ordinal);
    private readonly ConditionalWeakTable<IImageSource, string[]> ids = new();
    private readonly BadInput bad;
    private readonly HashSet<string> unusable = new(StringComparer.Ordinal);
    private (int C, int H, int W)? shape;

    /// <summary>Creates an empty cache (files already on disk under the same key are reused).</summary>
    /// <param name="extractor">Normalised images B x 3 x H x W → features B x C x h x w.</param>
    /// <param name="cacheKey">Identifies the extractor: change it whenever the backbone's configuration or weights change.</param>
    /// <param name="options">Where and how to cache.</param>
    /// <param name="logger">Receives progress and skipped files.</param>
    /// <exception cref="ArgumentException">The key is empty or an option is impossible.</exception>
    public FeatureCache(Func<Tensor, Tensor> extractor, string cacheKey, FeatureCacheOptions? options = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(extractor);
        ArgumentException.ThrowIfNullOrEmpty(cacheKey);
        Options = options ?? new FeatureCacheOptions();
        Options.Validate();
        if (Options.Directory is not null && !BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("The on-disk feature cache is little-endian only.");
        }

        this.extractor = extractor;
        this.logger = logger ?? NullLogger.Instance;
        CacheKey = cacheKey;
        keyHash = SHA256.HashData(Encoding.UTF8.GetBytes(cacheKey + "\n" + Options.Preprocess.Fingerprint()));
        bad = new BadInput(Options.OnBadInput, this.logger);
        if (Options.Directory is { } root)
        {
            folder = Path.Combine(Path.GetFullPath(root), Convert.ToHexString(keyHash, 0, 8).ToLowerInvariant());
            System.IO.Directory.CreateDirectory(folder);
        }
    }

    /// <summary>The extractor's identity, as given.</summary>
    public string CacheKey { get; }

    /// <summary>The options.</summary>
    public FeatureCacheOptions Options { get; }

    /// <summary>The folder holding this key's files, or null.</summary>
    public string? Folder => folder;

    /// <summary>Feature maps held in memory.</summary>
    public int Count => memory.Count;

    /// <summary>Bytes of features held in memory.</summary>
    public long MemoryBytes => memory.Values.Sum(v => (long)v.Length * sizeof(float));

    /// <summary>Images left out as bad input so far (policy Skip).</summary>
    public IReadOnlyList<SkippedFile> Skipped => bad.Skipped;

    /// <summary>Makes sure every image of <paramref name="source"/> is cached: looks in memory, then on disk, and runs the extractor on the rest.</summary>
    /// <exception cref="ImageFileException">(Policy Throw) an image cannot be decoded.</exception>
    /// <exception cref="InvalidOperationException">The extractor returned something other than B x C x h x w, or a shape that differs from earlier features.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public FeatureCacheReport Populate(IImageSource source, IProgress<DataProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        var keys = Ids(source);
        int inMemory = 0, fromDisk = 0;
        var missing = new List<int>();
        for (int i = 0; i < keys.Length; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (memory.ContainsKey(keys[i]) || IsUnusable(keys[i]))
            {
                inMemory += memory.ContainsKey(keys[i]) ? 1 : 0;
            }
            else if (TryLoadFromDisk(keys[i]))
            {
                fromDisk++;
            }
            else
            {
                missing.Add(i);
            }
        }

        int computed = missing.Count > 0 ? Compute(source, keys, missing, progress, cancellationToken) : 0;
        var report = new FeatureCacheReport(keys.Length, inMemory, fromDisk, computed, bad.Skipped);
        logger.LogInformation("Feature cache {Key}: {Total} images, {InMemory} in memory, {FromDisk} from disk, {Computed} computed, {Skipped} skipped", CacheKey, report.Total, inMemory, fromDisk, computed, report.Skipped.Count);
        return report;
    }

    /// <summary>
    /// One epoch of cached features (filling the cache first when needed). Images skipped as bad input are
    /// left out. With <paramref name="shuffle"/> the order depends only on <paramref name="seed"/> and
    /// <paramref name="epoch"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The batch size is not positive.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public IEnumerable<FeatureBatch> Batches(IImageSource source, int batchSize, bool shuffle = false, long seed = 133, int epoch = 0, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        return Enumerate(source, batchSize, shuffle, seed, epoch, cancellationToken);
    }

    /// <summary>Forgets the features held in memory (files on disk stay).</summary>
    public void ClearMemory() => memory.Clear();

    private IEnumerable<FeatureBatch> Enumerate(IImageSource source, int batchSize, bool shuffle, long seed, int epoch, CancellationToken cancellationToken)
    {
        var keys = Ids(source);
        if (keys.Any(k => !IsUnusable(k) && !memory.ContainsKey(k) && !HasValidFile(k)))
        {
            Populate(source, null, cancellationToken);
        }

        var order = Enumerable.Range(0, keys.Length).Where(i => !IsUnusable(keys[i])).ToArray();
        if (shuffle)
        {
            SeededRandom.For(seed, 0xFEA7, epoch).Shuffle(order);
        }

        if (order.Length == 0)
        {
            yield break;
        }

        var (c, h, w) = shape ?? ReadShape(keys[order[0]]);
        int length = c * h * w;
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = Parallelism, CancellationToken = cancellationToken };
        for (int start = 0; start < order.Length; start += batchSize)
        {
            int n = Math.Min(batchSize, order.Length - start);
            var buffer = new float[n * length];
            ParallelLoops.For(n, parallel, k =>
            {
                var key = keys[order[start + k]];
                var target = buffer.AsSpan(k * length, length);
                if (memory.TryGetValue(key, out var values))
                {
                    values.CopyTo(target);
                }
                else
                {
                    var loaded = ReadFile(key) ?? throw new InvalidDataException($"Cached features of '{source.Samples[order[start + k]].ImagePath}' vanished from '{FilePath(key)}' during the epoch.");
                    if (loaded.Length != length)
                    {
                        throw new InvalidDataException($"Cached features in '{FilePath(key)}' have {loaded.Length} values, expected {length}.");
                    }

                    loaded.CopyTo(target);
                    if (Options.KeepInMemory)
                    {
                        memory[key] = loaded;
                    }
                }
            });

            var samples = order.Skip(start).Take(n).Select(i => source.Samples[i]).ToList();
            yield return new FeatureBatch(tensor(buffer, new long[] { n, c, h, w }, device: CPU), samples);
        }
    }

    private int Parallelism => OptionCheck.Threads(Options.MaxDegreeOfParallelism);

    private int Compute(IImageSource source, string[] keys, List<int> missing, IProgress<DataProgress>? progress, CancellationToken cancellationToken)
    {
        var loader = new ImageBatchLoader(source, new LoaderOptions
        {
            BatchSize = Options.BatchSize,
            MaxDegreeOfParallelism = Options.MaxDegreeOfParallelism,
            LoadMasks = false,
            Preprocess = Options.Preprocess,
            OnBadInput = Options.OnBadInput,
        }, logger);
        var size = Options.Preprocess.InputSize;
        int done = 0, computed = 0;
        foreach (var prepared in loader.Prepared(missing.ToArray(), epoch: 0, withMasks: false, cancellationToken))
        {
            int n = prepared.Samples.Count;
            float[] values;
            (int C, int H, int W) batchShape;
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                var features = extractor(prepared.ImageTensor(size));
                if (features.dim() != 4 || features.shape[0] != n)
                {
                    throw new InvalidOperationException($"The feature extractor must return {n} x C x h x w for {n} images, got [{string.Join(", ", features.shape)}].");
                }

                batchShape = ((int)features.shape[1], (int)features.shape[2], (int)features.shape[3]);
                values = features.detach().to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
            }

            shape ??= batchShape;
            if (shape != batchShape)
            {
                throw new InvalidOperationException($"The feature extractor returned {batchShape.C} x {batchShape.H} x {batchShape.W} features, but earlier ones were {shape.Value.C} x {shape.Value.H} x {shape.Value.W}: use one cache per extractor.");
            }

            int length = batchShape.C * batchShape.H * batchShape.W;
            ParallelLoops.For(n, new ParallelOptions { MaxDegreeOfParallelism = Parallelism }, k =>
            {
                var key = keys[prepared.Indices[k]];
                var one = values.AsSpan(k * length, length).ToArray();
                if (Options.KeepInMemory)
                {
                    memory[key] = one;
                }

                if (folder is not null)
                {
                    WriteFile(key, batchShape, one);
                    onDisk[key] = 0;
                }
            });

            computed += n;
            done += prepared.Consumed;
            progress?.Report(new DataProgress("features", done, missing.Count));
        }

        foreach (var skipped in loader.SkippedWhileLoading)
        {
            bad.Record(skipped);
        }

        for (int i = 0; i < keys.Length; i++)
        {
            if (!memory.ContainsKey(keys[i]) && !HasValidFile(keys[i]))
            {
                lock (unusable)
                {
                    unusable.Add(keys[i]);
                }
            }
        }

        return computed;
    }

    private string[] Ids(IImageSource source) => ids.GetValue(source, s =>
    {
        var prefix = Convert.ToHexString(keyHash);
        return s.Samples.Select(sample => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(prefix + "|" + s.ContentKey(sample)))).ToLowerInvariant()).ToArray();
    });

    private bool IsUnusable(string key)
    {
        lock (unusable)
        {
            return unusable.Contains(key);
        }
    }

    private string FilePath(string key) => Path.Combine(folder!, key + ".f32");

    private bool TryLoadFromDisk(string key)
    {
        if (folder is null)
        {
            return false;
        }

        if (!Options.KeepInMemory)
        {
            return HasValidFile(key);
        }

        var values = ReadFile(key);
        if (values is null)
        {
            return false;
        }

        memory[key] = values;
        return true;
    }

    private bool HasValidFile(string key)
    {
        if (folder is null)
        {
            return false;
        }

        if (onDisk.ContainsKey(key))
        {
            return true;
        }

        var path = FilePath(key);
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
            Span<byte> header = stackalloc byte[HeaderBytes];
            if (stream.ReadAtLeast(header, HeaderBytes, throwOnEndOfStream: false) != HeaderBytes || ParseHeader(header, stream.Length, path) is not { } s)
            {
                return false;
            }

            shape ??= s;
            onDisk[key] = 0;
            return true;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return false;
        }
    }

    private (int C, int H, int W) ReadShape(string key)
    {
        var path = FilePath(key);
        var bytes = File.ReadAllBytes(path);
        return ParseHeader(bytes, bytes.Length, path) ?? throw new InvalidDataException($"Cached features in '{path}' are corrupt.");
    }

    private float[]? ReadFile(string key)
    {
        if (folder is null)
        {
            return null;
        }

        var path = FilePath(key);
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }

        var parsed = ParseHeader(bytes, bytes.Length, path);
        if (parsed is not { } s)
        {
            return null;
        }

        shape ??= s;
        onDisk[key] = 0;
        return MemoryMarshal.Cast<byte, float>(bytes.AsSpan(HeaderBytes)).ToArray();
    }

    private (int C, int H, int W)? ParseHeader(ReadOnlySpan<byte> header, long fileLength, string path)
    {
        if (header.Length < HeaderBytes || !header[..8].SequenceEqual(Magic) || !header.Slice(8, 32).SequenceEqual(keyHash))
        {
            logger.LogWarning("Ignoring cached features in {Path}: not a feature file of this cache key", path);
            return null;
        }

        int c = BinaryPrimitives.ReadInt32LittleEndian(header[40..]);
        int h = BinaryPrimitives.ReadInt32LittleEndian(header[44..]);
        int w = BinaryPrimitives.ReadInt32LittleEndian(header[48..]);
        if (c <= 0 || h <= 0 || w <= 0 || fileLength != HeaderBytes + ((long)c * h * w * sizeof(float)))
        {
            logger.LogWarning("Ignoring cached features in {Path}: truncated or corrupt ({Length} bytes for {C} x {H} x {W})", path, fileLength, c, h, w);
            return null;
        }

        return (c, h, w);
    }

    private void WriteFile(string key, (int C, int H, int W) featureShape, float[] values)
    {
        AtomicFile.Write(FilePath(key), stream =>
        {
            Span<byte> header = stackalloc byte[HeaderBytes];
            Magic.CopyTo(header);
            keyHash.CopyTo(header[8..]);
            BinaryPrimitives.WriteInt32LittleEndian(header[40..], featureShape.C);
            BinaryPrimitives.WriteInt32LittleEndian(header[44..], featureShape.H);
            BinaryPrimitives.WriteInt32LittleEndian(header[48..], featureShape.W);
            stream.Write(header);
            stream.Write(MemoryMarshal.AsBytes(values.AsSpan()));
        });
    }
}
