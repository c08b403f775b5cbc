using System.Globalization;
using System.Text.Json;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;
using UniAD.Core.Tiling;

namespace UniAD.Core.Export;

/// <summary>
/// What an exported ONNX model tells a scorer about itself (its <c>metadata_props</c>, <see cref="OnnxMetadataKeys"/>):
/// the preprocessing, the image score, tiling, calibration, classes and reference maps. The one parser of the format,
/// without TorchSharp: UniAD.Onnx reads files with it and UniAD.Core's <c>OnnxExport.ReadInfo</c> builds its richer
/// record on top of it. The detector's configuration is kept as raw JSON (<see cref="DetectorOptionsJson"/>).
/// </summary>
public sealed record OnnxScoringInfo
{
    /// <summary>The format version of the file.</summary>
    public required int FormatVersion { get; init; }

    /// <summary>The UniAD.Core version that wrote it.</summary>
    public required string LibraryVersion { get; init; }

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

    /// <summary>The pooled-max window's width (and its height unless <see cref="ScorePoolHeight"/> differs).</summary>
    public required int ScorePoolSize { get; init; }

    /// <summary>The model family (<see cref="ModelFamilies"/>); <c>uniad</c> for files written before families existed.</summary>
    public string Family { get; init; } = ModelFamilies.UniAD;


    /// <summary>The pooled-max window's height: <see cref="ScorePoolSize"/> for a square window (the key is then absent).</summary>
    public required int ScorePoolHeight { get; init; }

    /// <summary>The tiling, or null for an untiled detector (the graph scores one tile; stitching is the runtime's).</summary>
    public TilingOptions? Tiling { get; init; }

    /// <summary>With tiling, the stitching weight of interior margins (<see cref="TileMaps.MarginWeight"/>); otherwise null.</summary>
    public double? TileMarginWeight { get; init; }

    /// <summary>The calibration, or null when the detector was not calibrated.</summary>
    public Calibration? Calibration { get; init; }

    /// <summary>The training data's class names, or null when not known.</summary>
    public IReadOnlyList<string>? ClassNames { get; init; }

    /// <summary>The per-class reference maps in class-index order, or null when the detector has none.</summary>
    public IReadOnlyList<ClassReferenceMap>? ReferenceMaps { get; init; }

    /// <summary>True when the graph applies <see cref="ReferenceMaps"/> (it then has the input <c>class_index</c>).</summary>
    public bool ReferenceMapsInGraph { get; init; }

    /// <summary>With one memory bank per class: the classes in the order of the graph's <c>bank_index</c> input (scoring then needs the class); otherwise null.</summary>
    public IReadOnlyList<string>? BankClasses { get; init; }

    /// <summary>Epochs trained.</summary>
    public required int EpochsTrained { get; init; }

    /// <summary>The detector's complete configuration (UniAD.Core's <c>DetectorOptions</c>) as the JSON object the file holds.</summary>
    public required string DetectorOptionsJson { get; init; }

    /// <summary>
    /// The graph's extra inputs must be the ones this metadata describes: <c>class_index</c> exactly when the graph applies
    /// reference maps, <c>bank_index</c> exactly when the model has one bank per class (both runtimes check a file alike).
    /// </summary>
    /// <exception cref="InvalidDataException">An input is missing or unexpected (named).</exception>
    internal void CheckGraphInputs(IReadOnlyCollection<string> inputNames, string path)
    {
        if (ReferenceMapsInGraph != inputNames.Contains(OnnxFormat.ClassIndexName))
        {
            throw new InvalidDataException($"'{path}': metadata '{OnnxMetadataKeys.ReferenceMapsInGraph}' says {ReferenceMapsInGraph}, but the graph {(inputNames.Contains(OnnxFormat.ClassIndexName) ? "has" : "lacks")} the input '{OnnxFormat.ClassIndexName}'.");
        }

        if ((BankClasses is not null) != inputNames.Contains(OnnxFormat.BankIndexName))
        {
            throw new InvalidDataException($"'{path}': metadata '{OnnxMetadataKeys.BankClasses}' is {(BankClasses is null ? "absent" : "present")}, but the graph {(inputNames.Contains(OnnxFormat.BankIndexName) ? "has" : "lacks")} the input '{OnnxFormat.BankIndexName}'.");
        }
    }

    /// <summary>How the reconstruction's linear layers are stored (<see cref="OnnxMetadataKeys.Quantization"/>; <see cref="OnnxQuantization.None"/> when a file predates the key).</summary>
    public OnnxQuantization Quantization { get; init; }

    /// <summary>Every metadata entry of the file, the caller's own included.</summary>
    public required IReadOnlyDictionary<string, string> Metadata { get; init; }

    /// <summary>The preprocessing that turns an image into the graph's input (PIL's BILINEAR resize to <see cref="InputSize"/>, then the normalisation).</summary>
    public PreprocessOptions Preprocess => new() { InputSize = InputSize, Mean = PixelMean, Std = PixelStd };

    /// <summary>
    /// Parses and checks the metadata entries of an exported model. <paramref name="source"/> names the file in messages.
    /// </summary>
    /// <exception cref="InvalidDataException">The entries are not UniAD's (no <see cref="OnnxMetadataKeys.Format"/>, or another format), a key is
    /// missing or unreadable (named), or the format version is newer than <see cref="OnnxFormat.FormatVersion"/> (both versions named).</exception>
    public static OnnxScoringInfo Parse(IReadOnlyDictionary<string, string> metadata, string source)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        ArgumentNullException.ThrowIfNull(source);
        if (!metadata.TryGetValue(OnnxMetadataKeys.Format, out var format))
        {
            throw new InvalidDataException($"'{source}' is an ONNX model without UniAD.Core metadata (no '{OnnxMetadataKeys.Format}' key): it was not written by ExportOnnx.");
        }

        if (format != OnnxFormat.FormatId)
        {
            throw new InvalidDataException($"'{source}' has '{OnnxMetadataKeys.Format}' = '{format}', not '{OnnxFormat.FormatId}'.");
        }

        var reader = new Reader(metadata, source);
        int version = reader.Integer(OnnxMetadataKeys.FormatVersion);
        if (version <= 0)
        {
            throw new InvalidDataException($"'{source}' claims UniAD ONNX format version {version}; versions start at 1.");
        }

        if (version > OnnxFormat.FormatVersion)
        {
            throw new InvalidDataException($"'{source}' uses UniAD ONNX format version {version}; this reader (UniAD.Core.Primitives {OnnxFormat.VersionOf(typeof(OnnxFormat).Assembly)}) reads up to version {OnnxFormat.FormatVersion}.");
        }

        var size = reader.Json<int[]>(OnnxMetadataKeys.InputSize);
        if (size.Length != 2 || size[0] <= 0 || size[1] <= 0)
        {
            throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.InputSize}' must be [height, width] with positive sides.");
        }

        var scoreText = reader.Required(OnnxMetadataKeys.ImageScore);
        if (!Enum.TryParse<ImageScoreKind>(scoreText, ignoreCase: false, out var scoreKind) || !Enum.IsDefined(scoreKind) || int.TryParse(scoreText, out _))
        {
            throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.ImageScore}' = '{scoreText}' is not an image score kind ({string.Join(", ", Enum.GetNames<ImageScoreKind>())}).");
        }

        var optionsJson = reader.Required(OnnxMetadataKeys.DetectorOptions);
        if (reader.Json<JsonElement>(OnnxMetadataKeys.DetectorOptions).ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.DetectorOptions}' is not a JSON object.");
        }

        var calibration = reader.Optional<Calibration>(OnnxMetadataKeys.Calibration);
        if (calibration?.Problem() is { } problem)
        {
            throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.Calibration}' is an impossible calibration: {problem}.");
        }

        var tiling = reader.Optional<TilingOptions>(OnnxMetadataKeys.Tiling);
        double? marginWeight = null;
        if (tiling is not null)
        {
            var text = reader.Required(OnnxMetadataKeys.TileMarginWeight);
            marginWeight = double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double w) && w >= 0 && w <= 1
                ? w
                : throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.TileMarginWeight}' = '{text}' is not a weight in [0, 1].");
            try
            {
                tiling.Validate(new GridSize(size[0], size[1]));
            }
            catch (ArgumentException ex)
            {
                throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.Tiling}' is impossible for tiles of {size[0]} x {size[1]}: {ex.Message}", ex);
            }
        }

        var references = reader.Optional<ClassReferenceMap[]>(OnnxMetadataKeys.ReferenceMaps);
        bool referencesInGraph = false;
        if (references is not null)
        {
            var text = reader.Required(OnnxMetadataKeys.ReferenceMapsInGraph);
            referencesInGraph = text switch
            {
                "true" => true,
                "false" => false,
                _ => throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.ReferenceMapsInGraph}' = '{text}' is neither true nor false."),
            };
            if (references.Any(r => r is null || r.ClassName is null || r.Values is null || r.Height < 1 || r.Width < 1 || r.Values.Count != (long)r.Height * r.Width))
            {
                throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.ReferenceMaps}' holds a reference whose values do not fit its grid.");
            }

            if (references.Any(r => !(r.Epsilon > 0) || !double.IsFinite(r.Epsilon) || r.Values.Any(v => !float.IsFinite(v) || v < 0)))
            {
                throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.ReferenceMaps}' holds negative or non-finite values or a non-positive epsilon.");
            }

            if (references.Select(r => r.ClassName).Distinct(StringComparer.Ordinal).Count() != references.Length)
            {
                throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.ReferenceMaps}' holds two references of one class.");
            }
        }

        var bankClasses = reader.Optional<string[]>(OnnxMetadataKeys.BankClasses);
        if (bankClasses is not null && (bankClasses.Length == 0 || bankClasses.Any(string.IsNullOrWhiteSpace) || bankClasses.Distinct(StringComparer.Ordinal).Count() != bankClasses.Length))
        {
            throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.BankClasses}' must list at least one class, each once and none empty.");
        }

        var quantization = OnnxQuantization.None;
        if (metadata.TryGetValue(OnnxMetadataKeys.Quantization, out var quantizationText) && !OnnxQuantizationNames.TryParse(quantizationText, out quantization))
        {
            throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.Quantization}' = '{quantizationText}' is not a quantization ({string.Join(", ", Enum.GetValues<OnnxQuantization>().Select(OnnxQuantizationNames.Of))}).");
        }

        var info = new OnnxScoringInfo
        {
            Family = ModelFamilies.Parse(metadata.TryGetValue(OnnxMetadataKeys.ModelFamily, out var family) ? family : null, source),
            FormatVersion = version,
            LibraryVersion = reader.Required(OnnxMetadataKeys.LibraryVersion),
            InputSize = new GridSize(size[0], size[1]),
            PixelMean = reader.Json<double[]>(OnnxMetadataKeys.PixelMean),
            PixelStd = reader.Json<double[]>(OnnxMetadataKeys.PixelStd),
            Resize = reader.Required(OnnxMetadataKeys.Resize),
            MapResize = reader.Required(OnnxMetadataKeys.MapResize),
            Backbone = reader.Required(OnnxMetadataKeys.Backbone),
            BackboneLayers = reader.Json<int[]>(OnnxMetadataKeys.BackboneLayers),
            ScoreKind = scoreKind,
            ScorePoolSize = reader.Integer(OnnxMetadataKeys.ScorePoolSize),
            ScorePoolHeight = metadata.ContainsKey(OnnxMetadataKeys.ScorePoolHeight) ? reader.Integer(OnnxMetadataKeys.ScorePoolHeight) : reader.Integer(OnnxMetadataKeys.ScorePoolSize),
            Tiling = tiling,
            TileMarginWeight = marginWeight,
            Calibration = calibration,
            ClassNames = reader.Optional<string[]>(OnnxMetadataKeys.ClassNames),
            ReferenceMaps = references,
            ReferenceMapsInGraph = referencesInGraph,
            BankClasses = bankClasses,
            EpochsTrained = reader.Integer(OnnxMetadataKeys.EpochsTrained),
            DetectorOptionsJson = optionsJson,
            Quantization = quantization,
            Metadata = new Dictionary<string, string>(metadata, StringComparer.Ordinal),
        };

        if (info.PixelMean.Count != 3 || info.PixelStd.Count != 3 || info.PixelStd.Any(s => !(s > 0)) || info.PixelMean.Any(m => !double.IsFinite(m)) || info.PixelStd.Any(s => !double.IsFinite(s)))
        {
            throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.PixelMean}' and '{OnnxMetadataKeys.PixelStd}' need three values each, with positive deviations.");
        }

        // The rules this format version names; a reader that knows no other must not guess.
        if (info.Resize != "pil-bilinear" || info.MapResize != "bilinear-half-pixel")
        {
            throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.Resize}' = '{info.Resize}' and '{OnnxMetadataKeys.MapResize}' = '{info.MapResize}'; this reader knows 'pil-bilinear' and 'bilinear-half-pixel'.");
        }

        if (info.ScorePoolSize < 1)
        {
            throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.ScorePoolSize}' = {info.ScorePoolSize} is not a positive window.");
        }

        if (info.ScorePoolHeight < 1)
        {
            throw new InvalidDataException($"'{source}': metadata '{OnnxMetadataKeys.ScorePoolHeight}' = {info.ScorePoolHeight} is not a positive window height.");
        }

        return info;
    }

    /// <summary>Reads typed values from the entries; every failure names the key.</summary>
    private sealed class Reader(IReadOnlyDictionary<string, string> metadata, string source)
    {
        public string Required(string key) => metadata.TryGetValue(key, out var value)
            ? value
            : throw new InvalidDataException($"'{source}' lacks the metadata key '{key}'.");

        public int Integer(string key)
        {
            var text = Required(key);
            return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value)
                ? value
                : throw new InvalidDataException($"'{source}': metadata '{key}' = '{text}' is not an integer.");
        }

        public T Json<T>(string key) => Parse<T>(key, Required(key));

        public T? Optional<T>(string key)
            where T : class => metadata.TryGetValue(key, out var text) ? Parse<T>(key, text) : null;

        private T Parse<T>(string key, string text)
        {
            try
            {
                var value = JsonSerializer.Deserialize<T>(text, OnnxFormat.Json);
                return value is null || (value is JsonElement { ValueKind: JsonValueKind.Null })
                    ? throw new InvalidDataException($"'{source}': metadata '{key}' is null.")
                    : value;
            }
            catch (JsonException ex)
            {
                throw new InvalidDataException($"'{source}': metadata '{key}' is not readable: {ex.Message}", ex);
            }
        }
    }
}
