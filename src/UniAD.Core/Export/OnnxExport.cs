using System.Globalization;
using System.Text.Json;
using Google.Protobuf;
using Onnx;
using UniAD.Core.Detection;
using UniAD.Core.Files;
using UniAD.Core.Models;
using UniAD.Core.Tiling;
using static TorchSharp.torch;

namespace UniAD.Core.Export;

public static partial class OnnxExport
{
    /// <summary>The ONNX IR version written (IR 8 goes with opset 17).</summary>
    internal const long IrVersion = 8;

    /// <summary>
    /// Writes the detector's whole scoring graph as ONE ONNX model (opset <see cref="Opset"/>), atomically (a temporary
    /// file in the same folder, then a move). Input <see cref="InputName"/>: float32 <c>[batch, 3, H, W]</c> normalised as
    /// <see cref="AnomalyDetector.Preprocess"/> normalises (H x W = the input size; the batch is dynamic). Outputs
    /// <see cref="AnomalyMapName"/> (<c>[batch, 1, H, W]</c>, the maps of <see cref="AnomalyDetector.ScoreTensor"/> before any
    /// resize) and <see cref="ImageScoreName"/> (<c>[batch]</c>, the configured image score). With per-class reference maps
    /// (<see cref="AnomalyDetector.ReferenceMaps"/>) an untiled graph takes a second input <see cref="ClassIndexName"/> (int64
    /// <c>[batch]</c>) and divides each map by its class's reference. With one memory bank per class
    /// (<see cref="MemoryBank.MemoryBankOptions.PerClassBanks"/>) the graph, tiled or not, takes the input
    /// <see cref="BankIndexName"/> (int64 <c>[batch]</c>, an index into <see cref="OnnxModelInfo.BankClasses"/>). The detector's configuration,
    /// calibration and tiling are stored as metadata (<see cref="OnnxMetadataKeys"/>; <see cref="ReadInfo"/> reads them). With
    /// tiling, the graph scores one tile; cutting, stitching (and reference maps, which apply to the stitched map) are the
    /// runtime's. The same detector gives the same bytes.
    /// Runs under the detector's lock (<see cref="AnomalyDetector.UseModel{T}"/>).
    /// </summary>
    /// <exception cref="ObjectDisposedException">The detector was disposed.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder of <paramref name="path"/> does not exist.</exception>
    /// <exception cref="NotSupportedException">The model holds a module type the export does not know (named in the message).</exception>
    /// <exception cref="ArgumentException">The options are impossible (<see cref="OnnxExportOptions.Validate"/>).</exception>
    /// <exception cref="InvalidOperationException">A weight is NaN or infinite (nothing is written), or <paramref name="path"/> is the checkpoint the detector was loaded from.</exception>
    public static void ExportOnnx(this AnomalyDetector detector, string path, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(detector);
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= new OnnxExportOptions();
        options.Validate();
        var full = Path.GetFullPath(path);
        if (detector.SourcePath is { } source && PathIdentity.Same(source, full))
        {
            throw new InvalidOperationException($"Cannot export to '{full}': it is the checkpoint this detector was loaded from, which the ONNX file would overwrite. Name another file.");
        }

        var folder = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"Cannot export to '{full}': the folder '{folder}' does not exist.");
        }

        var model = detector.UseAnomalyModel(m =>
        {
            TorchSupport.Finiteness.RequireFinite(m, $"export '{full}'");
            return CreateModel(detector, m, options);
        });
        AtomicFile.Write(full, stream => model.WriteTo(stream));
    }

    /// <summary>The ONNX model of <paramref name="detector"/>, whose tensor model is <paramref name="model"/> (called under its lock).</summary>
    internal static ModelProto CreateModel(AnomalyDetector detector, IAnomalyModel model, OnnxExportOptions options)
    {
        var detectorOptions = detector.Options;
        var size = model.InputSize;

        // Untiled, per-class reference maps are part of the graph (a class index per image). Tiled, the detector divides
        // the STITCHED map by them, so the tile graph stays raw and the runtime applies them (they are in the metadata).
        var references = detector.ReferenceMaps;
        bool referencesInGraph = references is not null && detectorOptions.Tiling is null;
        var bankClasses = model.Classes?.ToArray(); // one memory bank per class: the bank index picks it
        var graph = new OnnxGraph("uniad");
        var context = new OnnxEmitContext(graph, OnnxEmitters.All(), size, options.Quantization);
        using (var scope = NewDisposeScope())
        using (var noGrad = no_grad())
        {
            var images = graph.Input(InputName, new[] { OnnxGraph.Batch, 3, size.Height, size.Width }, BatchDimension);
            var classIndex = referencesInGraph ? graph.Input(ClassIndexName, new[] { OnnxGraph.Batch }, BatchDimension, TensorProto.Types.DataType.Int64) : null;
            var bankIndex = bankClasses is null ? null : graph.Input(BankIndexName, new[] { OnnxGraph.Batch }, BatchDimension, TensorProto.Types.DataType.Int64);
            // Every family's emitter gives the anomaly map (B x 1 x H x W) as its last output (UniAD: feature_align, feature_rec, pred).
            var pred = context.Emit(model.Module, string.Empty, bankIndex is null ? new[] { images } : new[] { images, bankIndex })[^1];
            if (referencesInGraph)
            {
                pred = ReferenceMapEmitter.Emit(graph, "reference_maps", pred, classIndex!, references!);
            }

            var score = ImageScoreEmitter.Emit(graph, "image_score", pred, detectorOptions.ScoreKind, detectorOptions.ScoreWindowHeight, detectorOptions.ScorePoolSize);
            graph.Output(pred, AnomalyMapName, BatchDimension);
            graph.Output(score, ImageScoreName, BatchDimension);
        }

        // Protobuf cannot write a message of 2 GiB or more (external data files are not supported).
        long bytes = graph.Proto.Initializer.Sum(i => (long)i.RawData.Length);
        if (bytes > int.MaxValue - (64L << 20))
        {
            throw new NotSupportedException($"ONNX export: the model's weights take {bytes:N0} bytes; a single ONNX file holds less than 2 GiB.");
        }

        var proto = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "UniAD.Core",
            ProducerVersion = LibraryVersion(),
            Domain = "ai.uniad",
            ModelVersion = FormatVersion,
            DocString = $"UniAD.Core anomaly detector, family {model.Family} ({detectorOptions.Backbone}, {size.Height} x {size.Width}): {InputName} [batch, 3, H, W] normalised RGB -> {AnomalyMapName} [batch, 1, H, W], {ImageScoreName} [batch] ({detectorOptions.ScoreKind}).",
            Graph = graph.Proto,
        };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = string.Empty, Version = Opset });
        if (graph.UsesDomain(OnnxGraph.MicrosoftDomain))
        {
            proto.OpsetImport.Add(new OperatorSetIdProto { Domain = OnnxGraph.MicrosoftDomain, Version = 1 });
        }
        foreach (var (key, value) in DescribeMetadata(detectorOptions, detector.Calibration, detector.EpochsTrained, options, references, referencesInGraph, bankClasses))
        {
            proto.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        }

        return proto;
    }

    /// <summary>The metadata entries of a detector's export, in the order they are written.</summary>
    internal static IReadOnlyList<KeyValuePair<string, string>> DescribeMetadata(DetectorOptions options, Calibration? calibration, int epochsTrained, OnnxExportOptions export, ReferenceMaps? references, bool referencesInGraph, IReadOnlyList<string>? bankClasses = null)
    {
        var entries = new List<KeyValuePair<string, string>>();
        void Add(string key, string value) => entries.Add(new(key, value));
        Add(OnnxMetadataKeys.Format, FormatId);
        Add(OnnxMetadataKeys.FormatVersion, FormatVersion.ToString(CultureInfo.InvariantCulture));
        Add(OnnxMetadataKeys.LibraryVersion, LibraryVersion());
        Add(OnnxMetadataKeys.ModelFamily, options.Family);
        Add(OnnxMetadataKeys.InputSize, JsonSerializer.Serialize(new[] { options.InputSize.Height, options.InputSize.Width }, Json));
        Add(OnnxMetadataKeys.PixelMean, JsonSerializer.Serialize(options.PixelMean, Json));
        Add(OnnxMetadataKeys.PixelStd, JsonSerializer.Serialize(options.PixelStd, Json));
        Add(OnnxMetadataKeys.Resize, "pil-bilinear");
        Add(OnnxMetadataKeys.MapResize, "bilinear-half-pixel");
        Add(OnnxMetadataKeys.Backbone, options.Backbone);
        Add(OnnxMetadataKeys.BackboneLayers, JsonSerializer.Serialize(options.BackboneLayers, Json));
        Add(OnnxMetadataKeys.ImageScore, options.ScoreKind.ToString());
        Add(OnnxMetadataKeys.ScorePoolSize, options.ScorePoolSize.ToString(CultureInfo.InvariantCulture));
        if (options.ScorePoolHeight is { } poolHeight)
        {
            Add(OnnxMetadataKeys.ScorePoolHeight, poolHeight.ToString(CultureInfo.InvariantCulture));
        }
        Add(OnnxMetadataKeys.Quantization, OnnxQuantizationNames.Of(export.Quantization));
        if (options.Tiling is { } tiling)
        {
            Add(OnnxMetadataKeys.Tiling, JsonSerializer.Serialize(tiling, Json));
            Add(OnnxMetadataKeys.TileMarginWeight, Tiler.MarginWeight.ToString("R", CultureInfo.InvariantCulture));
        }

        if (calibration is not null)
        {
            Add(OnnxMetadataKeys.Calibration, JsonSerializer.Serialize(calibration, Json));
        }

        // The detector knows its training classes only through reference maps or per-class banks (fitted on normal training images).
        var ordered = references is null ? null : ReferenceMapEmitter.Ordered(references);
        if ((export.ClassNames ?? ordered?.Select(r => r.ClassName).ToArray() ?? bankClasses) is { } classes)
        {
            Add(OnnxMetadataKeys.ClassNames, JsonSerializer.Serialize(classes, Json));
        }

        if (ordered is not null)
        {
            Add(OnnxMetadataKeys.ReferenceMaps, JsonSerializer.Serialize(ordered, Json));
            Add(OnnxMetadataKeys.ReferenceMapsInGraph, referencesInGraph ? "true" : "false");
        }

        if (bankClasses is not null)
        {
            Add(OnnxMetadataKeys.BankClasses, JsonSerializer.Serialize(bankClasses, Json));
        }

        Add(OnnxMetadataKeys.EpochsTrained, epochsTrained.ToString(CultureInfo.InvariantCulture));
        Add(OnnxMetadataKeys.DetectorOptions, JsonSerializer.Serialize(options, Json));
        foreach (var (key, value) in (export.Metadata ?? new Dictionary<string, string>()).OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            Add(key, value);
        }

        return entries;
    }
}
