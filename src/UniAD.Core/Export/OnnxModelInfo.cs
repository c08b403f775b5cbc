using System.Text.Json;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;
using UniAD.Core.Tiling;

// Free of TorchSharp types: the keys and the parser of the metadata live in UniAD.Core.Primitives (OnnxMetadataKeys,
// OnnxScoringInfo.Parse), which the TorchSharp-free scorer UniAD.Onnx reads files with; this record adds what only
// UniAD.Core knows (the typed DetectorOptions and the graph's opset).
namespace UniAD.Core.Export;

/// <summary>
/// What an exported ONNX model says about itself (<see cref="OnnxExport.ReadInfo"/>): the shared, TorchSharp-free
/// <see cref="Scoring"/> part (what a scorer needs) plus the typed detector configuration and the graph's opset.
/// </summary>
public sealed record OnnxModelInfo
{
    /// <summary>The metadata as every scorer reads it (UniAD.Core.Primitives' <see cref="OnnxScoringInfo.Parse"/>).</summary>
    public required OnnxScoringInfo Scoring { get; init; }

    /// <summary>The ONNX operator set the graph uses.</summary>
    public required long Opset { get; init; }

    /// <summary>The detector's complete configuration (<see cref="OnnxScoringInfo.DetectorOptionsJson"/>, typed).</summary>
    public required DetectorOptions Options { get; init; }

    /// <summary>The format version of the file.</summary>
    public int FormatVersion => Scoring.FormatVersion;

    /// <summary>The UniAD.Core version that wrote it.</summary>
    public string LibraryVersion => Scoring.LibraryVersion;

    /// <summary>The input size (height x width) of the <c>images</c> input and of the <c>anomaly_map</c> output.</summary>
    public GridSize InputSize => Scoring.InputSize;

    /// <summary>Normalisation mean per channel (R, G, B).</summary>
    public IReadOnlyList<double> PixelMean => Scoring.PixelMean;

    /// <summary>Normalisation standard deviation per channel (R, G, B).</summary>
    public IReadOnlyList<double> PixelStd => Scoring.PixelStd;

    /// <summary>How images are resized to the input size (<c>pil-bilinear</c>).</summary>
    public string Resize => Scoring.Resize;

    /// <summary>How maps are resized to an image's size (<c>bilinear-half-pixel</c>).</summary>
    public string MapResize => Scoring.MapResize;

    /// <summary>The backbone's model name.</summary>
    public string Backbone => Scoring.Backbone;

    /// <summary>The backbone's output layers.</summary>
    public IReadOnlyList<int> BackboneLayers => Scoring.BackboneLayers;

    /// <summary>The image score the graph computes.</summary>
    public ImageScoreKind ScoreKind => Scoring.ScoreKind;

    /// <summary>The pooled-max window's width (its side when square).</summary>
    public int ScorePoolSize => Scoring.ScorePoolSize;

    /// <summary>The pooled-max window's height (<see cref="ScorePoolSize"/> when square).</summary>
    public int ScorePoolHeight => Scoring.ScorePoolHeight;

    /// <summary>The tiling, or null for an untiled detector (the graph scores one tile; stitching is the runtime's).</summary>
    public TilingOptions? Tiling => Scoring.Tiling;

    /// <summary>With tiling, the stitching weight of interior margins (<c>Tiler.MarginWeight</c>); otherwise null.</summary>
    public double? TileMarginWeight => Scoring.TileMarginWeight;

    /// <summary>The calibration, or null when the detector was not calibrated.</summary>
    public Calibration? Calibration => Scoring.Calibration;

    /// <summary>The training data's class names, or null when not known.</summary>
    public IReadOnlyList<string>? ClassNames => Scoring.ClassNames;

    /// <summary>The per-class reference maps in class-index order, or null when the detector has none.</summary>
    public IReadOnlyList<ClassReferenceMap>? ReferenceMaps => Scoring.ReferenceMaps;

    /// <summary>True when the graph applies <see cref="ReferenceMaps"/> (it then has the input <c>class_index</c>).</summary>
    public bool ReferenceMapsInGraph => Scoring.ReferenceMapsInGraph;

    /// <summary>With one memory bank per class: the classes in the order of the graph's <c>bank_index</c> input; otherwise null.</summary>
    public IReadOnlyList<string>? BankClasses => Scoring.BankClasses;

    /// <summary>Epochs trained.</summary>
    public int EpochsTrained => Scoring.EpochsTrained;

    /// <summary>Every metadata entry of the file, the caller's own (<see cref="OnnxExportOptions.Metadata"/>) included.</summary>
    public IReadOnlyDictionary<string, string> Metadata => Scoring.Metadata;
}

/// <summary>ONNX export of a detector's scoring graph and the reader of its metadata.</summary>
public static partial class OnnxExport
{
    /// <summary>The format identifier stored under <see cref="OnnxMetadataKeys.Format"/> (<see cref="OnnxFormat.FormatId"/>).</summary>
    public const string FormatId = OnnxFormat.FormatId;

    /// <summary>The format version this library writes and the newest it reads (<see cref="OnnxFormat.FormatVersion"/>).</summary>
    public const int FormatVersion = OnnxFormat.FormatVersion;

    /// <summary>The ONNX operator set of the exported graph.</summary>
    public const int Opset = 17;

    /// <summary>The graph's input: float32 normalised images, <c>[batch, 3, H, W]</c>.</summary>
    public const string InputName = OnnxFormat.InputName;

    /// <summary>
    /// The graph's second input when it applies per-class reference maps: int64 <c>[batch]</c>, each image's class as an
    /// index into <see cref="OnnxMetadataKeys.ReferenceMaps"/>.
    /// </summary>
    public const string ClassIndexName = OnnxFormat.ClassIndexName;

    /// <summary>The graph's input with one memory bank per class: int64 <c>[batch]</c>, each image's class as an index into <see cref="OnnxMetadataKeys.BankClasses"/>.</summary>
    public const string BankIndexName = OnnxFormat.BankIndexName;

    /// <summary>The graph's map output: float32 <c>[batch, 1, H, W]</c>.</summary>
    public const string AnomalyMapName = OnnxFormat.AnomalyMapName;

    /// <summary>The graph's score output: float32 <c>[batch]</c>.</summary>
    public const string ImageScoreName = OnnxFormat.ImageScoreName;

    /// <summary>The name of the dynamic batch dimension (<c>dim_param</c>).</summary>
    public const string BatchDimension = OnnxFormat.BatchDimension;

    /// <summary>The JSON settings of the metadata (<see cref="OnnxFormat"/>'s: enums as names, infinities as strings).</summary>
    internal static JsonSerializerOptions Json => OnnxFormat.Json;

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
        info.Scoring.CheckGraphInputs(inputs, path);

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

    /// <summary>
    /// Parses and checks the metadata entries of an exported model with the shared parser, then types the detector's
    /// configuration (<paramref name="path"/> is for messages).
    /// </summary>
    /// <exception cref="InvalidDataException">Not UniAD.Core's metadata, a key missing or unreadable, or a newer format version.</exception>
    internal static OnnxModelInfo ParseInfo(IReadOnlyDictionary<string, string> metadata, string path)
    {
        var scoring = OnnxScoringInfo.Parse(metadata, path);
        DetectorOptions options;
        try
        {
            options = JsonSerializer.Deserialize<DetectorOptions>(scoring.DetectorOptionsJson, Json)
                ?? throw new InvalidDataException($"'{path}': metadata '{OnnxMetadataKeys.DetectorOptions}' is null.");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"'{path}': metadata '{OnnxMetadataKeys.DetectorOptions}' is not readable: {ex.Message}", ex);
        }

        // The summary keys repeat parts of the options: a file whose two disagree has been edited by hand.
        if (scoring.InputSize != options.InputSize || scoring.ScoreKind != options.ScoreKind || scoring.ScorePoolSize != options.ScorePoolSize || scoring.ScorePoolHeight != options.ScoreWindowHeight || scoring.Backbone != options.Backbone || scoring.Tiling != options.Tiling)
        {
            throw new InvalidDataException($"'{path}': the metadata keys disagree with '{OnnxMetadataKeys.DetectorOptions}' (input size, image score, backbone or tiling).");
        }

        return new OnnxModelInfo { Scoring = scoring, Opset = 0, Options = options };
    }

    /// <summary>The library's informational version.</summary>
    internal static string LibraryVersion() => OnnxFormat.VersionOf(typeof(OnnxExport).Assembly);
}
