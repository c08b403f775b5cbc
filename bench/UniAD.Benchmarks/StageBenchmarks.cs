using System.Diagnostics;
using System.Globalization;
using UniAD.Core.Backbones;
using UniAD.Core.Data;
using UniAD.Core.Metrics;
using UniAD.Core.Models;
using UniAD.Core.Reconstruction;
using static TorchSharp.torch;

/// <summary>
/// Group <c>stages</c>: where the time goes in the paper's pipeline (EfficientNet-B4 with random weights, MFCN, the
/// paper's reconstruction), batch 8. Scoring: decode (PNG files of 256 x 256), resize to 224 and normalise, backbone,
/// neck, reconstruction, map (error and upsampling to 224), map to the host and image score (pooling); every run
/// times each stage of one pass in turn, so the stages add up to a whole pass. Training (a step of the
/// reconstruction from given features): forward (jitter, dropout, loss), backward, clipping, optimizer.
/// Medians over runs; ms per batch and per image.
/// </summary>
internal static class StageBenchmarks
{
    private const int Batch = 8;

    public static void Run(int runs, int warmup)
    {
        var root = Directory.CreateTempSubdirectory("uniad-bench-stages-").FullName;
        try
        {
            SyntheticDefects.Generate(root, new SyntheticDatasetOptions { ImageSize = 256, TrainPerClass = 2, TestGoodPerClass = 2, TestPerDefect = 1, Seed = 5 });
            var files = MvtecAd.Open(root, DatasetSplit.Test).Samples.Select(s => s.ImagePath).Take(Batch).ToList();
            using var model = ScoringBenchmarks.PaperModel();
            model.eval();
            Scoring(model, files, runs, warmup);
            Console.WriteLine();
            Training(model.Reconstruction, runs, warmup);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static void Scoring(UniADModel model, List<string> files, int runs, int warmup)
    {
        var stages = new[] { "decode (8 PNGs, 256 x 256)", "resize to 224 + normalise", "backbone (EfficientNet-B4 blocks to 21)", "neck (MFCN, stride 16)", "reconstruction (4 + 4 layers)", "map (error, upsampling to 224)", "map to host + image score" };
        var times = stages.Select(_ => new List<double>()).ToArray();
        var options = new PreprocessOptions();
        const int slice = 2; // UniADModel.ExtractFeatures runs EfficientNet on the CPU in passes of 2 images
        for (int run = -warmup; run < runs; run++)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var t = new double[stages.Length];
            var watch = Stopwatch.StartNew();
            var decoded = files.Select(f => ImageDecoder.Decode(f)).ToList();
            t[0] = Lap(watch);
            var batch = stack(decoded.Select(d => ImagePreprocessor.ToTensor(d, options)).ToList());
            t[1] = Lap(watch);

            // The backbone and the neck on passes of 2 images, as UniADModel.ExtractFeatures runs them.
            var parts = new List<Tensor[]>();
            for (long i = 0; i < Batch; i += slice)
            {
                parts.Add(model.Backbone.forward(batch.narrow(0, i, Math.Min(slice, Batch - i))));
            }

            t[2] = Lap(watch);
            var align = cat(parts.Select(p => model.Neck.forward(p)).ToList(), 0);
            t[3] = Lap(watch);
            var rec = model.Reconstruction.Reconstruct(align);
            t[4] = Lap(watch);
            var pred = AnomalyMap.Compute(rec, align, model.Reconstruction.Options.InputStride);
            t[5] = Lap(watch);
            var map = pred.contiguous().cpu().data<float>().ToArray();
            int h = (int)pred.shape[2], w = (int)pred.shape[3];
            for (int i = 0; i < Batch; i++)
            {
                MapScore.Of(map.AsSpan(i * h * w, h * w), h, w, ImageScoreKind.PooledMax, 16);
            }

            t[6] = Lap(watch);
            if (run >= 0)
            {
                for (int s = 0; s < stages.Length; s++)
                {
                    times[s].Add(t[s]);
                }
            }
        }

        Print("scoring, batch 8", stages, times);
    }

    private static void Training(UniADReconstruction reconstruction, int runs, int warmup)
    {
        var stages = new[] { "forward (jitter, dropout 0.1, MSE)", "backward", "clip (0.1)", "optimizer (AdamW)" };
        var times = stages.Select(_ => new List<double>()).ToArray();
        var o = reconstruction.Options;
        using var features = randn(new long[] { Batch, o.InputChannels, o.FeatureSize.Height, o.FeatureSize.Width }, generator: new TorchSharp.torch.Generator(1));
        var parameters = reconstruction.parameters().ToList();
        using var optimizer = optim.AdamW(parameters, lr: 1e-4, weight_decay: 1e-4);
        reconstruction.train();
        for (int run = -warmup; run < runs; run++)
        {
            using var scope = NewDisposeScope();
            var t = new double[stages.Length];
            var watch = Stopwatch.StartNew();
            optimizer.zero_grad();
            var loss = AnomalyMap.Loss(reconstruction.Reconstruct(features), features);
            t[0] = Lap(watch);
            loss.backward();
            t[1] = Lap(watch);
            nn.utils.clip_grad_norm_(parameters, 0.1);
            t[2] = Lap(watch);
            optimizer.step();
            t[3] = Lap(watch);
            if (run >= 0)
            {
                for (int s = 0; s < stages.Length; s++)
                {
                    times[s].Add(t[s]);
                }
            }
        }

        reconstruction.eval();
        Print("training step of the reconstruction, batch 8", stages, times);
    }

    /// <summary>Milliseconds since the watch last started, and restarts it (one stage of a pass timed after another).</summary>
    internal static double Lap(Stopwatch watch)
    {
        double ms = watch.Elapsed.TotalMilliseconds;
        watch.Restart();
        return ms;
    }

    private static void Print(string title, string[] stages, List<double>[] times)
    {
        var medians = times.Select(t => Timing.Median(t.Order().ToArray())).ToArray();
        double total = medians.Sum();
        Console.WriteLine($"{title} (load {CompareBenchmarks.Load()}):");
        Console.WriteLine("| stage | ms per batch | ms per image | share |");
        Console.WriteLine("|---|---:|---:|---:|");
        for (int s = 0; s < stages.Length; s++)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {stages[s]} | {medians[s]:F1} | {medians[s] / Batch:F1} | {medians[s] * 100 / total:F0} % |"));
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| sum of the medians | {total:F1} | {total / Batch:F1} | |"));
    }
}
