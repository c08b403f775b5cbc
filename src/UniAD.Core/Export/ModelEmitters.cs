using UniAD.Core.Metrics;
using UniAD.Core.Models;

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
        return new[] { align, reconstruction[0], reconstruction[1] };
    }
}

/// <summary>UniAD's anomaly map (<see cref="Reconstruction.AnomalyMap.Compute"/>): √Σ_c (rec − align)², upsampled by the stride (bilinear, align_corners = true).</summary>
internal static class AnomalyMapEmitter
{
    /// <summary>Emits the map of <paramref name="featureRec"/> against <paramref name="featureAlign"/> (B x C x h x w): B x 1 x h·stride x w·stride.</summary>
    public static string Emit(OnnxGraph g, string scope, string featureRec, string featureAlign, int stride)
    {
        var diff = g.Sub(scope, featureRec, featureAlign);
        var error = g.Unary(scope, "Sqrt", g.ReduceSumKeepDims(scope, g.Mul(scope, diff, diff), 1));
        if (stride == 1)
        {
            return error;
        }

        var s = g.Shape(error);
        return g.ResizeBilinearAlignCorners(OnnxEmitContext.Child(scope, "upsample"), error, s[2] * stride, s[3] * stride);
    }
}

/// <summary>The image score of each map (B x 1 x H x W → B), as <c>AnomalyDetector</c> computes it for an <see cref="ImageScoreKind"/>.</summary>
internal static class ImageScoreEmitter
{
    /// <summary>Emits the score; a pooled max whose window does not fit the map is the plain max, as the detector does.</summary>
    /// <exception cref="NotSupportedException">An unknown score kind.</exception>
    public static string Emit(OnnxGraph g, string scope, string map, ImageScoreKind kind, int poolSize)
    {
        var s = g.Shape(map);
        var all = new long[] { 1, 2, 3 };
        switch (kind)
        {
            case ImageScoreKind.PooledMax when s[2] >= poolSize && s[3] >= poolSize:
                return g.Reduce(scope, "ReduceMax", g.AveragePool(scope, map, poolSize), all, keepDims: false);
            case ImageScoreKind.PooledMax:
            case ImageScoreKind.PlainMax:
                return g.Reduce(scope, "ReduceMax", map, all, keepDims: false);
            case ImageScoreKind.Mean:
                return g.Reduce(scope, "ReduceMean", map, all, keepDims: false);
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
