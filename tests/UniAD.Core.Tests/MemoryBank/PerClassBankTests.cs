using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.MemoryBank;
using UniAD.Core.Metrics;
using UniAD.Core.Weights;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.MemoryBank;

/// <summary>
/// One memory bank per class inside one detector (<see cref="MemoryBankOptions.PerClassBanks"/>): each bank fitted from its
/// class alone, each image scored against its own class's bank, the class required by name, save/load, budgets.
/// </summary>
public sealed class PerClassBankTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("uniad-class-banks-").FullName;

    private (ImageSource Train, ImageSource Test) Data()
    {
        string data = Path.Combine(root, "data");
        SyntheticDefects.Generate(data, new SyntheticDatasetOptions { ImageSize = 64, TrainPerClass = 10, TestGoodPerClass = 6, TestPerDefect = 2, Seed = 21 });
        return (MvtecAd.Open(data, DatasetSplit.Train), MvtecAd.Open(data, DatasetSplit.Test));
    }

    private static AnomalyDetectorBuilder PerClass(Func<MemoryBankOptions, MemoryBankOptions>? configure = null) =>
        MemoryBankDetectorTests.Small(o => (configure ?? (x => x))(o with { PerClassBanks = true }));

    [Fact]
    public void Each_class_gets_a_bank_of_its_own_patches_and_each_image_is_scored_against_its_class_only()
    {
        var (train, test) = Data();
        using var detector = PerClass().Build();
        var result = detector.Train(train, new TrainingOptions { BatchSize = 8 });
        Assert.Equal(TrainingStopReason.Fitted, result.StopReason);
        var fit = detector.LastFit!;
        var classes = train.Samples.Select(s => s.ClassName).Distinct().Order(StringComparer.Ordinal).ToArray();
        Assert.True(classes.Length >= 2, $"{classes.Length} classes");
        Assert.Equal(classes, fit.ClassBankSizes!.Keys.ToArray());
        foreach (var c in classes)
        {
            long candidates = train.Samples.Count(s => s.ClassName == c) * 64L; // 8 x 8 patches each, all candidates
            Assert.Equal((int)Math.Round(0.1 * candidates), fit.ClassBankSizes[c]);
        }

        Assert.Equal(fit.ClassBankSizes.Values.Sum(), fit.BankSize);
        Assert.Equal(train.Samples.Count, fit.Samples);

        detector.UseAnomalyModel(m =>
        {
            var model = (MemoryBankModel)m;
            Assert.Equal(classes, model.Classes!.ToArray());
            Assert.Equal(0, model.Bank.shape[0]);
            using var scope = NewDisposeScope();
            var features = classes.ToDictionary(c => c, c => PatchFeatures.Rows(model.Embed(Images(detector, train.Samples.Where(s => s.ClassName == c)))));
            foreach (var c in classes)
            {
                // Every patch of a class's bank is one of that class's own training patches, not another class's.
                var bank = model.ClassBanks[c];
                float own = LargestGap(bank, features[c]);
                Assert.True(own < 1e-4f, $"class {c}: a bank patch is {own} from every patch of its class");
                foreach (var other in classes.Where(o => o != c))
                {
                    float foreign = LargestGap(bank, features[other]);
                    Assert.True(foreign > 0.1f, $"class {c} against {other}: {foreign}");
                }
            }

            // The map of a mixed batch: each image against its own class's bank, as the unified formula with that bank alone.
            var samples = classes.Select(c => test.Samples.First(s => s.ClassName == c && s.Label == 1)).ToList();
            var images = Images(detector, samples);
            var maps = model.Maps(images, samples.Select(s => (string?)s.ClassName).ToList());
            for (int i = 0; i < samples.Count; i++)
            {
                var expected = PatchMemoryBank.Maps(PatchMemoryBank.PatchScores(model.Embed(images.narrow(0, i, 1)), model.ClassBanks[samples[i].ClassName]), 64, 64, model.Options.Sigma);
                Assert.True(maps.narrow(0, i, 1).sub(expected).abs().max().item<float>() < 1e-4f, $"image {i} ({samples[i].ClassName})");
            }

            return 0;
        });

        var report = detector.Evaluate(test);
        double image = report.Mean[MetricKeys.ImageAuroc(ImageScoreKind.PlainMax)], pixel = report.Mean[MetricKeys.PixelAuroc];
        Console.WriteLine($"per-class banks on synthetic 64 x 64: image AUROC {image:F3}, pixel AUROC {pixel:F3}, banks {string.Join(", ", fit.ClassBankSizes.Select(kv => $"{kv.Key} {kv.Value}"))}");
        Assert.True(image >= 0.9, $"image AUROC {image:F3}");
        Assert.True(pixel >= 0.9, $"pixel AUROC {pixel:F3}");

        // Scoring needs the class, by name.
        var path = test.Samples[0].ImagePath;
        var none = Assert.Throws<ArgumentException>(() => detector.Score(path));
        Assert.Contains("memory bank per class", none.Message);
        Assert.Contains("pass the image's class", none.Message);
        var unknown = Assert.Throws<ArgumentException>(() => detector.Score(path, "widget"));
        Assert.Contains("No memory bank for class 'widget'", unknown.Message);
        Assert.Contains(classes[0], unknown.Message);
    }

    [Fact]
    public void Per_class_banks_survive_save_and_load_bit_for_bit_and_the_calibration_uses_each_class_bank()
    {
        var (train, test) = Data();
        using var detector = PerClass().Build();
        var (fitSet, heldOut) = DataSplits.HoldOutNormal(train, 0.3, 7);
        detector.Train(fitSet);
        var calibration = detector.CalibrateOnValidation(heldOut, new CalibrationOptions { FalseAlarmRate = 0.1, MinimumNormalImages = 4 });
        Assert.True(double.IsFinite(calibration.ImageThreshold));
        string file = Path.Combine(root, "class-banks.safetensors");
        detector.Save(file);
        var (tensors, _) = SafetensorsFile.Read(file);
        using (tensors)
        {
            var classes = fitSet.Samples.Select(s => s.ClassName).Distinct().Order(StringComparer.Ordinal).ToArray();
            Assert.Equal(classes.Select(c => "model." + MemoryBankModel.ClassBankPrefix + c), tensors.Keys.Where(k => k.StartsWith("model.banks.", StringComparison.Ordinal)).Order(StringComparer.Ordinal));
            Assert.DoesNotContain("model." + MemoryBankModel.BankKey, tensors.Keys);
        }

        using var loaded = AnomalyDetector.Load(file);
        Assert.True(loaded.Options.MemoryBank!.PerClassBanks);
        Assert.Equal(calibration.ImageThreshold, loaded.Calibration!.ImageThreshold);
        foreach (var sample in test.Samples.Take(6))
        {
            var a = detector.Score(sample.ImagePath, sample.ClassName);
            var b = loaded.Score(sample.ImagePath, sample.ClassName);
            Assert.Equal(a.Score, b.Score);
            Assert.Equal(a.Map.Values.ToArray(), b.Map.Values.ToArray());
            Assert.Equal(a.IsAnomalous, b.IsAnomalous);
        }
    }

    [Fact]
    public void Banks_are_set_by_kind_checked_by_class_and_budgeted_per_class()
    {
        var (train, _) = Data();
        using var unified = MemoryBankDetectorTests.Small().Build();
        using var perClass = PerClass().Build();
        using (var patches = ones(3, 384))
        {
            var one = new Dictionary<string, Tensor> { ["a"] = patches };
            Assert.Contains("use SetBank", Assert.Throws<InvalidOperationException>(() => unified.UseAnomalyModel(m => { ((MemoryBankModel)m).SetClassBanks(one); return 0; })).Message);
            Assert.Contains("use SetClassBanks", Assert.Throws<InvalidOperationException>(() => perClass.UseAnomalyModel(m => { ((MemoryBankModel)m).SetBank(patches); return 0; })).Message);
            using var bad = patches.clone();
            bad[1, 2] = tensor(float.NaN);
            var nan = Assert.Throws<ArgumentException>(() => perClass.UseAnomalyModel(m => { ((MemoryBankModel)m).SetClassBanks(new Dictionary<string, Tensor> { ["a"] = patches, ["b"] = bad }); return 0; }));
            Assert.Contains("class 'b'", nan.Message);
            Assert.Contains("NaN", nan.Message);
            using var narrow = ones(3, 5);
            Assert.Contains("class 'a' must be K x 384", Assert.Throws<ArgumentException>(() => perClass.UseAnomalyModel(m => { ((MemoryBankModel)m).SetClassBanks(new Dictionary<string, Tensor> { ["a"] = narrow }); return 0; })).Message);
            Assert.False(perClass.UseAnomalyModel(m => ((MemoryBankModel)m).IsFitted)); // a refused set leaves the model as it was
        }

        // Memory is checked for every class before any image is read, naming the class.
        using var small = PerClass(o => o with { MaxFitBytes = 1 << 16 }).Build();
        var ex = Assert.Throws<ArgumentException>(() => small.Train(train));
        Assert.Contains("(class '", ex.Message);
        Assert.Null(small.LastFit);

        // A time limit shrinks every class's bank rather than the fit running long.
        using var hurried = PerClass(o => o with { CoresetTimeLimit = TimeSpan.FromTicks(1) }).Build();
        var result = hurried.Train(train);
        Assert.Equal(TrainingStopReason.TimeBudget, result.StopReason);
        Assert.All(hurried.LastFit!.ClassBankSizes!.Values, size => Assert.True(size < 64, $"bank of {size}"));

        // A training image without a class is refused by path.
        var classless = new ImageSource("classless", train.Samples.Select((s, i) => i == 3 ? s with { ClassName = " " } : s));
        using var strict = PerClass().Build();
        var missing = Assert.Throws<ArgumentException>(() => strict.Train(classless));
        Assert.Contains(train.Samples[3].ImagePath, missing.Message);
    }

    /// <summary>The largest, over the rows of <paramref name="bank"/>, of the smallest largest-coordinate difference to a row of <paramref name="rows"/> (0 when every bank row is one of them).</summary>
    private static float LargestGap(Tensor bank, Tensor rows)
    {
        using var scope = NewDisposeScope();
        return (bank.unsqueeze(1) - rows.unsqueeze(0)).abs().amax(2).amin(1).max().item<float>();
    }

    /// <summary>Decodes and normalises samples as the detector does (B x 3 x 64 x 64).</summary>
    private static Tensor Images(AnomalyDetector detector, IEnumerable<ImageSample> samples) =>
        stack(samples.Select(s => ImagePreprocessor.ToTensor(ImageDecoder.Decode(s.ImagePath), detector.Preprocess)).ToArray());

    public void Dispose() => Directory.Delete(root, recursive: true);
}
