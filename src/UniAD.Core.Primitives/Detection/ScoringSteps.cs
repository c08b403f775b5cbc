using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using SkiaSharp;
using UniAD.Core.Data;

namespace UniAD.Core.Detection;

/// <summary>
/// The runtime-independent steps of scoring, shared by UniAD.Core's <c>AnomalyDetector</c> and UniAD.Onnx's scorer so
/// that both read, batch, fail and report exactly alike: reading and decoding files (the first failing file in input
/// order is thrown as itself), batching paths lazily or asynchronously, bitmap conversion and the result's verdict.
/// </summary>
internal static class ScoringSteps
{
    /// <summary>A result with the calibration's normalised score, label and pixel mask (none without calibration).</summary>
    public static AnomalyResult Result(string? name, double score, AnomalyMapData data, Calibration? calibration) =>
        new(name,
            score,
            calibration?.NormalizeImageScore(score),
            calibration?.IsAnomalous(score),
            data,
            calibration?.EffectivePixelThreshold is { } pt ? data.Threshold(pt) : null);

    /// <summary>
    /// With per-class reference maps (or per-class memory banks) every image needs a known class: checked before the network
    /// runs. <paramref name="known"/> are the classes with a reference (a bank), or null when the model has none (then
    /// anything goes); <paramref name="what"/> names the per-class part in the message.
    /// </summary>
    /// <exception cref="ArgumentException">A class is null or unknown (parameter <c>className</c>).</exception>
    public static void RequireClasses(IReadOnlyCollection<string>? known, IReadOnlyList<string?> classes, string what = ReferenceMapPart)
    {
        if (known is null)
        {
            return;
        }

        foreach (var c in classes)
        {
            if (c is null || !known.Contains(c, StringComparer.Ordinal))
            {
                throw new ArgumentException(c is null
                    ? $"This detector has a {what} per class ({string.Join(", ", known)}): pass the image's class."
                    : $"No {what} for class '{c}'; the detector has one for each of {string.Join(", ", known)}.", "className");
            }
        }
    }

    /// <summary>The per-class part <see cref="RequireClasses"/> names by default.</summary>
    public const string ReferenceMapPart = "reference map";

    /// <summary>The per-class memory banks' name in <see cref="RequireClasses"/>.</summary>
    public const string MemoryBankPart = "memory bank";

    /// <summary>The error for a map holding NaN or infinity (a model whose weights or input are not finite), naming the image.</summary>
    public static InvalidDataException NonFiniteMap(IReadOnlyList<string?> names, int index)
    {
        string name = index < names.Count && names[index] is { } n ? $"'{n}'" : $"image {index} of the batch";
        return new InvalidDataException($"The model produced an anomaly map with NaN or infinity for {name}: its weights or the input are not finite.");
    }

    /// <summary>Refuses maps (each <paramref name="plane"/> values, one after another) holding NaN or infinity: a NaN map would never be anomalous.</summary>
    /// <exception cref="InvalidDataException">A map is not finite.</exception>
    public static void RequireFinite(ReadOnlySpan<float> maps, int plane, IReadOnlyList<string?> names)
    {
        for (int i = 0; i < maps.Length; i++)
        {
            if (!float.IsFinite(maps[i]))
            {
                throw NonFiniteMap(names, i / plane);
            }
        }
    }

    /// <summary>A SkiaSharp bitmap (any colour type; alpha dropped) as an <see cref="RgbImage"/> (a copy).</summary>
    /// <exception cref="ArgumentException">The bitmap cannot be converted.</exception>
    public static RgbImage ToRgb(SKBitmap bitmap)
    {
        ArgumentNullException.ThrowIfNull(bitmap);
        using var converted = bitmap.ColorType == SKColorType.Rgba8888 ? null : bitmap.Copy(SKColorType.Rgba8888);
        var source = converted ?? bitmap;
        if (source is null)
        {
            throw new ArgumentException($"Cannot convert a {bitmap.ColorType} bitmap to RGB.", nameof(bitmap));
        }

        // RgbImage keeps 4 bytes per pixel (R, G, B, ignored), the layout of an RGBA8888 bitmap.
        return new RgbImage(bitmap.Width, bitmap.Height, source.GetPixelSpan().ToArray());
    }

    /// <summary>Decodes files in parallel; the first failing file in input order is thrown as itself (never wrapped).</summary>
    /// <exception cref="FileNotFoundException">A file does not exist.</exception>
    /// <exception cref="ImageFileException">A file is empty, corrupt, truncated, of an unsupported format or too large.</exception>
    public static (RgbImage Image, string? Name)[] DecodeFiles(IReadOnlyList<string> paths, long maxPixels, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var images = new (RgbImage, string?)[paths.Count];
        var failures = new Exception?[paths.Count];
        ParallelLoops.For(paths.Count, new ParallelOptions { CancellationToken = cancellationToken }, i =>
        {
            try
            {
                images[i] = (ImageDecoder.Decode(paths[i], maxPixels), paths[i]);
            }
            catch (Exception ex) when (ex is IOException or ArgumentException)
            {
                failures[i] = ex;
            }
        });

        if (failures.FirstOrDefault(f => f is not null) is { } failure)
        {
            ExceptionDispatchInfo.Capture(failure).Throw();
        }

        return images;
    }

    /// <summary>Reads files asynchronously in input order (the first missing one is reported as such).</summary>
    /// <exception cref="FileNotFoundException">A file does not exist.</exception>
    public static async Task<byte[][]> ReadFilesAsync(IReadOnlyList<string> paths, CancellationToken cancellationToken)
    {
        var encoded = new byte[paths.Count][];
        for (int i = 0; i < paths.Count; i++)
        {
            encoded[i] = await ReadFileAsync(paths[i], cancellationToken).ConfigureAwait(false);
        }

        return encoded;
    }

    /// <summary>Reads one file asynchronously.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static Task<byte[]> ReadFileAsync(string path, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return File.Exists(path)
            ? File.ReadAllBytesAsync(path, cancellationToken)
            : throw new FileNotFoundException($"Image file '{path}' does not exist.", path);
    }

    /// <summary>The rest of a stream, copied asynchronously (no synchronous read).</summary>
    public static async Task<byte[]> CopyAsync(Stream stream, CancellationToken cancellationToken)
    {
        using var copy = stream.CanSeek ? new MemoryStream(checked((int)Math.Max(0, stream.Length - stream.Position))) : new MemoryStream();
        await stream.CopyToAsync(copy, cancellationToken).ConfigureAwait(false);
        return copy.ToArray();
    }

    /// <summary>The rest of a stream, copied synchronously (for the synchronous <c>Score(Stream)</c>).</summary>
    public static byte[] Copy(Stream stream)
    {
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    /// <summary>
    /// Scores paths lazily, <paramref name="batchSize"/> at a time, with <paramref name="scoreFiles"/>; results keep the
    /// input order and each batch's are yielded as it completes.
    /// </summary>
    public static IEnumerable<AnomalyResult> Batched(IEnumerable<string> paths, int batchSize, Func<IReadOnlyList<string>, IReadOnlyList<AnomalyResult>> scoreFiles)
    {
        var pending = new List<string>(batchSize);
        foreach (var path in paths)
        {
            pending.Add(path);
            if (pending.Count == batchSize)
            {
                foreach (var r in scoreFiles(pending))
                {
                    yield return r;
                }

                pending.Clear();
            }
        }

        if (pending.Count > 0)
        {
            foreach (var r in scoreFiles(pending))
            {
                yield return r;
            }
        }
    }

    /// <summary>The asynchronous counterpart of <see cref="Batched"/>.</summary>
    public static async IAsyncEnumerable<AnomalyResult> BatchedAsync(
        IEnumerable<string> paths,
        int batchSize,
        Func<IReadOnlyList<string>, CancellationToken, Task<IReadOnlyList<AnomalyResult>>> scoreFiles,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var pending = new List<string>(batchSize);
        foreach (var path in paths)
        {
            pending.Add(path);
            if (pending.Count < batchSize)
            {
                continue;
            }

            foreach (var r in await scoreFiles(pending, cancellationToken).ConfigureAwait(false))
            {
                yield return r;
            }

            pending.Clear();
        }

        if (pending.Count > 0)
        {
            foreach (var r in await scoreFiles(pending, cancellationToken).ConfigureAwait(false))
            {
                yield return r;
            }
        }
    }

    /// <summary>
    /// Reads files asynchronously (input order), then decodes and scores them on the thread pool with
    /// <paramref name="scoreImages"/>; cancellation is observed between files and before the network runs.
    /// </summary>
    public static async Task<IReadOnlyList<AnomalyResult>> ScoreFilesAsync(
        IReadOnlyList<string> paths,
        long maxPixels,
        Func<IReadOnlyList<(RgbImage Image, string? Name)>, IReadOnlyList<AnomalyResult>> scoreImages,
        CancellationToken cancellationToken)
    {
        var encoded = await ReadFilesAsync(paths, cancellationToken).ConfigureAwait(false);
        var names = paths.ToArray();
        return await Task.Run(
            () =>
            {
                var images = new (RgbImage, string?)[names.Length];
                for (int i = 0; i < names.Length; i++)
                {
                    images[i] = (ImageDecoder.Decode(encoded[i], names[i], maxPixels), names[i]);
                }

                cancellationToken.ThrowIfCancellationRequested();
                return scoreImages(images);
            },
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Decodes and scores one encoded image on the thread pool; cancellation is observed before decoding and before the network runs.</summary>
    public static Task<AnomalyResult> ScoreEncodedAsync(
        byte[] encoded,
        string messageName,
        string? name,
        long maxPixels,
        Func<IReadOnlyList<(RgbImage Image, string? Name)>, IReadOnlyList<AnomalyResult>> scoreImages,
        CancellationToken cancellationToken) =>
        Task.Run(
            () =>
            {
                cancellationToken.ThrowIfCancellationRequested();
                var image = ImageDecoder.Decode(encoded, messageName, maxPixels);
                cancellationToken.ThrowIfCancellationRequested();
                return scoreImages(new[] { (image, name) })[0];
            },
            cancellationToken);
}
