using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using TorchSharp.Modules;
using UniAD.Core.Detection;
using static TorchSharp.torch;
using DenseTensorF = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;

namespace UniAD.Core.Tests.Export;

/// <summary>What ONNX Runtime computes for a batch: the maps (B x H x W, row-major) and the image scores.</summary>
public sealed record OrtOutputs(float[] Maps, int[] MapShape, float[] Scores);

/// <summary>The largest absolute differences found, and the largest absolute expected values (the scale they compare with).</summary>
public sealed record ParityDiff(double Map, double MapScale, double Score, double ScoreScale)
{
    public override string ToString() =>
        $"max |diff| anomaly_map {Map:E2} (max |map| {MapScale:G4}), image_score {Score:E2} (max |score| {ScoreScale:G4})";
}

/// <summary>Runs exported models with ONNX Runtime and compares them with the detector's own scoring.</summary>
public static class OnnxParity
{
    /// <summary>The tolerance of every parity check: 1e-4 absolute or relative.</summary>
    public const double Tolerance = 1e-4;

    /// <summary>A session on an exported file (default optimisations, as a deployed scorer would use; 2 threads).</summary>
    public static InferenceSession Session(string path)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 2, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        return new InferenceSession(path, options);
    }

    /// <summary>Runs the session on normalised images (B x 3 x H x W), with each image's class index when the graph takes one.</summary>
    public static OrtOutputs Run(InferenceSession session, Tensor images, long[]? classIndex = null)
    {
        var shape = images.shape.Select(d => (int)d).ToArray();
        var data = images.to(float32).contiguous().data<float>().ToArray();
        var feeds = new List<NamedOnnxValue> { NamedOnnxValue.CreateFromTensor("images", new DenseTensorF(data, shape)) };
        if (classIndex is not null)
        {
            feeds.Add(NamedOnnxValue.CreateFromTensor("class_index", new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<long>(classIndex, new[] { classIndex.Length })));
        }

        using var results = session.Run(feeds, new[] { "anomaly_map", "image_score" });
        var map = results.First(r => r.Name == "anomaly_map").AsTensor<float>();
        var score = results.First(r => r.Name == "image_score").AsTensor<float>();
        return new OrtOutputs(map.ToArray(), map.Dimensions.ToArray(), score.ToArray());
    }

    /// <summary>
    /// Compares ONNX Runtime's outputs on <paramref name="images"/> with <see cref="AnomalyDetector.ScoreTensor"/>'s maps and
    /// scores: every value within 1e-4 absolute or relative. Returns the largest absolute differences and the scales.
    /// </summary>
    public static ParityDiff Compare(AnomalyDetector detector, InferenceSession session, Tensor images, string what, IReadOnlyList<string>? classNames = null, long[]? classIndex = null)
    {
        var expected = detector.ScoreTensor(images, classNames: classNames);
        var actual = Run(session, images, classIndex);
        int b = (int)images.shape[0], h = (int)images.shape[2], w = (int)images.shape[3];
        Assert.Equal(new[] { b, 1, h, w }, actual.MapShape);
        Assert.Equal(b, actual.Scores.Length);
        double mapDiff = 0, scoreDiff = 0, mapScale = 0, scoreScale = 0;
        for (int i = 0; i < b; i++)
        {
            var map = expected[i].Map.Values;
            Assert.Equal(h * w, map.Length);
            for (int j = 0; j < map.Length; j++)
            {
                double e = map[j], a = actual.Maps[(i * h * w) + j], d = Math.Abs(a - e);
                mapDiff = Math.Max(mapDiff, d);
                mapScale = Math.Max(mapScale, Math.Abs(e));
                if (!(d <= Math.Max(Tolerance, Tolerance * Math.Abs(e))))
                {
                    Assert.Fail($"{what}: anomaly_map of image {i} at pixel {j}: ONNX Runtime {a:G9}, detector {e:G9} (|diff| {d:E3} > 1e-4 abs/rel).");
                }
            }

            double es = expected[i].Score, s = actual.Scores[i], sd = Math.Abs(s - es);
            scoreDiff = Math.Max(scoreDiff, sd);
            scoreScale = Math.Max(scoreScale, Math.Abs(es));
            if (!(sd <= Math.Max(Tolerance, Tolerance * Math.Abs(es))))
            {
                Assert.Fail($"{what}: image_score of image {i}: ONNX Runtime {s:G9}, detector {es:G9} (|diff| {sd:E3} > 1e-4 abs/rel).");
            }
        }

        return new ParityDiff(mapDiff, mapScale, scoreDiff, scoreScale);
    }

    /// <summary>
    /// Random BatchNorm statistics and affine parameters in the backbone (a freshly built one has mean 0, variance 1,
    /// γ 1, β 0, which would leave the folding untested).
    /// </summary>
    public static void RandomizeBatchNorms(AnomalyDetector detector, long seed) => detector.UseModel(model =>
    {
        using var generator = new Generator((ulong)seed);
        using var noGrad = no_grad();
        foreach (var module in model.Backbone.modules())
        {
            if (module is BatchNorm2d bn)
            {
                long c = bn.running_mean!.shape[0];
                bn.running_mean!.copy_(randn(c, generator: generator).mul_(0.1));
                bn.running_var!.copy_(rand(c, generator: generator).mul_(0.5).add_(0.75));
                bn.weight!.copy_(randn(c, generator: generator).mul_(0.1).add_(1.0));
                bn.bias!.copy_(randn(c, generator: generator).mul_(0.1));
            }
        }

        model.Backbone.InvalidateFusedWeights();
        return 0;
    });

    /// <summary>A copy of the ONNX file <paramref name="source"/> at <paramref name="target"/>, changed by <paramref name="change"/> (for files a test breaks on purpose).</summary>
    public static string Rewrite(string source, string target, Action<ModelProto> change)
    {
        var model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(source));
        change(model);
        File.WriteAllBytes(target, model.ToByteArray());
        return target;
    }

    /// <summary>Normalised random images: N(0, 1) per value, like a normalised photograph's range.</summary>
    public static Tensor RandomImages(int batch, int height, int width, long seed)
    {
        using var generator = new Generator((ulong)seed);
        return randn(new long[] { batch, 3, height, width }, generator: generator);
    }
}
