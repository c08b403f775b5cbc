using System.Diagnostics;
using System.Globalization;
using UniAD.Core;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.MemoryBank;
using UniAD.Core.Tiling;
using static TorchSharp.torch;

/// <summary>
/// Group <c>bank-stages</c>: where the time goes when the memory-bank preset (<see cref="DetectorPreset.MemoryBank"/>)
/// scores one image at batch 1, the figure issue 27 sets a goal on (a KolektorSDD image, 500 x 1250, in at most 300 ms).
/// The preset is fitted on the normal training images of the real root (<c>--data ROOT</c>, default the shared sets);
/// then, for the first <c>--images N</c> (default 11; the first is a warm-up) test images of <c>--class NAME</c> (default
/// kolektorsdd), each run times every stage of one pass in turn: decode, resize to the working width, normalise and cut
/// into tiles, backbone, patch features, nearest-neighbour search, maps (upsampling and the Gaussian), stitching, and
/// the whole <see cref="AnomalyDetector.Score(string, string?)"/> call; "the rest" is the whole call minus the stages
/// (post-processing to the image's size, the image score, the verdict). Medians over the images, with the CPU flags and
/// the load average.
/// </summary>
internal static class BankStageBenchmarks
{
    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    public static void Run(Func<string, string?> text)
    {
        var root = text("--data") ?? RealBenchmarks.DefaultDataRoot();
        string className = text("--class") ?? "kolektorsdd";
        int count = int.Parse(text("--images") ?? "11", Invariant);
        var train = MvtecAd.Open(root, DatasetSplit.Train);
        var test = MvtecAd.Open(root, DatasetSplit.Test);
        string flags = MemoryBankBenchmarks.CpuFlags();
        using var detector = DetectorPreset.MemoryBank().WithSeed(133).Build();
        var clock = Stopwatch.StartNew();
        detector.Train(train, new TrainingOptions { BatchSize = 8 });
        Console.WriteLine(string.Create(Invariant, $"memory-bank preset fitted on {train.Samples.Count} images in {clock.Elapsed.TotalMinutes:F2} min ({detector.LastFit!.BankSize} patches); CPU flags {flags}; torch threads {get_num_threads()}; load average {File.ReadAllText("/proc/loadavg").Trim()}"));

        var files = test.Samples.Where(s => s.ClassName == className).Take(count).Select(s => s.ImagePath).ToList();
        if (files.Count < 2)
        {
            throw new ArgumentException($"--class {className}: {files.Count} test images under {root}; at least 2 are needed.");
        }

        var options = detector.Options;
        var tiling = options.Tiling!;
        var stages = new[] { "decode", "working size", "normalise + cut", "backbone", "patch features", "nearest neighbour", "maps", "stitch", "the rest", "whole Score call" };
        var times = stages.ToDictionary(s => s, _ => new List<double>());
        string shape = string.Empty;
        for (int i = 0; i < files.Count; i++)
        {
            var t = new Dictionary<string, double>();
            var w = Stopwatch.StartNew();
            var decoded = ImageDecoder.Decode(files[i]);
            t["decode"] = StageBenchmarks.Lap(w);
            var working = Tiler.WorkingImage(decoded, tiling, options.InputSize, files[i]);
            t["working size"] = StageBenchmarks.Lap(w);
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                var image = ImagePreprocessor.ToTensor(working, detector.Preprocess with { InputSize = new GridSize(working.Height, working.Width) });
                var grid = TileGrid.Create(new GridSize(working.Height, working.Width), options.InputSize, tiling.StrideFor(options.InputSize), tiling.Placement);
                var tiles = Tiler.Cut(image, grid);
                t["normalise + cut"] = StageBenchmarks.Lap(w);
                detector.UseAnomalyModel(m =>
                {
                    var model = (MemoryBankModel)m;
                    model.eval();
                    var layers = model.Backbone.forward(tiles);
                    t["backbone"] = StageBenchmarks.Lap(w);
                    var features = PatchFeatures.Embed(layers, model.Options.Neighbourhood);
                    t["patch features"] = StageBenchmarks.Lap(w);
                    var scores = PatchMemoryBank.PatchScores(features, model.Bank);
                    t["nearest neighbour"] = StageBenchmarks.Lap(w);
                    var maps = PatchMemoryBank.Maps(scores, options.InputSize.Height, options.InputSize.Width, model.Options.Sigma);
                    t["maps"] = StageBenchmarks.Lap(w);
                    _ = Tiler.Stitch(maps, grid, tiling.Margin);
                    t["stitch"] = StageBenchmarks.Lap(w);
                    shape = string.Create(Invariant, $"{decoded.Width} x {decoded.Height} -> working {working.Width} x {working.Height}, {grid.Count} tiles, {features.shape[2]} x {features.shape[3]} patches a tile, bank {model.Bank.shape[0]} x {model.Bank.shape[1]}");
                    return 0;
                });
            }

            w.Restart();
            _ = detector.Score(files[i]);
            t["whole Score call"] = StageBenchmarks.Lap(w);
            t["the rest"] = t["whole Score call"] - stages.Take(8).Sum(s => t[s]);
            if (i > 0)
            {
                foreach (var s in stages)
                {
                    times[s].Add(t[s]);
                }
            }
        }

        Console.WriteLine($"{className}: {shape}; median of {files.Count - 1} images (ms, batch 1):");
        Console.WriteLine("| stage | ms |");
        Console.WriteLine("|---|---:|");
        foreach (var s in stages)
        {
            var sorted = times[s].Order().ToList();
            Console.WriteLine(string.Create(Invariant, $"| {s} | {sorted[sorted.Count / 2]:F1} |"));
        }
    }
}
