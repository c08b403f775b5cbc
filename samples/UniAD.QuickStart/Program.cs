// UniAD.Core quick start: one unified anomaly detector for several product classes, trained on CPU in a
// few minutes with no download. It generates a synthetic MVTec-AD-style data set (four classes: two
// textures, two objects; defects: scratches, spots, missing parts, colour changes), trains ONE model on
// the normal images of all classes at once, evaluates it per class, writes heat maps, and saves the
// detector. Its backbone is ML.NET's pretrained ImageNet ResNet-18, which NuGet ships (the package
// Microsoft.ML.DnnImageFeaturizer.ResNet18): real features, no download beyond the restore.
// Run: dotnet run -c Release --project samples/UniAD.QuickStart [-- [output-folder] [--random-backbone] [--model uniad|memory-bank]]
// --random-backbone trains the same network on a random (untrained) ResNet-18 instead, for comparison.
// --model memory-bank fits the training-free memory-bank detector (PatchCore) on the same data instead of training UniAD.
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;

var culture = CultureInfo.InvariantCulture;
var clock = Stopwatch.StartNew();
bool randomBackbone = args.Contains("--random-backbone");
int modelAt = Array.IndexOf(args, "--model");
string family = modelAt >= 0 && modelAt + 1 < args.Length ? args[modelAt + 1] : "uniad";
var unknown = args.Where((a, i) => a.StartsWith("--", StringComparison.Ordinal) && a is not ("--random-backbone" or "--model") && i != modelAt + 1).FirstOrDefault();
if (unknown is not null || (modelAt >= 0 && family is not ("uniad" or "memory-bank")))
{
    Console.Error.WriteLine($"unknown option '{unknown ?? family}'; usage: UniAD.QuickStart [output-folder] [--random-backbone] [--model uniad|memory-bank]");
    return 2;
}

bool memoryBank = family == "memory-bank";
var folder = args.Where((a, i) => !a.StartsWith("--", StringComparison.Ordinal) && i != modelAt + 1).FirstOrDefault();
var output = Path.GetFullPath(folder ?? Path.Combine(Path.GetTempPath(), "uniad-quickstart"));
var dataRoot = Path.Combine(output, "data");
if (Directory.Exists(dataRoot))
{
    Directory.Delete(dataRoot, recursive: true);
}

Directory.CreateDirectory(output);
const int size = 128;
const long seed = 133;
Console.WriteLine("UniAD.Core quick start: one unified model for four classes, trained on CPU, no download.");
var dataset = SyntheticDefects.Generate(dataRoot, new SyntheticDatasetOptions { ImageSize = size, TrainPerClass = 80, TestGoodPerClass = 20, TestPerDefect = 5, Seed = seed });
Console.WriteLine($"Data: {dataset.TrainImages} normal training images and {dataset.TestImages} test images of {string.Join(", ", dataset.Classes)} in {dataRoot}");
// 10 % of each class's normal training images are held out for calibration: thresholds never see the test split.
var (train, heldOut) = DataSplits.HoldOutNormal(MvtecAd.Open(dataRoot, DatasetSplit.Train), DataSplits.DefaultHoldoutFraction, seed);
var test = MvtecAd.Open(dataRoot, DatasetSplit.Test);
Console.WriteLine($"Splits: {train.Samples.Count} training images, {heldOut.Samples.Count} held-out normal training images (calibration), {test.Samples.Count} test images (metrics only).");

// A demo network smaller than the paper's, so that it trains in minutes on two CPU cores, on ML.NET's
// ImageNet ResNet-18 (mlnet-resnet18: the builder finds the package's ONNX file in the output folder):
// layers 1-3 resized to stride 16 give 8 x 8 tokens of a 128 x 128 image, and a 3 x 3 neighbor mask on
// that grid plays the part of the paper's 7 x 7 on 14 x 14. The paper's detector is simply
// `new AnomalyDetectorBuilder().WithBackboneWeights("efficientnet-b4-6ed6700e.pth").Build()`.
// With --model memory-bank: the training-free memory bank on the same backbone's layers 2-3 (a 16 x 16 patch grid of a
// 128 x 128 image), a 1 % coreset, the image score the smoothed map's maximum; Train fits it in one pass.
using var detector = memoryBank
    ? new AnomalyDetectorBuilder()
        .WithBackbone(randomBackbone ? "resnet18" : "mlnet-resnet18", layers: new[] { 2, 3 })
        .WithInputSize(size, size)
        .WithMemoryBank() // the preset's 1 % coreset
        .WithImageScore(ImageScoreKind.PlainMax)
        .WithSeed(seed)
        .WithLogging(NullLoggerFactory.Instance)
        .Build()
    : new AnomalyDetectorBuilder()
        .WithBackbone(randomBackbone ? "resnet18" : "mlnet-resnet18", layers: new[] { 1, 2, 3 })
        .WithInputSize(size, size)
        .WithNeckStride(16)
        .WithNeighborMask(3, 3)
        .WithReconstruction(o => o with { HiddenDim = 128, NumHeads = 4, NumEncoderLayers = 2, NumDecoderLayers = 2, FeedForwardDim = 256 })
        .WithImageScore(ImageScoreKind.PooledMax, poolSize: 16)
        .WithSeed(seed)
        .WithLogging(NullLoggerFactory.Instance)
        .Build();
var r = detector.Options.Reconstruction;
Console.WriteLine(memoryBank
    ? $"Memory bank (training-free): {(randomBackbone ? "RANDOM (untrained) ResNet-18" : "ML.NET's pretrained ImageNet ResNet-18")} layers 2-3, {size} x {size} input, a {detector.Options.MemoryBank!.CoresetRatio:P0} coreset of the normal patches."
    : $"Demo network (smaller than the paper's): {(randomBackbone ? "RANDOM (untrained) ResNet-18" : "ML.NET's pretrained ImageNet ResNet-18")} layers 1-3 ({r.InputChannels} channels), {size} x {size} input, " +
      $"{r.FeatureSize} tokens, width {r.HiddenDim}, {r.NumEncoderLayers}+{r.NumDecoderLayers} layers, neighbor mask {r.NeighborSize}, jitter {r.FeatureJitter?.Scale}.");

var epochs = randomBackbone ? 60 : 30;
var result = detector.Train(
    train,
    new TrainingOptions { Epochs = epochs, BatchSize = 8, Optimizer = new() { LearningRate = 1e-3 }, Seed = seed, CheckpointPath = Path.Combine(output, "checkpoint.safetensors"), CheckpointEvery = 0 },
    new Progress<TrainingProgress>(p =>
    {
        if (p.Stage == "training" && p.Step == p.Steps && (p.Epoch % 10 == 0 || p.Epoch == 1))
        {
            Console.WriteLine(string.Create(culture, $"  epoch {p.Epoch,3}/{p.Epochs}: loss {p.Loss:F4}  ({p.Elapsed.TotalSeconds:F0} s)"));
        }
    }));

var report = detector.Evaluate(test);
Console.WriteLine();
Console.WriteLine($"Test split ({test.Samples.Count} images):");
Console.WriteLine("| class | image AUROC | image AP | pixel AUROC | pixel AP | AU-PRO |");
Console.WriteLine("|---|---:|---:|---:|---:|---:|");
string imageKey = MetricKeys.ImageAuroc(detector.Options.ScoreKind), imageAp = MetricKeys.ImageAveragePrecision(detector.Options.ScoreKind), aupro = MetricKeys.PixelAuPro(0.3);
foreach (var row in report.Classes.Select(c => (c.Name, c.Values)).Append(("mean", report.Mean)))
{
    var v = row.Item2;
    Console.WriteLine(string.Create(culture, $"| {row.Item1} | {v[imageKey]:F3} | {v[imageAp]:F3} | {v[MetricKeys.PixelAuroc]:F3} | {v[MetricKeys.PixelAveragePrecision]:F3} | {v[aupro]:F3} |"));
}

double meanImage = report.Mean[imageKey], meanPixel = report.Mean[MetricKeys.PixelAuroc];
Console.WriteLine(string.Create(culture, $"Test split: mean image AUROC {meanImage:F3}, pixel AUROC {meanPixel:F3} (true values; the demo's goal is at least 0.97 for both: {(meanImage >= 0.97 && meanPixel >= 0.97 ? "met" : "NOT met")})."));
File.WriteAllText(Path.Combine(output, "metrics.md"), report.ToMarkdown());
File.WriteAllText(Path.Combine(output, "metrics.json"), report.ToJson());

// Thresholds from the held-out normal training images (1 % false-alarm rate), heat maps of some test images,
// then save and reload.
var calibration = detector.CalibrateOnValidation(heldOut, falseAlarmRate: 0.01);
Console.WriteLine(string.Create(culture, $"Calibration: false-alarm rate 1% on {calibration.Images} held-out normal training images: image threshold {calibration.ImageThreshold:G6}, pixel threshold {calibration.PixelThreshold:G6}."));
var heatmaps = Path.Combine(output, "heatmaps");
var shown = new ImageSource("examples", test.Samples.GroupBy(s => (s.ClassName, s.Label)).SelectMany(g => g.Take(2)));
var written = detector.SaveCompoundViews(shown, heatmaps);
var modelPath = Path.Combine(output, "detector.safetensors");
detector.Save(modelPath);
using (var reloaded = AnomalyDetector.Load(modelPath))
{
    var sample = test.Samples.First(s => s.Label != 0);
    var before = detector.Score(sample.ImagePath);
    var after = reloaded.Score(sample.ImagePath);
    Console.WriteLine();
    Console.WriteLine(string.Create(culture, $"Saved {modelPath} ({new FileInfo(modelPath).Length / 1e6:F1} MB); reloaded score of test image {Path.GetFileName(sample.ImagePath)}: {after.Score:G6} (before saving: {before.Score:G6}), anomalous (held-out threshold): {after.IsAnomalous}."));
}

Console.WriteLine($"Wrote {written.Count} heat maps (image | ground truth | predicted mask | overlay, labelled) to {heatmaps}, metrics to {output}.");
Console.WriteLine(string.Create(culture, $"Done in {clock.Elapsed.TotalSeconds:F0} s on {Environment.ProcessorCount} cores (CPU); {(detector.LastFit is { } fit ? $"a memory bank of {fit.BankSize} patches fitted in {result.Duration.TotalSeconds:F0} s" : $"{result.EpochsCompleted} epochs")}."));
Console.WriteLine();
Console.WriteLine("Real data: MvtecAd.Open(\"/path/to/mvtec_anomaly_detection\", DatasetSplit.Train) and the paper's network with");
Console.WriteLine("EfficientNet-PyTorch's efficientnet-b4-6ed6700e.pth (see README.md and docs/weights.md, docs/reproducing-mvtec.md).");
return 0;
