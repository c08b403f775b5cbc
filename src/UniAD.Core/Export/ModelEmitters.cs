using TorchSharp;
using UniAD.Core.Detection;
using UniAD.Core.Metrics;
using UniAD.Core.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Export;

/// <summary>The whole tensor model: backbone → neck → reconstruction (with its map). Outputs: feature_align, feature_rec, pred.</summary>
internal sealed class UniADModelEmitter : OnnxEmitter<UniADModel>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, UniADModel module, string scope, IReadOnlyList<string> inputs)
    {
        var features = context.Emit(module.Backbone, OnnxEmitContext.Child(scope, "backbone"), inputs[0]);
        var align = context.Emit(module.Neck, OnnxEmitContext.Child(scope, "neck"), features.ToArray())[0];
        var reconstruction = context.Emit(module.Reconstruction, OnnxEmitContext.Child(scope, "reconstruction"), align);
        double sigma = module.Reconstruction.Options.MapSmoothingSigma;
        var map = sigma > 0 ? MapSmoothingEmitter.Emit(context.Graph, OnnxEmitContext.Child(scope, "map"), reconstruction[1], sigma) : reconstruction[1];
        return new[] { align, reconstruction[0], map };
    }
}

/// <summary>UniAD's anomaly map (<see cref="Reconstruction.AnomalyMap.Compute"/>): √Σ_c (rec − align)², upsampled by the stride (bilinear, align_corners = true).</summary>
internal static class AnomalyMapEmitter
{
    /// <summary>Emits the map of <paramref name="featureRec"/> against <paramref name="featureAlign"/> (B x C x h x w): B x 1 x h·stride x w·stride.</summary>
    public static string Emit(OnnxGraph g, string scope, string featureRec, string featureAlign, int stride, Reconstruction.ReconstructionObjective objective = Reconstruction.ReconstructionObjective.Mse)
    {
        string error;
        if (objective == Reconstruction.ReconstructionObjective.GlobalCosine)
        {
            // 1 − rec·align / (|rec| |align|) per position (libtorch's eps of 1e-8 never binds on real features).
            var dot = g.ReduceSumKeepDims(scope, g.Mul(scope, featureRec, featureAlign), 1);
            var norms = g.Mul(scope, Norm(g, scope, featureRec), Norm(g, scope, featureAlign));
            error = g.Sub(scope, g.Scalar(1f), g.Div(scope, dot, norms));
        }
        else
        {
            var diff = g.Sub(scope, featureRec, featureAlign);
            error = g.Unary(scope, "Sqrt", g.ReduceSumKeepDims(scope, g.Mul(scope, diff, diff), 1));
        }

        if (stride == 1)
        {
            return error;
        }

        var s = g.Shape(error);
        return g.ResizeBilinearAlignCorners(OnnxEmitContext.Child(scope, "upsample"), error, s[2] * stride, s[3] * stride);
    }

    private static string Norm(OnnxGraph g, string scope, string x) => g.Unary(scope, "Sqrt", g.ReduceSumKeepDims(scope, g.Mul(scope, x, x), 1));
}

/// <summary>
/// Per-class reference maps (<see cref="ReferenceMaps"/>) in the graph: each class's grid upsampled to the map size
/// (bilinear, half-pixel centres) plus its epsilon, as <see cref="ReferenceMaps.Normalize"/> computes it, stacked in
/// ordinal order of the class names (a constant K x 1 x H x W); every map is divided by the row its class index picks.
/// </summary>
internal static class ReferenceMapEmitter
{
    /// <summary>The classes in the order of the class index.</summary>
    public static IReadOnlyList<ClassReferenceMap> Ordered(ReferenceMaps references) =>
        references.Classes.Values.OrderBy(r => r.ClassName, StringComparer.Ordinal).ToArray();

    /// <summary>Emits <paramref name="map"/> (B x 1 x H x W) divided by the reference of <paramref name="classIndex"/> (int64, B).</summary>
    public static string Emit(OnnxGraph g, string scope, string map, string classIndex, ReferenceMaps references)
    {
        var s = g.Shape(map);
        long height = s[2], width = s[3], plane = height * width;
        var classes = Ordered(references);
        var values = new float[classes.Count * plane];
        for (int k = 0; k < classes.Count; k++)
        {
            var r = classes[k];
            using var scope2 = NewDisposeScope();
            using var grid = tensor(r.Values.ToArray(), new long[] { 1, 1, r.Height, r.Width }, device: CPU);
            var up = OnnxGraph.Values(F.interpolate(grid, new[] { height, width }, mode: InterpolationMode.Bilinear, align_corners: false));
            float epsilon = (float)r.Epsilon;
            for (long j = 0; j < plane; j++)
            {
                values[(k * plane) + j] = up[j] + epsilon;
            }
        }

        var table = g.Initializer(scope, values, new[] { (long)classes.Count, 1, height, width });
        return g.Div(scope, map, g.GatherRows(scope, table, classIndex));
    }
}

/// <summary>The image score of each map (B x 1 x H x W → B), as <c>AnomalyDetector</c> computes it for an <see cref="ImageScoreKind"/>.</summary>
internal static class ImageScoreEmitter
{
    /// <summary>Emits the score; a pooled max whose window does not fit the map is the plain max, as the detector does.</summary>
    /// <exception cref="NotSupportedException">An unknown score kind.</exception>
    public static string Emit(OnnxGraph g, string scope, string map, ImageScoreKind kind, int poolHeight, int poolWidth)
    {
        var s = g.Shape(map);
        var all = new long[] { 1, 2, 3 };
        switch (kind)
        {
            case ImageScoreKind.PooledMax when s[2] >= poolHeight && s[3] >= poolWidth:
                return g.Reduce(scope, "ReduceMax", g.AveragePool(scope, map, poolHeight, poolWidth), all, keepDims: false);
            case ImageScoreKind.PooledMax:
            case ImageScoreKind.PlainMax:
                return g.Reduce(scope, "ReduceMax", map, all, keepDims: false);
            case ImageScoreKind.Mean:
                return g.Reduce(scope, "ReduceMean", map, all, keepDims: false);
            case ImageScoreKind.TopMean:
                long pixels = s[2] * s[3];
                return g.TopKMean(scope, g.Reshape(scope, map, new[] { -1, pixels }), MapScore.TopCount(pixels));
            case ImageScoreKind.Std:
                // Population standard deviation: √mean((x − mean)²).
                var centred = g.Sub(scope, map, g.Reduce(scope, "ReduceMean", map, all, keepDims: true));
                return g.Unary(scope, "Sqrt", g.Reduce(scope, "ReduceMean", g.Mul(scope, centred, centred), all, keepDims: false));
            default:
                throw new NotSupportedException($"ONNX export: image score kind {kind}.");
        }
    }
}

/// <summary>Every module emitter the export knows (one per module type).</summary>
internal static class OnnxEmitters
{
    /// <summary>New instances of all emitters.</summary>
    public static IEnumerable<IOnnxEmitter> All() => new IOnnxEmitter[]
    {
        new UniADModelEmitter(),
        new MemoryBankModelEmitter(),
        new EfficientNetEmitter(),
        new MBConvBlockEmitter(),
        new ResNetEmitter(),
        new BasicBlockEmitter(),
        new BottleneckEmitter(),
        new MfcnNeckEmitter(),
        new UniADReconstructionEmitter(),
        new LearnedPositionEmbeddingEmitter(),
        new SinePositionEmbeddingEmitter(),
        new UniADTransformerEmitter(),
        new TransformerEncoderEmitter(),
        new TransformerDecoderEmitter(),
        new TransformerEncoderLayerEmitter(),
        new TransformerDecoderLayerEmitter(),
        new MultiheadAttentionEmitter(),
        new LinearEmitter(),
        new LayerNormEmitter(),
    };
}

/// <summary>
/// The separable Gaussian of <see cref="Models.MapSmoothing.GaussianBlur"/> (both families): per axis its kernel
/// (<see cref="Models.MapSmoothing.GaussianKernel"/>), reflection padding of the kernel's radius, a 1-D convolution.
/// </summary>
internal static class MapSmoothingEmitter
{
    /// <summary>Emits the blur of B x 1 x H x W <paramref name="map"/>.</summary>
    public static string Emit(OnnxGraph g, string scope, string map, double sigma)
    {
        var x = map;
        foreach (bool alongWidth in new[] { true, false })
        {
            var s = g.Shape(x);
            var k = Models.MapSmoothing.GaussianKernel(sigma, alongWidth ? s[3] : s[2]);
            int pad = k.Length / 2;
            var padded = pad == 0 ? x : alongWidth ? g.PadReflect(scope, x, 0, pad, 0, pad) : g.PadReflect(scope, x, pad, 0, pad, 0);
            var weight = g.Initializer(OnnxEmitContext.Child(scope, alongWidth ? "blur_row" : "blur_column"), k, alongWidth ? new long[] { 1, 1, 1, k.Length } : new long[] { 1, 1, k.Length, 1 });
            x = g.Conv(scope, padded, weight, null, new long[] { 1, 1 }, new long[] { 0, 0, 0, 0 }, 1);
        }

        return x;
    }
}
