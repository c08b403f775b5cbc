using UniAD.Core.Detection;
using UniAD.Core.Metrics;
using UniAD.Core.Tiling;

namespace UniAD.Core.Export;

/// <summary>
/// The metadata keys (<c>metadata_props</c>) of an ONNX model written by UniAD.Core's <c>ExportOnnx</c>. Lists and
/// records are JSON (enums as names), numbers invariant-culture text.
/// </summary>
public static class OnnxMetadataKeys
{
    /// <summary>Always <see cref="OnnxFormat.FormatId"/>.</summary>
    public const string Format = "uniad.format";

    /// <summary>The format version, an integer (<see cref="OnnxFormat.FormatVersion"/> when written).</summary>
    public const string FormatVersion = "uniad.format_version";

    /// <summary>The UniAD.Core version that wrote the file.</summary>
    public const string LibraryVersion = "uniad.library_version";

    /// <summary>The model family (<see cref="Detection.ModelFamilies"/>: <c>uniad</c> or <c>memory-bank</c>); absent in files written before families existed (UniAD).</summary>
    public const string ModelFamily = "uniad.model_family";

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

    /// <summary>
    /// The height of the pooled-max window when it is not square (<see cref="ScorePoolSize"/> is then its width); absent
    /// for a square window, and in every file written before rectangular windows existed.
    /// </summary>
    public const string ScorePoolHeight = "uniad.score_pool_height";

    /// <summary>The tiling (JSON of <see cref="TilingOptions"/>); absent for an untiled detector. The graph scores one tile.</summary>
    public const string Tiling = "uniad.tiling";

    /// <summary>With tiling: the stitching weight of pixels in a tile's interior margin (<c>Tiler.MarginWeight</c>).</summary>
    public const string TileMarginWeight = "uniad.tile_margin_weight";

    /// <summary>The calibration (JSON of <see cref="Detection.Calibration"/>, sensitivities and effective thresholds included); absent when uncalibrated.</summary>
    public const string Calibration = "uniad.calibration";

    /// <summary>The class names of the training data, JSON list: the exporter's <c>OnnxExportOptions.ClassNames</c>, else the classes of the reference maps, else those of the per-class memory banks; absent when none is known.</summary>
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

    /// <summary>
    /// With one memory bank per class: the classes (JSON list, ordinal order) in the order of the graph's <c>bank_index</c>
    /// input, which every run must then feed; absent for one bank and for other families.
    /// </summary>
    public const string BankClasses = "uniad.bank_classes";

    /// <summary>Epochs trained.</summary>
    public const string EpochsTrained = "uniad.epochs_trained";

    /// <summary>The complete <c>DetectorOptions</c> (UniAD.Core), JSON.</summary>
    public const string DetectorOptions = "uniad.detector_options";

    /// <summary>How the reconstruction's linear layers are stored: "none" (float32) or "dynamic-int8" (ONNX Runtime's DynamicQuantizeMatMul; the export option <c>OnnxQuantization.DynamicInt8</c>).</summary>
    public const string Quantization = "uniad.quantization";

    /// <summary>The prefix every key of the format has; the exporter's <c>OnnxExportOptions.Metadata</c> keys may not use it.</summary>
    public const string Prefix = "uniad.";
}

