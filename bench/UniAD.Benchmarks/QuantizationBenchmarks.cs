using System.Diagnostics;
using System.Globalization;
using UniAD.Core;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Export;
using UniAD.Core.Metrics;
using UniAD.Onnx;

/// <summary>
/// Group <c>quantization</c>: what <see cref="OnnxQuantization.DynamicInt8"/> costs in accuracy on real data. A saved
/// detector (<c>--model FILE</c>, e.g. the <c>real</c> group's <c>--save</c>) scores every test image of an MVTec-layout root
/// (<c>--data-root</c>, default <c>../shared/data/real-defects</c>) three ways: TorchSharp (<see cref="AnomalyDetector"/>),
/// its float32 ONNX export and its int8 export on ONNX Runtime's CPU provider. For each, per class: image AUROC of the
/// image scores and pixel AUROC of the maps at the original image size against the masks, with the same metric code; plus
/// the largest map difference against TorchSharp and the scoring time.
/// </summary>
internal static class QuantizationBenchmarks
{
    public static void Run(Func<string, string?> text, int threads)
    {
        var modelPath = text("--model") ?? throw new ArgumentException("--only quantization needs --model FILE (a saved detector, e.g. from --only real --save FILE).");
        var dataRoot = text("--data-root") is { } root ? Path.GetFullPath(root) : RealBenchmarks.DefaultDataRoot();
        threads = threads > 0 ? threads : 2;
        var folder = Directory.CreateTempSubdirectory("uniad-bench-int8-").FullName;
        try
        {
            using var detector = AnomalyDetector.Load(modelPath);
            var test = MvtecAd.Open(dataRoot, DatasetSplit.Test);
            var classes = test.ClassNames;
            Console.WriteLine($"model {modelPath}: {detector.Options.Backbone}, input {detector.Options.InputSize}, tiling {(detector.Options.Tiling is null ? "off" : "on")}, reference maps {(detector.ReferenceMaps is null ? "none" : string.Join(", ", detector.ReferenceMaps.Classes.Keys))}");
            Console.WriteLine($"test images of {dataRoot}: {test.Samples.Count} ({string.Join(", ", classes)}); {threads} threads");
            var floatPath = Path.Combine(folder, "float32.onnx");
            var int8Path = Path.Combine(folder, "int8.onnx");
            detector.ExportOnnx(floatPath);
            detector.ExportOnnx(int8Path, new OnnxExportOptions { Quantization = OnnxQuantization.DynamicInt8 });
            using var floatScorer = OnnxAnomalyScorer.Load(floatPath, new OnnxScorerOptions { IntraOpThreads = threads });
            using var int8Scorer = OnnxAnomalyScorer.Load(int8Path, new OnnxScorerOptions { IntraOpThreads = threads });
            var scorers = new (string Name, ImageScorer Scorer)[] { ("TorchSharp float32", detector), ("ONNX Runtime float32", floatScorer), ("ONNX Runtime int8", int8Scorer) };

            Console.WriteLine("| class | scorer | image AUROC | pixel AUROC | largest map difference to TorchSharp (of the map maximum) | scoring s |");
            Console.WriteLine("|---|---|---:|---:|---:|---:|");
            foreach (var className in classes)
            {
                var samples = test.Samples.Where(s => s.ClassName == className).ToList();
                var masks = samples.Select(s => (float[]?)null).ToArray();
                float[][]? reference = null;
                foreach (var (name, scorer) in scorers)
                {
                    var watch = Stopwatch.StartNew();
                    var results = samples.Select(s => scorer.Score(s.ImagePath, className)).ToList();
                    double seconds = watch.Elapsed.TotalSeconds;
                    var pixels = new PixelMetricsAccumulator(computeAuPro: false);
                    double worst = 0;
                    for (int i = 0; i < samples.Count; i++)
                    {
                        var map = results[i].Map;
                        masks[i] ??= Mask(samples[i], map.Height, map.Width);
                        pixels.Add(map.Values, masks[i], map.Height, map.Width);
                        if (reference is not null)
                        {
                            float max = System.Numerics.Tensors.TensorPrimitives.Max(reference[i]);
                            for (int j = 0; j < reference[i].Length; j++)
                            {
                                worst = Math.Max(worst, Math.Abs(map.Values[j] - reference[i][j]) / max);
                            }
                        }
                    }

                    reference ??= results.Select(r => r.Map.Values.ToArray()).ToArray();
                    double imageAuroc = BinaryClassification.Auroc(results.Select(r => r.Score).ToArray(), samples.Select(s => s.IsAnomalous).ToArray());
                    double pixelAuroc = pixels.Compute().Auroc;
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {className} | {name} | {imageAuroc:F4} | {pixelAuroc:F4} | {(name.StartsWith("TorchSharp", StringComparison.Ordinal) ? "-" : worst.ToString("P3", CultureInfo.InvariantCulture))} | {seconds:F0} |"));
                }
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>The sample's mask at the map's size (all zeros for a normal image), 0 or 1.</summary>
    private static float[] Mask(ImageSample sample, int height, int width)
    {
        if (sample.MaskPath is null)
        {
            return new float[height * width];
        }

        using var mask = ImagePreprocessor.LoadMask(sample.MaskPath, new PreprocessOptions { InputSize = new GridSize(height, width) });
        return mask.data<float>().ToArray();
    }
}
