using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.ML.OnnxRuntime;
using SkiaSharp;
using UniAD.Core;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Export;
using UniAD.Core.Metrics;
using UniAD.Core.Tiling;

namespace UniAD.Onnx;

/// <summary>
/// Scores images with a detector exported by UniAD.Core's <c>ExportOnnx</c>, on ONNX Runtime alone (no TorchSharp). Its
/// results are those of UniAD.Core's <c>AnomalyDetector</c> on the same images, computed the same way: PIL-exact
/// preprocessing, the graph's map at the input size (untiled) or the tiles' maps stitched at the working size (tiled),
/// per-class reference maps, the image score, the map resized bilinearly to the image's own size, and the verdict,
/// normalised score and mask of the file's calibration. Loaded with <see cref="Load"/>; dispose it to free the session.
/// </summary>
/// <remarks>
/// <para>Thread safety: a scorer may be shared between threads, as an <c>AnomalyDetector</c> may. Decoding,
/// preprocessing and the post-processing of maps run on the calling threads; the ONNX Runtime session runs one call at a
/// time under the scorer's lock (ONNX Runtime already uses <see cref="OnnxScorerOptions.IntraOpThreads"/> threads within
/// a run). <see cref="Dispose"/> waits for a run in progress; calls after it throw <see cref="ObjectDisposedException"/>.</para>
/// <para>The scoring entry points (<c>Score</c> of a file, stream, bytes, bitmap or decoded image, <c>ScoreBatch</c>,
/// <c>ScoreStream</c>, <c>ScoreAsync</c>, <c>ScoreManyAsync</c>) are <see cref="ImageScorer"/>'s, the very code
/// <c>AnomalyDetector</c> scores files with; this class adds <see cref="ScoreNormalized"/> (input-size tensors).</para>
/// <para>Errors: <see cref="InvalidDataException"/> for a model file that is not a UniAD export (named with the key or the
/// versions) or a map that is not finite; <see cref="IOException"/> for files (<see cref="FileNotFoundException"/>,
/// <see cref="ImageFileException"/>); <see cref="ArgumentException"/> for bad options or input (a missing or unknown class
/// with reference maps); <see cref="PlatformNotSupportedException"/> for an execution provider whose native package the
/// application lacks.</para>
/// </remarks>
public sealed class OnnxAnomalyScorer : ImageScorer, IDisposable
{
    private readonly object gate = new();
    private readonly InferenceSession session;
    private readonly RunOptions runOptions = new();
    private readonly string[] inputNames;
    private readonly string[] outputNames = { OnnxFormat.AnomalyMapName, OnnxFormat.ImageScoreName };
    private readonly string[]? referenceClasses;
    private readonly string[]? bankClasses;
    private readonly ConcurrentDictionary<(int Class, int Height, int Width), float[]> references = new();
    private readonly MapPostProcessor postProcessor;
    private bool disposed;

    private OnnxAnomalyScorer(string modelPath, InferenceSession session, OnnxScoringInfo info, OnnxScorerOptions options)
    {
        ModelPath = modelPath;
        this.session = session;
        Info = info;
        Options = options;
        Calibration = options.Sensitivity is { } s && info.Calibration is { } c ? c with { ImageSensitivity = s, PixelSensitivity = s } : info.Calibration;
        referenceClasses = info.ReferenceMaps?.Select(r => r.ClassName).ToArray();
        bankClasses = info.BankClasses?.ToArray();
        inputNames = new[] { OnnxFormat.InputName }
            .Concat(info.ReferenceMapsInGraph ? new[] { OnnxFormat.ClassIndexName } : Array.Empty<string>())
            .Concat(bankClasses is not null ? new[] { OnnxFormat.BankIndexName } : Array.Empty<string>()).ToArray();
        postProcessor = CreatePostProcessor(info, references);
    }

    /// <summary>The model file.</summary>
    public string ModelPath { get; }

    /// <summary>What the model file says about itself (preprocessing, image score, tiling, calibration, classes, reference maps).</summary>
    public OnnxScoringInfo Info { get; }

    /// <summary>The options the scorer was loaded with.</summary>
    public OnnxScorerOptions Options { get; }

    /// <summary>The execution provider the session runs on.</summary>
    public OnnxExecutionProvider ExecutionProvider => Options.ExecutionProvider;

    /// <summary>
    /// The calibration the verdicts use: the one stored in the model file (<see cref="OnnxScoringInfo.Calibration"/>:
    /// thresholds, normalisation, sensitivities) with <see cref="OnnxScorerOptions.Sensitivity"/> applied when it is set;
    /// null when the model was exported uncalibrated.
    /// </summary>
    public Calibration? Calibration { get; }

    /// <summary>The preprocessing that turns an image into the network's input (the detector's <c>Preprocess</c>).</summary>
    public PreprocessOptions Preprocess => Info.Preprocess with { MaxImagePixels = Options.MaxImagePixels };

    /// <summary>The classes with a per-class reference map (scoring then needs the image's class), or null when the model has none.</summary>
    public IReadOnlyList<string>? ReferenceMapClasses => referenceClasses;

    /// <summary>The classes with a memory bank of their own (scoring then needs the image's class), or null when the model has none.</summary>
    public IReadOnlyList<string>? BankClasses => bankClasses;

    /// <summary>
    /// Loads an exported model: reads and checks its UniAD metadata (through ONNX Runtime's custom metadata map) and its
    /// graph's inputs and outputs, and creates the ONNX Runtime session on the chosen execution provider.
    /// </summary>
    /// <param name="path">The <c>.onnx</c> file written by <c>ExportOnnx</c>.</param>
    /// <param name="options">Execution provider, device, threads; default: the CPU with ONNX Runtime's thread count.</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not an ONNX model, is an ONNX model without UniAD metadata, lacks a key (named), holds an unreadable value, is of a newer format version (both versions named), or its graph does not match its metadata.</exception>
    /// <exception cref="ArgumentException">The options are impossible.</exception>
    /// <exception cref="InvalidOperationException"><see cref="OnnxScorerOptions.Sensitivity"/> is set but the model was exported uncalibrated.</exception>
    /// <exception cref="PlatformNotSupportedException">The execution provider (or ONNX Runtime's native library itself) is not in the application: the message names the NuGet package to add.</exception>
    public static OnnxAnomalyScorer Load(string path, OnnxScorerOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= new OnnxScorerOptions();
        options.Validate();
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"ONNX model '{path}' does not exist.", path);
        }

        var session = CreateSession(path, options);
        try
        {
            var metadata = new Dictionary<string, string>(session.ModelMetadata.CustomMetadataMap, StringComparer.Ordinal);

            var info = OnnxScoringInfo.Parse(metadata, path);
            CheckGraph(session, info, path);
            if (options.Sensitivity is { } sensitivity && info.Calibration is null)
            {
                throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"Sensitivity is set ({sensitivity}) but the model '{path}' was exported uncalibrated: calibrate the detector before ExportOnnx."));
            }

            return new OnnxAnomalyScorer(path, session, info, options);
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Scores images already preprocessed to the network's input (the counterpart of <c>AnomalyDetector.ScoreTensor</c>):
    /// <paramref name="count"/> normalised images, 3 x H x W each at <see cref="OnnxScoringInfo.InputSize"/>, one after another
    /// in <paramref name="images"/> (as <see cref="ImageNormalizer.ToChw"/> writes them). One run of the graph; maps stay at
    /// the input size. With tiling, each image is one tile (no stitching).
    /// </summary>
    /// <exception cref="ArgumentException">The buffer does not hold <paramref name="count"/> input-size images, holds NaN or infinity, the names do not match, or a class is missing with reference maps.</exception>
    /// <exception cref="InvalidDataException">The model produced a non-finite map.</exception>
    /// <param name="images">The normalised images, count x 3 x H x W row-major.</param>
    /// <param name="count">How many images the buffer holds.</param>
    /// <param name="names">Names for the results' sources, or null.</param>
    /// <param name="className">The images' class: needed when the model has reference maps.</param>
    public IReadOnlyList<AnomalyResult> ScoreNormalized(float[] images, int count, IReadOnlyList<string?>? names = null, string? className = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        var size = Info.InputSize;
        if (count < 1 || images.LongLength != (long)count * 3 * size.Count)
        {
            throw new ArgumentException($"Expected {count} normalised images of 3 x {size.Height} x {size.Width} ({(long)count * 3 * size.Count} values); got {images.LongLength} values.", nameof(images));
        }

        if (names is not null && names.Count != count)
        {
            throw new ArgumentException($"{names.Count} names for {count} images.", nameof(names));
        }

        int bad = Array.FindIndex(images, v => !float.IsFinite(v));
        if (bad >= 0)
        {
            throw new ArgumentException($"Image {bad / (3 * size.Count)} of the batch holds NaN or infinity.", nameof(images));
        }

        RequireClasses(className, count);
        return Untiled(images, Enumerable.Repeat(size, count).ToArray(), names ?? new string?[count], ClassIndex(className), BankIndex(className));
    }

    /// <summary>Frees the ONNX Runtime session; waits for a run in progress.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (!disposed)
            {
                session.Dispose();
                runOptions.Dispose();
                disposed = true;
            }
        }
    }

    private static InferenceSession CreateSession(string path, OnnxScorerOptions options)
    {
        SessionOptions sessionOptions;
        try
        {
            sessionOptions = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = options.IntraOpThreads };
        }
        catch (Exception ex) when (OnnxExecutionProviders.IsMissingNativeLibrary(ex))
        {
            OnnxExecutionProviders.Available(); // throws the message that names the package
            throw;
        }

        using (sessionOptions)
        {
            sessionOptions.AddSessionConfigEntry("session.intra_op.allow_spinning", options.AllowSpinning ? "1" : "0");
            OnnxExecutionProviders.Append(sessionOptions, options);
            try
            {
                return new InferenceSession(path, sessionOptions);
            }
            catch (OnnxRuntimeException ex)
            {
                throw new InvalidDataException($"'{path}' is not an ONNX model ONNX Runtime can load: {ex.Message}", ex);
            }
        }
    }

    /// <summary>The graph must have the interface its metadata describes.</summary>
    private static void CheckGraph(InferenceSession session, OnnxScoringInfo info, string path)
    {
        var inputs = session.InputMetadata;
        var outputs = session.OutputMetadata;
        var size = info.InputSize;
        if (!inputs.TryGetValue(OnnxFormat.InputName, out var images) || images.ElementType != typeof(float)
            || images.Dimensions.Length != 4 || images.Dimensions[1] != 3 || images.Dimensions[2] != size.Height || images.Dimensions[3] != size.Width)
        {
            throw new InvalidDataException($"'{path}' has UniAD metadata but its graph lacks the float input '{OnnxFormat.InputName}' [batch, 3, {size.Height}, {size.Width}].");
        }

        info.CheckGraphInputs(inputs.Keys.ToArray(), path);

        foreach (var name in new[] { OnnxFormat.AnomalyMapName, OnnxFormat.ImageScoreName })
        {
            if (!outputs.ContainsKey(name))
            {
                throw new InvalidDataException($"'{path}' has UniAD metadata but its graph lacks the output '{name}'.");
            }
        }

        if (info.Tiling is not null && info.ReferenceMapsInGraph)
        {
            throw new InvalidDataException($"'{path}': a tiled model applies its reference maps to the stitched map, never in the tile graph ('{OnnxMetadataKeys.ReferenceMapsInGraph}' = true).");
        }

        if (info.TileMarginWeight is { } weight && weight != TileMaps.MarginWeight)
        {
            throw new InvalidDataException($"'{path}': metadata '{OnnxMetadataKeys.TileMarginWeight}' = {weight.ToString("R", CultureInfo.InvariantCulture)}; this scorer stitches with {TileMaps.MarginWeight.ToString("R", CultureInfo.InvariantCulture)}.");
        }
    }

    /// <inheritdoc />
    private protected override long MaxImagePixels => Options.MaxImagePixels;

    /// <inheritdoc />
    private protected override IReadOnlyList<AnomalyResult> ScoreDecoded(IReadOnlyList<(RgbImage Image, string? Name)> images, string? className)
    {
        RequireClasses(className, images.Count);
        return Info.Tiling is { } tiling ? ScoreTiled(images, tiling, ClassIndex(className), BankIndex(className)) : ScoreUntiled(images, ClassIndex(className), BankIndex(className));
    }

    /// <summary>Per-class banks and reference maps need every image's class (checked before the graph runs).</summary>
    private void RequireClasses(string? className, int count)
    {
        var classes = Enumerable.Repeat(className, count).ToArray();
        ScoringSteps.RequireClasses(bankClasses, classes, ScoringSteps.MemoryBankPart);
        ScoringSteps.RequireClasses(referenceClasses, classes);
    }

    /// <summary>The position of a (checked) class in the reference maps, or null without them.</summary>
    private int? ClassIndex(string? className) => className is null || referenceClasses is null ? null : Array.IndexOf(referenceClasses, className);

    /// <summary>The position of a (checked) class among the per-class banks, or null without them.</summary>
    private int? BankIndex(string? className) => className is null || bankClasses is null ? null : Array.IndexOf(bankClasses, className);

    /// <summary>Untiled: the images preprocessed to the input size, then one run for all of them.</summary>
    private List<AnomalyResult> ScoreUntiled(IReadOnlyList<(RgbImage Image, string? Name)> images, int? classIndex, int? bankIndex)
    {
        if (Options.OnWarning is { } warn)
        {
            WarnStretched(images, Info.InputSize, warn);
        }

        int values = 3 * Info.InputSize.Count;
        var preprocess = Preprocess;
        var input = new float[(long)images.Count * values];
        Parallel.For(0, images.Count, i => ImageNormalizer.ToChw(images[i].Image, preprocess).CopyTo(input, (long)i * values));
        return Untiled(input, images.Select(i => new GridSize(i.Image.Height, i.Image.Width)).ToArray(), images.Select(i => i.Name).ToArray(), classIndex, bankIndex);
    }

    /// <summary>One run on preprocessed images: the graph's maps at the input size (divided by the class's reference in the graph or here), then the shared post-processing.</summary>
    private List<AnomalyResult> Untiled(float[] input, IReadOnlyList<GridSize> originalSizes, IReadOnlyList<string?> names, int? classIndex, int? bankIndex)
    {
        var size = Info.InputSize;
        int plane = size.Count;
        var maps = Run(input, originalSizes.Count, classIndex, bankIndex).Maps;
        ScoringSteps.RequireFinite(maps, plane, names);
        var post = postProcessor;
        var className = ClassName(classIndex);
        var results = new List<AnomalyResult>(originalSizes.Count);
        for (int i = 0; i < originalSizes.Count; i++)
        {
            results.Add(post.Finish(maps.AsSpan(i * plane, plane).ToArray(), size.Height, size.Width, names[i], className, originalSizes[i], Calibration));
        }

        return results;
    }

    /// <summary>Tiled: each image's working image cut into tiles, scored, stitched, divided by its reference, scored and resized.</summary>
    private List<AnomalyResult> ScoreTiled(IReadOnlyList<(RgbImage Image, string? Name)> images, TilingOptions tiling, int? classIndex, int? bankIndex)
    {
        var tile = Info.InputSize;
        int plane = tile.Count;
        var results = new List<AnomalyResult>(images.Count);
        foreach (var (image, name) in images)
        {
            var working = TileMaps.WorkingImage(image, tiling, tile, name ?? "image");
            var grid = TileGrid.Create(new GridSize(working.Height, working.Width), tile, tiling.StrideFor(tile), tiling.Placement);
            var pixels = ImageNormalizer.ToChwAtOwnSize(working, Preprocess);
            var tileMaps = new float[(long)grid.Count * plane];
            for (int start = 0; start < grid.Count; start += Options.TileBatchSize)
            {
                int n = Math.Min(Options.TileBatchSize, grid.Count - start);
                var batch = new float[(long)n * 3 * plane];
                for (int k = 0; k < n; k++)
                {
                    CutTile(pixels, working.Width, working.Height, grid[start + k], batch.AsSpan(k * 3 * plane, 3 * plane));
                }

                Run(batch, n, classIndex: null, bankIndex).Maps.CopyTo(tileMaps, (long)start * plane);
            }

            var map = TileMaps.Stitch(tileMaps, grid, tiling.Margin);
            ScoringSteps.RequireFinite(map, map.Length, new[] { name });
            results.Add(postProcessor.Finish(map, grid.ImageSize.Height, grid.ImageSize.Width, name, ClassName(classIndex), new GridSize(image.Height, image.Width), Calibration));
        }

        return results;
    }

    /// <summary>Copies one tile of a 3 x H x W image into a 3 x h x w buffer.</summary>
    private static void CutTile(float[] pixels, int width, int height, TileRect tile, Span<float> target)
    {
        int tilePlane = tile.Width * tile.Height;
        for (int c = 0; c < 3; c++)
        {
            for (int y = 0; y < tile.Height; y++)
            {
                pixels.AsSpan(((c * height) + tile.Y + y) * width + tile.X, tile.Width).CopyTo(target.Slice((c * tilePlane) + (y * tile.Width), tile.Width));
            }
        }
    }

    /// <summary>The class name of a (checked) class index, or null.</summary>
    private string? ClassName(int? classIndex) => classIndex is { } k && referenceClasses is not null ? referenceClasses[k] : null;

    /// <summary>
    /// The post-processing every result goes through (UniAD.Core's detector runs the same code). With reference maps the
    /// graph does not apply (tiled models), it divides by the class's grid upsampled bilinearly with half-pixel centres to
    /// the map size, plus epsilon, as UniAD.Core's <c>ReferenceMaps.Normalize</c>; the image score is always taken here.
    /// </summary>
    private static MapPostProcessor CreatePostProcessor(OnnxScoringInfo info, ConcurrentDictionary<(int Class, int Height, int Width), float[]> cache)
    {
        if (info.ReferenceMapsInGraph || info.ReferenceMaps is not { } all)
        {
            return new MapPostProcessor(info.ScoreKind, info.ScorePoolHeight, info.ScorePoolSize);
        }

        var classes = all.Select(r => r.ClassName).ToArray();
        return new MapPostProcessor(info.ScoreKind, info.ScorePoolHeight, info.ScorePoolSize, classes, (className, height, width) =>
            cache.GetOrAdd((Array.IndexOf(classes, className), height, width), key =>
            {
                var r = all[key.Class];
                var up = MapResize.Bilinear(r.Values.ToArray(), r.Height, r.Width, key.Height, key.Width);
                float epsilon = (float)r.Epsilon;
                for (int i = 0; i < up.Length; i++)
                {
                    up[i] += epsilon;
                }

                return up;
            }));
    }

    /// <summary>One run of the session under the scorer's lock: the maps (B x H x W, row-major) and the image scores.</summary>
    private (float[] Maps, float[] Scores) Run(float[] input, int batch, int? classIndex, int? bankIndex)
    {
        var size = Info.InputSize;
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            using var images = OrtValue.CreateTensorValueFromMemory(input, new long[] { batch, 3, size.Height, size.Width });
            using var classes = Info.ReferenceMapsInGraph
                ? OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat((long)classIndex!.Value, batch).ToArray(), new long[] { batch })
                : null;
            using var banks = bankClasses is not null
                ? OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat((long)bankIndex!.Value, batch).ToArray(), new long[] { batch })
                : null;
            var values = new[] { images, classes, banks }.Where(v => v is not null).Select(v => v!).ToArray();
            using var outputs = session.Run(runOptions, inputNames, values, outputNames);
            return (outputs[0].GetTensorDataAsSpan<float>().ToArray(), outputs[1].GetTensorDataAsSpan<float>().ToArray());
        }
    }
}
