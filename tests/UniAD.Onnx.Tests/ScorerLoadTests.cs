using Onnx;
using UniAD.Core.Backbones;
using UniAD.Core.Export;
using UniAD.Core.Tests.Detection;
using UniAD.Core.Tests.Export;

namespace UniAD.Onnx.Tests;

/// <summary>
/// What Load refuses and how: files that are not ONNX, ONNX models from elsewhere, UniAD models with a missing or broken
/// key or of a newer format version (InvalidDataException naming the file and the key or versions), execution providers
/// whose native package is missing (PlatformNotSupportedException naming the package), impossible options; and a
/// disposed scorer.
/// </summary>
public sealed class ScorerLoadTests(SyntheticData data) : IClassFixture<SyntheticData>, IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("uniad-onnx-load-").FullName;

    [Fact]
    public void Files_that_are_not_uniad_models_are_refused_naming_the_file()
    {
        var absent = Path.Combine(root, "absent.onnx");
        Assert.Equal(absent, Assert.Throws<FileNotFoundException>(() => OnnxAnomalyScorer.Load(absent)).FileName);

        var text = Path.Combine(root, "notes.onnx");
        File.WriteAllText(text, "this is not a model\n");
        Assert.Contains(text, Assert.Throws<InvalidDataException>(() => OnnxAnomalyScorer.Load(text)).Message);

        var image = data.Train.Samples[0].ImagePath;
        Assert.Contains(image, Assert.Throws<InvalidDataException>(() => OnnxAnomalyScorer.Load(image)).Message);

        // An ONNX model from elsewhere: ML.NET's ResNet-18, which ONNX Runtime loads but which has no UniAD metadata.
        var mlnet = Path.Combine(AppContext.BaseDirectory, MlNetBackbone.RelativeModelPath);
        var foreign = Assert.Throws<InvalidDataException>(() => OnnxAnomalyScorer.Load(mlnet));
        Assert.Contains(OnnxMetadataKeys.Format, foreign.Message);
        Assert.Contains(mlnet, foreign.Message);
    }

    [Fact]
    public void An_untiled_scorer_reports_a_stretched_image_through_its_warning_callback()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var path = Path.Combine(root, "stretch.onnx");
        detector.ExportOnnx(path);
        var warnings = new List<string>();
        using var scorer = OnnxAnomalyScorer.Load(path, new OnnxScorerOptions { OnWarning = warnings.Add });
        var strip = new UniAD.Core.Data.RgbImage(300, 10, new byte[300 * 10 * 4]);
        scorer.Score(strip, "strip.png");
        var warning = Assert.Single(warnings);
        Assert.Contains("'strip.png' (300 x 10) is stretched", warning, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_keys_broken_values_newer_versions_and_mismatched_graphs_are_named()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var path = Path.Combine(root, "ours.onnx");
        detector.ExportOnnx(path);
        using (var scorer = OnnxAnomalyScorer.Load(path))
        {
            Assert.Equal(OnnxFormat.FormatVersion, scorer.Info.FormatVersion);
        }

        var newer = Rewrite(path, "newer.onnx", m => Entry(m, OnnxMetadataKeys.FormatVersion).Value = "2");
        var version = Assert.Throws<InvalidDataException>(() => OnnxAnomalyScorer.Load(newer));
        Assert.Contains(newer, version.Message);
        Assert.Contains("version 2", version.Message);
        Assert.Contains("up to version 1", version.Message);

        foreach (var key in new[] { OnnxMetadataKeys.InputSize, OnnxMetadataKeys.ImageScore, OnnxMetadataKeys.DetectorOptions, OnnxMetadataKeys.PixelStd })
        {
            var lacking = Rewrite(path, "lacking.onnx", m => m.MetadataProps.Remove(Entry(m, key)));
            var ex = Assert.Throws<InvalidDataException>(() => OnnxAnomalyScorer.Load(lacking));
            Assert.Contains(key, ex.Message);
            Assert.Contains(lacking, ex.Message);
        }

        var broken = Rewrite(path, "broken.onnx", m => Entry(m, OnnxMetadataKeys.Calibration, create: true).Value = "{not json");
        Assert.Contains(OnnxMetadataKeys.Calibration, Assert.Throws<InvalidDataException>(() => OnnxAnomalyScorer.Load(broken)).Message);

        // A threshold edited far outside the scores calibration saw (every image normal, or every one anomalous) is refused.
        foreach (var (threshold, shown) in new[] { ("1e308", "1E+308"), ("-1e30", "-1E+30") })
        {
            var edited = Rewrite(path, "edited.onnx", m => Entry(m, OnnxMetadataKeys.Calibration, create: true).Value =
                $$"""{"Method":"FalseAlarmRate","ImageThreshold":{{threshold}},"ImageMin":0.5,"ImageMax":2,"PixelThreshold":1,"PixelMin":0,"PixelMax":3,"Images":10}""");
            var refused = Assert.Throws<InvalidDataException>(() => OnnxAnomalyScorer.Load(edited)).Message;
            Assert.Contains($"image threshold {shown} outside the calibration's observed image scores [0.5, 2]", refused);
        }

        var other = Rewrite(path, "other.onnx", m => Entry(m, OnnxMetadataKeys.Format).Value = "Something.Else");
        Assert.Contains("Something.Else", Assert.Throws<InvalidDataException>(() => OnnxAnomalyScorer.Load(other)).Message);

        // Metadata that describes another graph: the input size, or reference maps the graph does not apply.
        var size = Rewrite(path, "size.onnx", m => Entry(m, OnnxMetadataKeys.InputSize).Value = "[96,96]");
        Assert.Contains("'images'", Assert.Throws<InvalidDataException>(() => OnnxAnomalyScorer.Load(size)).Message);
        var references = Rewrite(path, "references.onnx", m =>
        {
            Entry(m, OnnxMetadataKeys.ReferenceMaps, create: true).Value = """[{"ClassName":"a","Height":1,"Width":1,"Values":[1],"Epsilon":0.1,"Images":1}]""";
            Entry(m, OnnxMetadataKeys.ReferenceMapsInGraph, create: true).Value = "true";
        });
        Assert.Contains(OnnxFormat.ClassIndexName, Assert.Throws<InvalidDataException>(() => OnnxAnomalyScorer.Load(references)).Message);
    }

    [Theory]
    [InlineData(OnnxExecutionProvider.Cuda, "Microsoft.ML.OnnxRuntime.Gpu")]
    [InlineData(OnnxExecutionProvider.TensorRT, "Microsoft.ML.OnnxRuntime.Gpu")]
    [InlineData(OnnxExecutionProvider.DirectML, "Microsoft.ML.OnnxRuntime.DirectML")]
    [InlineData(OnnxExecutionProvider.OpenVINO, "Intel.ML.OnnxRuntime.OpenVino")]
    public void A_provider_whose_native_package_is_missing_names_the_package(OnnxExecutionProvider provider, string package)
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var path = Path.Combine(root, "provider.onnx");
        detector.ExportOnnx(path);
        Assert.Contains(OnnxExecutionProviders.NativeName(OnnxExecutionProvider.Cpu), OnnxExecutionProviders.Available());
        Assert.DoesNotContain(OnnxExecutionProviders.NativeName(provider), OnnxExecutionProviders.Available());
        var ex = Assert.Throws<PlatformNotSupportedException>(() => OnnxAnomalyScorer.Load(path, new OnnxScorerOptions { ExecutionProvider = provider }));
        Assert.Contains(package, ex.Message);
        Assert.Contains(provider.ToString(), ex.Message);
        Assert.Equal(package, OnnxExecutionProviders.PackageFor(provider));
    }

    [Fact]
    public void Impossible_options_and_a_disposed_scorer_fail_clearly()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var path = Path.Combine(root, "options.onnx");
        detector.ExportOnnx(path);
        Assert.Contains("IntraOpThreads", Assert.Throws<ArgumentException>(() => OnnxAnomalyScorer.Load(path, new OnnxScorerOptions { IntraOpThreads = -1 })).Message);
        Assert.Contains("TileBatchSize", Assert.Throws<ArgumentException>(() => OnnxAnomalyScorer.Load(path, new OnnxScorerOptions { TileBatchSize = 0 })).Message);
        Assert.Contains("DeviceId", Assert.Throws<ArgumentException>(() => OnnxAnomalyScorer.Load(path, new OnnxScorerOptions { DeviceId = -2 })).Message);
        Assert.Throws<ArgumentException>(() => OnnxAnomalyScorer.Load(path, new OnnxScorerOptions { ExecutionProvider = (OnnxExecutionProvider)42 }));

        var scorer = OnnxAnomalyScorer.Load(path, new OnnxScorerOptions { IntraOpThreads = 1 });
        var image = data.Test.Samples[0].ImagePath;
        Assert.Equal(image, scorer.Score(image).Source);
        Assert.Throws<ArgumentException>(() => scorer.ScoreBatch(Array.Empty<UniAD.Core.Data.RgbImage>()));
        Assert.Throws<ArgumentOutOfRangeException>(() => scorer.ScoreStream(new[] { image }, batchSize: 0));
        // Shared between threads (runs one at a time under the scorer's lock): the same results as one after another.
        var paths = data.Test.Samples.Select(s => s.ImagePath).ToArray();
        var sequential = paths.Select(p => scorer.Score(p).Score).ToArray();
        var concurrent = new double[paths.Length];
        Parallel.For(0, paths.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => concurrent[i] = scorer.Score(paths[i]).Score);
        Assert.Equal(sequential, concurrent);
        using (var quiet = OnnxAnomalyScorer.Load(path, new OnnxScorerOptions { IntraOpThreads = 2, AllowSpinning = false }))
        {
            Assert.Equal(sequential[0], quiet.Score(paths[0]).Score, 1e-6 * Math.Max(1, Math.Abs(sequential[0]))); // 1 and 2 intra-op threads may sum in another order
        }

        scorer.Dispose();
        scorer.Dispose(); // twice is fine
        Assert.Throws<ObjectDisposedException>(() => scorer.Score(image));
    }

    public void Dispose() => Directory.Delete(root, recursive: true);

    private static StringStringEntryProto Entry(ModelProto model, string key, bool create = false)
    {
        var entry = model.MetadataProps.SingleOrDefault(p => p.Key == key);
        if (entry is null && create)
        {
            entry = new StringStringEntryProto { Key = key };
            model.MetadataProps.Add(entry);
        }

        return entry ?? throw new InvalidOperationException($"no metadata key {key}");
    }

    private string Rewrite(string source, string name, Action<ModelProto> change) => OnnxParity.Rewrite(source, Path.Combine(root, name), change);
}
