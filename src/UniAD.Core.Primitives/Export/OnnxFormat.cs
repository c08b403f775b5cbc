using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace UniAD.Core.Export;

/// <summary>
/// The constants of UniAD's ONNX format, shared by the exporter (UniAD.Core's <c>OnnxExport</c>, which repeats them) and
/// every scorer (UniAD.Onnx): the format identifier and version, and the names of the graph's inputs and outputs.
/// </summary>
public static class OnnxFormat
{
    /// <summary>The format identifier stored under <see cref="OnnxMetadataKeys.Format"/>.</summary>
    public const string FormatId = "UniAD.Core.Onnx";

    /// <summary>The format version written, and the newest this reader understands.</summary>
    public const int FormatVersion = 1;

    /// <summary>The graph's input: float32 normalised images, <c>[batch, 3, H, W]</c>.</summary>
    public const string InputName = "images";

    /// <summary>
    /// The graph's second input when it applies per-class reference maps: int64 <c>[batch]</c>, each image's class as an
    /// index into <see cref="OnnxMetadataKeys.ReferenceMaps"/>.
    /// </summary>
    public const string ClassIndexName = "class_index";

    /// <summary>
    /// The graph's input when the model has one memory bank per class: int64 <c>[batch]</c>, each image's (or tile's) class
    /// as an index into <see cref="OnnxMetadataKeys.BankClasses"/>; the map is the distance to that class's bank.
    /// </summary>
    public const string BankIndexName = "bank_index";

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

    /// <summary>The informational version of an assembly (for messages and the metadata).</summary>
    internal static string VersionOf(Assembly assembly) =>
        assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";
}
