using System.Text.Json;
using Google.Protobuf;
using Onnx;
using TorchSharp.Modules;
using UniAD.Core.Backbones;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Export;
using UniAD.Core.Metrics;
using UniAD.Core.Models;
using UniAD.Core.Reconstruction;
using UniAD.Core.Tests.Detection;
using UniAD.Core.Tiling;
using Xunit.Abstractions;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace UniAD.Core.Tests.Export;

/// <summary>
/// The export's contract beyond the numbers: the graph's interface, metadata and <see cref="OnnxExport.ReadInfo"/>,
/// determinism, tiling, calibrated labels from ONNX Runtime's outputs, and bad input (a disposed detector, a missing
/// folder, an unknown module type, files that are not UniAD models).
/// </summary>
public sealed class OnnxExportTests(SyntheticData data, ITestOutputHelper output) : IClassFixture<SyntheticData>, IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("uniad-onnx-").FullName;

    [Fact]
    public void The_graph_has_the_documented_interface_and_no_training_or_batchnorm_nodes()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var path = Path.Combine(root, "tiny.onnx");
        detector.ExportOnnx(path);
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        Assert.Equal(8, model.IrVersion);
        Assert.Equal(17, Assert.Single(model.OpsetImport).Version);

        var input = Assert.Single(model.Graph.Input);
        Assert.Equal("images", input.Name);
        Assert.Equal((int)TensorProto.Types.DataType.Float, input.Type.TensorType.ElemType);
        Assert.Equal(new[] { "batch", "3", "64", "64" }, Dims(input));
        Assert.Equal(new[] { "anomaly_map", "image_score" }, model.Graph.Output.Select(o => o.Name));
        Assert.Equal(new[] { "batch", "1", "64", "64" }, Dims(model.Graph.Output[0]));
        Assert.Equal(new[] { "batch" }, Dims(model.Graph.Output[1]));

        var ops = model.Graph.Node.Select(n => n.OpType).ToHashSet(StringComparer.Ordinal);
        Assert.DoesNotContain("Dropout", ops);
        Assert.DoesNotContain("BatchNormalization", ops); // folded into the convolutions
        Assert.Contains("LayerNormalization", ops);
        Assert.Contains("Resize", ops);
        Assert.Contains("AveragePool", ops);
        output.WriteLine($"{model.Graph.Node.Count} nodes, {model.Graph.Initializer.Count} initializers; operators: {string.Join(", ", ops.Order(StringComparer.Ordinal))}");
    }

    [Fact]
    public void Metadata_describes_the_detector_and_ReadInfo_reads_it_back()
    {
        using var detector = SyntheticData.TinyBuilder().WithTiling(new TilingOptions { Stride = new GridSize(48, 48), Margin = 8, ResizeWidth = 160 }).Build();
        detector.SetThresholds(0.5, 0.25);
        detector.SetSensitivity(0.7, 0.6);
        var path = Path.Combine(root, "described.onnx");
        var classes = new[] { "stripes", "disc" };
        detector.ExportOnnx(path, new OnnxExportOptions { ClassNames = classes, Metadata = new Dictionary<string, string> { ["model.name"] = "tiny" } });

        var info = OnnxExport.ReadInfo(path);
        Assert.Equal(OnnxExport.FormatVersion, info.FormatVersion);
        Assert.Equal(17, info.Opset);
        Assert.Equal(new GridSize(64, 64), info.InputSize);
        Assert.Equal(detector.Options.PixelMean, info.PixelMean);
        Assert.Equal(detector.Options.PixelStd, info.PixelStd);
        Assert.Equal("pil-bilinear", info.Resize);
        Assert.Equal("bilinear-half-pixel", info.MapResize);
        Assert.Equal("resnet18", info.Backbone);
        Assert.Equal(new[] { 1 }, info.BackboneLayers);
        Assert.Equal(detector.Options.ScoreKind, info.ScoreKind);
        Assert.Equal(4, info.ScorePoolSize);
        Assert.Equal(detector.Options.Tiling, info.Tiling);
        Assert.Equal(Tiler.MarginWeight, info.TileMarginWeight);
        Assert.Equal(detector.Calibration, info.Calibration);
        Assert.Equal(detector.Calibration!.EffectiveImageThreshold, info.Calibration!.EffectiveImageThreshold);
        Assert.Equal(0.7, info.Calibration.ImageSensitivity);
        Assert.Equal(double.NegativeInfinity, info.Calibration.EffectiveImageThreshold); // no score range: any sensitivity above 0.5 flags everything
        Assert.Equal(classes, info.ClassNames);
        Assert.Equal(0, info.EpochsTrained);
        Assert.Equal(JsonSerializer.Serialize(detector.Options, DetectorCheckpoint.Json), JsonSerializer.Serialize(info.Options, DetectorCheckpoint.Json));
        Assert.Equal("tiny", info.Metadata["model.name"]);
        Assert.All(info.Metadata.Keys.Where(k => k != "model.name"), k => Assert.StartsWith("uniad.", k, StringComparison.Ordinal));

        // ONNX Runtime sees the same entries.
        using var session = OnnxParity.Session(path);
        var map = session.ModelMetadata.CustomMetadataMap;
        Assert.Equal(OnnxExport.FormatId, map[OnnxMetadataKeys.Format]);
        Assert.Equal("[64,64]", map[OnnxMetadataKeys.InputSize]);
        output.WriteLine(string.Join(Environment.NewLine, info.Metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} = {kv.Value}")));

        // An untiled, uncalibrated detector without class names leaves those keys out.
        using var plain = SyntheticData.TinyBuilder().Build();
        var plainPath = Path.Combine(root, "plain.onnx");
        plain.ExportOnnx(plainPath);
        var plainInfo = OnnxExport.ReadInfo(plainPath);
        Assert.Null(plainInfo.Tiling);
        Assert.Null(plainInfo.TileMarginWeight);
        Assert.Null(plainInfo.Calibration);
        Assert.Null(plainInfo.ClassNames);
        Assert.False(plainInfo.Metadata.ContainsKey(OnnxMetadataKeys.Calibration));
        Assert.False(plainInfo.Metadata.ContainsKey(OnnxMetadataKeys.ScorePoolHeight)); // square: the key of older files is enough
        Assert.Equal((4, 4), (plainInfo.ScorePoolHeight, plainInfo.ScorePoolSize));
    }

    [Fact]
    public void A_rectangular_score_window_is_pooled_by_the_graph_and_described()
    {
        using var detector = SyntheticData.TinyBuilder().WithImageScore(ImageScoreKind.PooledMax, poolHeight: 3, poolWidth: 20).Build();
        OnnxParity.RandomizeBatchNorms(detector, seed: 13);
        var path = Path.Combine(root, "wide.onnx");
        detector.ExportOnnx(path);
        var info = OnnxExport.ReadInfo(path);
        Assert.Equal("3", info.Metadata[OnnxMetadataKeys.ScorePoolHeight]);
        Assert.Equal((3, 20), (info.ScorePoolHeight, info.ScorePoolSize));
        var pool = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path)).Graph.Node.Single(n => n.OpType == "AveragePool");
        Assert.Equal(new long[] { 3, 20 }, pool.Attribute.Single(a => a.Name == "kernel_shape").Ints);

        using var session = OnnxParity.Session(path);
        using var images = OnnxParity.RandomImages(3, 64, 64, seed: 17);
        var diff = OnnxParity.Compare(detector, session, images, "3 x 20 window");
        output.WriteLine($"3 x 20 score window: {diff}");

        // A file whose summary key disagrees with the options it carries was edited by hand.
        var edited = Path.Combine(root, "edited.onnx");
        OnnxParity.Rewrite(path, edited, m => m.MetadataProps.Single(p => p.Key == OnnxMetadataKeys.ScorePoolHeight).Value = "5");
        Assert.Contains("disagree", Assert.Throws<InvalidDataException>(() => OnnxExport.ReadInfo(edited)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_same_detector_gives_the_same_bytes_also_after_a_checkpoint_round_trip()
    {
        using var detector = SyntheticData.TinyBuilder().WithTiling(new TilingOptions { Stride = new GridSize(32, 32) }).Build();
        OnnxParity.RandomizeBatchNorms(detector, seed: 5);
        detector.FitReferenceMaps(data.Train);
        detector.Calibrate(data.Train, new CalibrationOptions { Method = CalibrationMethod.FalseAlarmRate, FalseAlarmRate = 0.1 });
        detector.SetSensitivity(0.55);
        string a = Path.Combine(root, "a.onnx"), b = Path.Combine(root, "b.onnx"), c = Path.Combine(root, "c.onnx");
        detector.ExportOnnx(a);
        detector.ExportOnnx(b);
        Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));

        var checkpoint = Path.Combine(root, "detector.safetensors");
        detector.Save(checkpoint);
        using (var loaded = AnomalyDetector.Load(checkpoint))
        {
            loaded.ExportOnnx(c);
        }

        Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(c));

        // Another seed is another model.
        using var other = SyntheticData.TinyBuilder().WithSeed(8).WithTiling(new TilingOptions { Stride = new GridSize(32, 32) }).Build();
        var d = Path.Combine(root, "d.onnx");
        other.ExportOnnx(d);
        Assert.NotEqual(File.ReadAllBytes(a), File.ReadAllBytes(d));
    }

    [Fact]
    public void A_tiled_detector_exports_the_tile_graph_and_its_tiling()
    {
        var tiling = new TilingOptions { Stride = new GridSize(48, 40), Margin = 8, Placement = TilePlacement.Spread };
        using var detector = SyntheticData.TinyBuilder().WithTiling(tiling).Build();
        OnnxParity.RandomizeBatchNorms(detector, seed: 6);
        var path = Path.Combine(root, "tiled.onnx");
        detector.ExportOnnx(path);
        var info = OnnxExport.ReadInfo(path);
        Assert.Equal(tiling, info.Tiling);
        Assert.Equal(new GridSize(64, 64), info.InputSize); // the tile is the input

        using var session = OnnxParity.Session(path);
        using var scope = NewDisposeScope();
        var diff = OnnxParity.Compare(detector, session, OnnxParity.RandomImages(3, 64, 64, seed: 9), "tiled detector, 3 tiles");
        output.WriteLine($"tiled (tile 64 x 64), batch 3: {diff}");
    }

    [Fact]
    public void Reference_maps_are_applied_by_the_graph_through_a_class_index_and_left_to_the_runtime_when_tiled()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        OnnxParity.RandomizeBatchNorms(detector, seed: 12);
        var references = detector.FitReferenceMaps(data.Train);
        var path = Path.Combine(root, "references.onnx");
        detector.ExportOnnx(path);
        var info = OnnxExport.ReadInfo(path);
        var classes = references.Classes.Keys.Order(StringComparer.Ordinal).ToArray();
        Assert.True(info.ReferenceMapsInGraph);
        Assert.Equal(classes, info.ReferenceMaps!.Select(r => r.ClassName));
        Assert.Equal(classes, info.ClassNames); // the classes the detector knows from its reference maps
        Assert.Equal(references.Classes[classes[0]].Values, info.ReferenceMaps![0].Values);

        using var session = OnnxParity.Session(path);
        Assert.Contains("class_index", session.InputMetadata.Keys);
        using var scope = NewDisposeScope();
        var names = new[] { classes[0], classes[1], classes[0] };
        var diff = OnnxParity.Compare(detector, session, OnnxParity.RandomImages(3, 64, 64, seed: 13), "reference maps", names, names.Select(n => (long)Array.IndexOf(classes, n)).ToArray());
        output.WriteLine($"reference maps in the graph, batch 3: {diff}");

        // Tiled: the detector divides the stitched map, so the tile graph stays raw and says so.
        using var tiled = SyntheticData.TinyBuilder().WithTiling(new TilingOptions { Stride = new GridSize(32, 32) }).Build();
        tiled.FitReferenceMaps(data.Train);
        var tiledPath = Path.Combine(root, "tiled-references.onnx");
        tiled.ExportOnnx(tiledPath);
        var tiledInfo = OnnxExport.ReadInfo(tiledPath);
        Assert.False(tiledInfo.ReferenceMapsInGraph);
        Assert.NotNull(tiledInfo.ReferenceMaps);
        using var tiledSession = OnnxParity.Session(tiledPath);
        Assert.DoesNotContain("class_index", tiledSession.InputMetadata.Keys);
        var tiles = OnnxParity.RandomImages(2, 64, 64, seed: 14);
        var raw = tiled.UseModel(m =>
        {
            using var noGrad = no_grad();
            using var result = m.forward(tiles);
            return result.Pred.clone();
        });
        var ort = OnnxParity.Run(tiledSession, tiles);
        var rawDiff = TensorAssert.Close(tensor(ort.Maps, new long[] { 2, 1, 64, 64 }), raw, OnnxParity.Tolerance, OnnxParity.Tolerance, "raw tile maps");
        output.WriteLine($"tiled with reference maps: raw tile maps, max |diff| {rawDiff:E2}");
    }

    [Fact]
    public void Labels_from_onnx_runtime_equal_the_detectors_on_a_synthetic_test_set()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        detector.Train(data.Train, SyntheticData.Quick(3));
        var calibration = detector.Calibrate(data.Train, new CalibrationOptions { Method = CalibrationMethod.FalseAlarmRate, FalseAlarmRate = 0.1 });
        detector.SetSensitivity(0.6);
        var path = Path.Combine(root, "calibrated.onnx");
        detector.ExportOnnx(path);
        var info = OnnxExport.ReadInfo(path);
        Assert.Equal(detector.Calibration, info.Calibration);
        double threshold = info.Calibration!.EffectiveImageThreshold, pixelThreshold = info.Calibration.EffectivePixelThreshold!.Value;

        var samples = data.Test.Samples;
        var expected = detector.ScoreBatch(samples.Select(s => s.ImagePath));
        using var session = OnnxParity.Session(path);
        using var scope = NewDisposeScope();
        var images = stack(samples.Select(s => ImagePreprocessor.LoadImage(s.ImagePath, detector.Preprocess)).ToArray());
        var ort = OnnxParity.Run(session, images);
        // Two runtimes agree within 1e-4 (the export's parity tolerance), so a value within that band of a threshold is a
        // near-tie that float order decides on each CPU: either label is right there. Everything farther must agree.
        double band = OnnxParity.Tolerance * Math.Max(1, Math.Abs(threshold)), pixelBand = OnnxParity.Tolerance * Math.Max(1, Math.Abs(pixelThreshold));
        int plane = 64 * 64, pixelMismatches = 0, anomalous = 0, nearTies = 0;
        double margin = double.PositiveInfinity;
        for (int i = 0; i < samples.Count; i++)
        {
            bool label = ort.Scores[i] >= threshold;
            Assert.True(expected[i].IsAnomalous == label || Math.Abs(ort.Scores[i] - threshold) <= band, $"{samples[i].ImagePath}: ONNX Runtime score {ort.Scores[i]:G9} gives {label}, the detector {expected[i].Score:G9} gives {expected[i].IsAnomalous} (threshold {threshold:G9}).");
            anomalous += label ? 1 : 0;
            margin = Math.Min(margin, Math.Abs(expected[i].Score - threshold));
            var mask = expected[i].Mask!;
            for (int j = 0; j < plane; j++)
            {
                float value = ort.Maps[(i * plane) + j];
                if ((value >= pixelThreshold ? 1 : 0) != mask[j])
                {
                    bool tie = Math.Abs(value - pixelThreshold) <= pixelBand;
                    nearTies += tie ? 1 : 0;
                    pixelMismatches += tie ? 0 : 1;
                }
            }
        }

        Assert.True(pixelMismatches == 0, $"{pixelMismatches} mask pixels differ farther than {pixelBand:E1} from the pixel threshold {pixelThreshold:G9} ({nearTies} near-ties).");
        output.WriteLine($"{samples.Count} test images ({samples.Count(s => s.IsAnomalous)} anomalous), {anomalous} flagged at the effective threshold {threshold:G6} ({calibration.Method}, sensitivity 0.6); smallest |score - threshold| {margin:E2}; pixel masks equal at {pixelThreshold:G6} but for {nearTies} near-ties");
    }

    [Fact]
    public void Bad_input_fails_clearly_and_leaves_no_file()
    {
        var disposed = SyntheticData.TinyBuilder().Build();
        disposed.Dispose();
        Assert.Throws<ObjectDisposedException>(() => disposed.ExportOnnx(Path.Combine(root, "disposed.onnx")));
        Assert.False(File.Exists(Path.Combine(root, "disposed.onnx")));

        using var detector = SyntheticData.TinyBuilder().Build();
        var missing = Path.Combine(root, "no-such-folder", "model.onnx");
        var ex = Assert.Throws<DirectoryNotFoundException>(() => detector.ExportOnnx(missing));
        Assert.Contains("no-such-folder", ex.Message);
        Assert.False(Directory.Exists(Path.GetDirectoryName(missing)));

        var prefixed = Assert.Throws<ArgumentException>(() => detector.ExportOnnx(Path.Combine(root, "x.onnx"), new OnnxExportOptions { Metadata = new Dictionary<string, string> { ["uniad.mine"] = "1" } }));
        Assert.Contains("uniad.mine", prefixed.Message);

        // The write is atomic: an existing file is replaced whole, and no temporary file stays behind.
        var target = Path.Combine(root, "replaced.onnx");
        File.WriteAllText(target, "an older file");
        detector.ExportOnnx(target);
        Assert.Equal(OnnxExport.FormatId, OnnxExport.ReadInfo(target).Metadata[OnnxMetadataKeys.Format]);
        Assert.Empty(Directory.EnumerateFiles(root, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public void An_unknown_module_type_is_named_and_the_old_file_is_kept()
    {
        var options = new DetectorOptions
        {
            Backbone = "custom",
            BackboneLayers = new[] { 1 },
            NeckStride = 8,
            InputSize = new GridSize(32, 32),
            Reconstruction = new ReconstructionOptions { InputChannels = 4, InputStride = 8, FeatureSize = new GridSize(4, 4), HiddenDim = 8, NumHeads = 2, NumEncoderLayers = 1, NumDecoderLayers = 1, FeedForwardDim = 8, NeighborSize = null },
        };
        var backbone = new PatchExtractor();
        var model = new UniADModel(backbone, new MfcnNeck(backbone.Channels, backbone.Strides, 8), new UniADReconstruction(options.Reconstruction));
        using var detector = new AnomalyDetector(options, model, CPU, null, calibration: null, epochsTrained: 0);
        var target = Path.Combine(root, "kept.onnx");
        File.WriteAllText(target, "kept");
        var ex = Assert.Throws<NotSupportedException>(() => detector.ExportOnnx(target));
        Assert.Contains(typeof(PatchExtractor).FullName!, ex.Message);
        Assert.Contains("backbone", ex.Message);
        Assert.Equal("kept", File.ReadAllText(target));
        Assert.Empty(Directory.EnumerateFiles(root, "*.tmp"));
    }

    [Fact]
    public void ReadInfo_refuses_files_that_are_not_uniad_models()
    {
        Assert.Throws<FileNotFoundException>(() => OnnxExport.ReadInfo(Path.Combine(root, "absent.onnx")));

        var text = Path.Combine(root, "notes.onnx");
        File.WriteAllText(text, "this is not a model\n");
        var notOnnx = Assert.Throws<InvalidDataException>(() => OnnxExport.ReadInfo(text));
        Assert.Contains(text, notOnnx.Message);

        var image = data.Train.Samples[0].ImagePath; // a PNG
        Assert.Contains(image, Assert.Throws<InvalidDataException>(() => OnnxExport.ReadInfo(image)).Message);

        // An ONNX model from elsewhere: ML.NET's ResNet-18, which has no UniAD metadata.
        var mlnet = Path.Combine(AppContext.BaseDirectory, MlNetBackbone.RelativeModelPath);
        var foreign = Assert.Throws<InvalidDataException>(() => OnnxExport.ReadInfo(mlnet));
        Assert.Contains(OnnxMetadataKeys.Format, foreign.Message);
        Assert.Contains(mlnet, foreign.Message);

        using var detector = SyntheticData.TinyBuilder().Build();
        var path = Path.Combine(root, "ours.onnx");
        detector.ExportOnnx(path);

        // A newer format version names both versions.
        var newer = Rewrite(path, "newer.onnx", m => m.MetadataProps.Single(p => p.Key == OnnxMetadataKeys.FormatVersion).Value = "2");
        var version = Assert.Throws<InvalidDataException>(() => OnnxExport.ReadInfo(newer));
        Assert.Contains("version 2", version.Message);
        Assert.Contains("up to version 1", version.Message);

        // A missing key is named.
        var lacking = Rewrite(path, "lacking.onnx", m => m.MetadataProps.Remove(m.MetadataProps.Single(p => p.Key == OnnxMetadataKeys.InputSize)));
        Assert.Contains(OnnxMetadataKeys.InputSize, Assert.Throws<InvalidDataException>(() => OnnxExport.ReadInfo(lacking)).Message);

        // Unreadable JSON names the key too.
        var broken = Rewrite(path, "broken.onnx", m => m.MetadataProps.Single(p => p.Key == OnnxMetadataKeys.DetectorOptions).Value = "{not json");
        Assert.Contains(OnnxMetadataKeys.DetectorOptions, Assert.Throws<InvalidDataException>(() => OnnxExport.ReadInfo(broken)).Message);
    }

    public void Dispose() => Directory.Delete(root, recursive: true);

    private string Rewrite(string source, string name, Action<ModelProto> change) => OnnxParity.Rewrite(source, Path.Combine(root, name), change);

    private static string[] Dims(ValueInfoProto value) =>
        value.Type.TensorType.Shape.Dim.Select(d => d.DimParam.Length > 0 ? d.DimParam : d.DimValue.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();

    /// <summary>A feature extractor the export does not know: one strided convolution.</summary>
    private sealed class PatchExtractor : FeatureExtractor
    {
        private readonly Conv2d patches;

        public PatchExtractor()
            : base(nameof(PatchExtractor), new[] { new FeatureInfo(1, 1, 4, 8) })
        {
            patches = Conv2d(3, 4, 8, stride: 8);
            RegisterComponents();
            Freeze();
        }

        public override string ModelName => "custom";

        public override bool IsUncomputedKey(string key) => false;

        protected override Tensor[] Extract(Tensor images) => new[] { patches.forward(images) };
    }
}
