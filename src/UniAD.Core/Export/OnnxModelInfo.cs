using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using Onnx;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;
using UniAD.Core.Tiling;

// This file is deliberately free of TorchSharp types (plain records, System.Text.Json and the ONNX protobuf
// types): a scorer without TorchSharp needs the same reader.
namespace UniAD.Core.Export;

/// <summary>
/// The metadata keys (<c>metadata_props</c>) of an ONNX model written by <see cref="OnnxExport.ExportOnnx"/>. Lists and
/// records are JSON (enums as names), numbers invariant-culture text.
/// </summary>
public static class OnnxMetadataKeys
{
    /// <summary>Always <see cref="OnnxExport.FormatId"/>.</summary>
    public const string Format = "uniad.format";

    /// <summary>The format version, an integer (<see cref="OnnxExport.FormatVersion"/> when written).</summary>
    public const string FormatVersion = "uniad.format_version";

    /// <summary>The UniAD.Core version that wrote the file.</summary>
    public const string LibraryVersion = "uniad.library_version";

    /// <summary>The input (= map) size, JSON <c>[height, width]</c>.</summary>
    public const string InputSize = "uniad.input_size";

    /// <summary>Per-channel normalisation mean (R, G, B), JSON list: the input is <c>(rgb / 255 − mean) / std</c>.</summary>
    public const string PixelMean = "uniad.pixel_mean";

    /// <summary>Per-channel normalisation standard deviation (R, G, B), JSON list.</summary>
    public const string PixelStd = "uniad.pixel_std";

    /// <summary>How an image is resized to the input size before normalisation: <c>pil-bilinear</c> (PIL's antialiased BILINEAR filter).</summary>
    public const string Resize = "uniad.resize";

    /// <summary>How the map is resized to an image's own size: <c>bilinear-half-pixel</c> (align_corners = false).</summary>
    public const string MapResize = "uniad.map_resize";

    /// <summary>The backbone's model name (e.g. <c>efficientnet-b4</c>).</summary>
    public const string Backbone = "uniad.backbone";

    /// <summary>The backbone's output layers, JSON list.</summary>
    public const string BackboneLayers = "uniad.backbone_layers";

    /// <summary>The image score the <c>image_score</c> output computes (<see cref="ImageScoreKind"/> name).</summary>
    public const string ImageScore = "uniad.image_score";

    /// <summary>The window of the pooled-max image score.</summary>
    public const string ScorePoolSize = "uniad.score_pool_size";

    /// <summary>The tiling (JSON of <see cref="TilingOptions"/>); absent for an untiled detector. The graph scores one tile.</summary>
    public const string Tiling = "uniad.tiling";

    /// <summary>With tiling: the stitching weight of pixels in a tile's interior margin (<c>Tiler.MarginWeight</c>).</summary>
    public const string TileMarginWeight = "uniad.tile_margin_weight";

    /// <summary>The calibration (JSON of <see cref="Detection.Calibration"/>, sensitivities and effective thresholds included); absent when uncalibrated.</summary>
    public const string Calibration = "uniad.calibration";

    /// <summary>The class names of the training data, JSON list: <see cref="OnnxExportOptions.ClassNames"/>, else the classes of the reference maps; absent when neither is known.</summary>
    public const string ClassNames = "uniad.class_names";

    /// <summary>
    /// Per-class reference maps (JSON list of <see cref="ClassReferenceMap"/>, in the order of the <c>class_index</c> input:
    /// ordinal by class name); absent when the detector has none.
    /// </summary>
    public const string ReferenceMaps = "uniad.reference_maps";

    /// <summary>
    /// With reference maps: <c>true</c> when the graph applies them (input <c>class_index</c>; untiled detectors), <c>false</c>
    /// when the runtime must (tiled detectors: the stitched map is divided by its class's reference, upsampled bilinearly with
    /// half-pixel centres to the working size, plus epsilon; then the image score is computed from it).
    /// </summary>
    public const string ReferenceMapsInGraph = "uniad.reference_maps_in_graph";

    /// <summary>Epochs trained.</summary>
    public const string EpochsTrained = "uniad.epochs_trained";

    /// <summary>The complete <see cref="Detection.DetectorOptions"/>, JSON.</summary>
    public const string DetectorOptions = "uniad.detector_options";

    /// <summary>The prefix every key of the format has; <see cref="OnnxExportOptions.Metadata"/> keys may not use it.</summary>
    public const string Prefix = "uniad.";
}

/// <summary>What an exported ONNX model says about itself (<see cref="OnnxExport.ReadInfo"/>).</summary>
public sealed record OnnxModelInfo
{
    /// <summary>The format version of the file.</summary>
    public required int FormatVersion { get; init; }

    /// <summary>The UniAD.Core version that wrote it.</summary>
    public required string LibraryVersion { get; init; }

    /// <summary>The ONNX operator set the graph uses.</summary>
    public required long Opset { get; init; }

    /// <summary>The input size (height x width) of the <c>images</c> input and of the <c>anomaly_map</c> output.</summary>
    public required GridSize InputSize { get; init; }

    /// <summary>Normalisation mean per channel (R, G, B).</summary>
    public required IReadOnlyList<double> PixelMean { get; init; }

    /// <summary>Normalisation standard deviation per channel (R, G, B).</summary>
    public required IReadOnlyList<double> PixelStd { get; init; }

    /// <summary>How images are resized to the input size (<c>pil-bilinear</c>).</summary>
    public required string Resize { get; init; }

    /// <summary>How maps are resized to an image's size (<c>bilinear-half-pixel</c>).</summary>
    public required string MapResize { get; init; }

    /// <summary>The backbone's model name.</summary>
    public required string Backbone { get; init; }

    /// <summary>The backbone's output layers.</summary>
    public required IReadOnlyList<int> BackboneLayers { get; init; }

    /// <summary>The image score the graph computes.</summary>
    public required ImageScoreKind ScoreKind { get; init; }

    /// <summary>The pooled-max window.</summary>
    public required int ScorePoolSize { get; init; }

    /// <summary>The tiling, or null for an untiled detector (the graph scores one tile; stitching is the runtime's).</summary>
    public TilingOptions? Tiling { get; init; }

    /// <summary>With tiling, the stitching weight of interior margins (<c>Tiler.MarginWeight</c>); otherwise null.</summary>
    public double? TileMarginWeight { get; init; }

    /// <summary>The calibration, or null when the detector was not calibrated.</summary>
    public Calibration? Calibration { get; init; }

    /// <summary>The training data's class names, or null when not known.</summary>
    public IReadOnlyList<string>? ClassNames { get; init; }

    /// <summary>The per-class reference maps in class-index order, or null when the detector has none.</summary>
    public IReadOnlyList<ClassReferenceMap>? ReferenceMaps { get; init; }

    /// <summary>True when the graph applies <see cref="ReferenceMaps"/> (it then has the input <c>class_index</c>).</summary>
    public bool ReferenceMapsInGraph { get; init; }

    /// <summary>Epochs trained.</summary>
    public required int EpochsTrained { get; init; }

    /// <summary>The detector's complete configuration.</summary>
    public required DetectorOptions Options { get; init; }

    /// <summary>Every metadata entry of the file, the caller's own (<see cref="OnnxExportOptions.Metadata"/>) included.</summary>
    public required IReadOnlyDictionary<string, string> Metadata { get; init; }
}

/// <summary>ONNX export of a detector's scoring graph and the reader of its metadata.</summary>
public static partial class OnnxExport
{
    /// <summary>The format identifier stored under <see cref="OnnxMetadataKeys.Format"/>.</summary>
    public const string FormatId = "UniAD.Core.Onnx";

    /// <summary>The format version this library writes and the newest it reads.</summary>
    public const int FormatVersion = 1;

    /// <summary>The ONNX operator set of the exported graph.</summary>
    public const int Opset = 17;

    /// <summary>The graph's input: float32 normalised images, <c>[batch, 3, H, W]</c>.</summary>
    public const string InputName = "images";

    /// <summary>
    /// The graph's second input when it applies per-class reference maps: int64 <c>[batch]</c>, each image's class as an
    /// index into <see cref="OnnxMetadataKeys.ReferenceMaps"/>.
    /// </summary>
    public const string ClassIndexName = "class_index";

    /// <summary>The graph's map output: float32 <c>[batch, 1, H, W]</c>.</summary>
    public const string AnomalyMapName = "anomaly_map";

    /// <summary>The graph's score output: float32 <c>[batch]</c>.</summary>
    public const string ImageScoreName = "image_score";

    /// <summary>The name of the dynamic batch dimension (<c>dim_param</c>).</summary>
    public const string BatchDimension = "batch";

    /// <summary>
    /// JSON settings of the metadata: enums as names, as in detector checkpoints, and infinite numbers as the strings
    /// <c>"Infinity"</c> / <c>"-Infinity"</c> (a sensitivity on a calibration without a score range moves its effective
    /// threshold to an infinity).
    /// </summary>
    internal static readonly JsonSerializerOptions Json = new()
    {
        Converters = { new JsonStringEnumConverter() },
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        WriteIndented = false,
    };

    /// <summary>
    /// Reads and checks the metadata of an ONNX model written by <see cref="ExportOnnx"/> (without running it).
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not an ONNX model, has no UniAD.Core metadata, lacks a key (named), holds an unreadable value, or is of a newer format version (both versions named).</exception>
    public static OnnxModelInfo ReadInfo(string path)
    {
        var model = OnnxModelFile.Parse(path);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in model.MetadataProps)
        {
            if (!metadata.TryAdd(entry.Key, entry.Value))
            {
                throw new InvalidDataException($"'{path}' holds the metadata key '{entry.Key}' twice.");
            }
        }

        var info = ParseInfo(metadata, path);
        var opset = model.OpsetImport.Where(o => o.Domain.Length == 0 || o.Domain == "ai.onnx").Select(o => o.Version).DefaultIfEmpty(0).Max();
        var inputs = model.Graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        if (info.ReferenceMapsInGraph != inputs.Contains(ClassIndexName))
        {
            throw new InvalidDataException($"'{path}': metadata '{OnnxMetadataKeys.ReferenceMapsInGraph}' says {info.ReferenceMapsInGraph}, but the graph {(inputs.Contains(ClassIndexName) ? "has" : "lacks")} the input '{ClassIndexName}'.");
        }

        var outputs = model.Graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var (name, present) in new[] { (InputName, inputs.Contains(InputName)), (AnomalyMapName, outputs.Contains(AnomalyMapName)), (ImageScoreName, outputs.Contains(ImageScoreName)) })
        {
            if (!present)
            {
                throw new InvalidDataException($"'{path}' has UniAD.Core metadata but its graph lacks the {(name == InputName ? "input" : "output")} '{name}'.");
            }
        }

        return info with { Opset = opset };
    }

    /// <summary>Parses and checks the metadata entries of an exported model (<paramref name="path"/> is for messages).</summary>
    /// <exception cref="InvalidDataException">Not UniAD.Core's metadata, a key missing or unreadable, or a newer format version.</exception>
    internal static OnnxModelInfo ParseInfo(IReadOnlyDictionary<string, string> metadata, string path)
    {
        if (!metadata.TryGetValue(OnnxMetadataKeys.Format, out var format))
        {
            throw new InvalidDataException($"'{path}' is an ONNX model without UniAD.Core metadata (no '{OnnxMetadataKeys.Format}' key): it was not written by ExportOnnx.");
        }

        if (format != FormatId)
        {
            throw new InvalidDataException($"'{path}' has '{OnnxMetadataKeys.Format}' = '{format}', not '{FormatId}'.");
        }

        string Required(string key) => metadata.TryGetValue(key, out var value)
            ? value
            : throw new InvalidDataException($"'{path}' lacks the metadata key '{key}'.");

        int Integer(string key)
        {
            var text = Required(key);
            return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value)
                ? value
                : throw new InvalidDataException($"'{path}': metadata '{key}' = '{text}' is not an integer.");
        }

        T Parse<T>(string key, string text)
        {
            try
            {
                return JsonSerializer.Deserialize<T>(text, Json) ?? throw new InvalidDataException($"'{path}': metadata '{key}' is null.");
            }
            catch (JsonException ex)
            {
                throw new InvalidDataException($"'{path}': metadata '{key}' is not readable: {ex.Message}", ex);
            }
        }

        T? Optional<T>(string key)
            where T : class => metadata.TryGetValue(key, out var text) ? Parse<T>(key, text) : null;

        int version = Integer(OnnxMetadataKeys.FormatVersion);
        if (version <= 0)
        {
            throw new InvalidDataException($"'{path}' claims UniAD ONNX format version {version}; versions start at 1.");
        }

        if (version > FormatVersion)
        {
            throw new InvalidDataException($"'{path}' uses UniAD ONNX format version {version}; this UniAD.Core ({LibraryVersion()}) reads up to version {FormatVersion}.");
        }

        var size = Parse<int[]>(OnnxMetadataKeys.InputSize, Required(OnnxMetadataKeys.InputSize));
        if (size.Length != 2 || size[0] <= 0 || size[1] <= 0)
        {
            throw new InvalidDataException($"'{path}': metadata '{OnnxMetadataKeys.InputSize}' must be [height, width] with positive sides.");
        }

        var scoreText = Required(OnnxMetadataKeys.ImageScore);
        if (!Enum.TryParse<ImageScoreKind>(scoreText, ignoreCase: false, out var scoreKind) || !Enum.IsDefined(scoreKind) || int.TryParse(scoreText, out _))
        {
            throw new InvalidDataException($"'{path}': metadata '{OnnxMetadataKeys.ImageScore}' = '{scoreText}' is not an image score kind ({string.Join(", ", Enum.GetNames<ImageScoreKind>())}).");
        }

        var options = Parse<DetectorOptions>(OnnxMetadataKeys.DetectorOptions, Required(OnnxMetadataKeys.DetectorOptions));
        var calibration = Optional<Calibration>(OnnxMetadataKeys.Calibration);
        if (calibration?.Problem() is { } problem)
        {
            throw new InvalidDataException($"'{path}': metadata '{OnnxMetadataKeys.Calibration}' is an impossible calibration: {problem}.");
        }

        var tiling = Optional<TilingOptions>(OnnxMetadataKeys.Tiling);
        double? marginWeight = null;
        if (tiling is not null)
        {
            var text = Required(OnnxMetadataKeys.TileMarginWeight);
            marginWeight = double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double w) && w >= 0 && w <= 1
                ? w
                : throw new InvalidDataException($"'{path}': metadata '{OnnxMetadataKeys.TileMarginWeight}' = '{text}' is not a weight in [0, 1].");
        }

        var references = Optional<ClassReferenceMap[]>(OnnxMetadataKeys.ReferenceMaps);
        bool referencesInGraph = false;
        if (references is not null)
        {
            var text = Required(OnnxMetadataKeys.ReferenceMapsInGraph);
            referencesInGraph = text switch
            {
                "true" => true,
                "false" => false,
                _ => throw new InvalidDataException($"'{path}': metadata '{OnnxMetadataKeys.ReferenceMapsInGraph}' = '{text}' is neither true nor false."),
            };
            if (references.Any(r => r is null || r.Values is null || r.Values.Count != (long)r.Height * r.Width))
            {
                throw new InvalidDataException($"'{path}': metadata '{OnnxMetadataKeys.ReferenceMaps}' holds a reference whose values do not fit its grid.");
            }
        }

        var info = new OnnxModelInfo
        {
            FormatVersion = version,
            LibraryVersion = Required(OnnxMetadataKeys.LibraryVersion),
            Opset = 0,
            InputSize = new GridSize(size[0], size[1]),
            PixelMean = Parse<double[]>(OnnxMetadataKeys.PixelMean, Required(OnnxMetadataKeys.PixelMean)),
            PixelStd = Parse<double[]>(OnnxMetadataKeys.PixelStd, Required(OnnxMetadataKeys.PixelStd)),
            Resize = Required(OnnxMetadataKeys.Resize),
            MapResize = Required(OnnxMetadataKeys.MapResize),
            Backbone = Required(OnnxMetadataKeys.Backbone),
            BackboneLayers = Parse<int[]>(OnnxMetadataKeys.BackboneLayers, Required(OnnxMetadataKeys.BackboneLayers)),
            ScoreKind = scoreKind,
            ScorePoolSize = Integer(OnnxMetadataKeys.ScorePoolSize),
            Tiling = tiling,
            TileMarginWeight = marginWeight,
            Calibration = calibration,
            ClassNames = Optional<string[]>(OnnxMetadataKeys.ClassNames),
            ReferenceMaps = references,
            ReferenceMapsInGraph = referencesInGraph,
            EpochsTrained = Integer(OnnxMetadataKeys.EpochsTrained),
            Options = options,
            Metadata = new Dictionary<string, string>(metadata, StringComparer.Ordinal),
        };

        // The summary keys repeat parts of the options: a file whose two disagree has been edited by hand.
        if (info.InputSize != options.InputSize || info.ScoreKind != options.ScoreKind || info.ScorePoolSize != options.ScorePoolSize || info.Backbone != options.Backbone || info.Tiling != options.Tiling)
        {
            throw new InvalidDataException($"'{path}': the metadata keys disagree with '{OnnxMetadataKeys.DetectorOptions}' (input size, image score, backbone or tiling).");
        }

        if (info.PixelMean.Count != 3 || info.PixelStd.Count != 3 || info.PixelStd.Any(s => !(s > 0)))
        {
            throw new InvalidDataException($"'{path}': metadata '{OnnxMetadataKeys.PixelMean}' and '{OnnxMetadataKeys.PixelStd}' need three values each, with positive deviations.");
        }

        return info;
    }

    /// <summary>The library's informational version.</summary>
    internal static string LibraryVersion() =>
        typeof(OnnxExport).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";
}
