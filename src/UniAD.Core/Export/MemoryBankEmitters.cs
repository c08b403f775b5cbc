using UniAD.Core.MemoryBank;

namespace UniAD.Core.Export;

/// <summary>
/// The memory-bank model in ONNX: backbone → locally aware patch features → distance of every patch to its nearest bank
/// patch (the bank an initializer; |x|² − 2x·b + |b|², clamped at 0, minimum over the bank, square root, in one batched
/// matrix product) → the score grid upsampled bilinearly (half-pixel centres) to the input size → the Gaussian blur
/// (reflection padding, two 1-D convolutions). Output: the map, B x 1 x H x W.
/// </summary>
internal sealed class MemoryBankModelEmitter : OnnxEmitter<MemoryBankModel>
{
    /// <inheritdoc />
    protected override IReadOnlyList<string> Emit(OnnxEmitContext context, MemoryBankModel module, string scope, IReadOnlyList<string> inputs)
    {
        var g = context.Graph;
        var layers = context.Emit(module.Backbone, OnnxEmitContext.Child(scope, "backbone"), inputs[0]);
        var grid = module.PatchGrid;
        string featureScope = OnnxEmitContext.Child(scope, "patch_features");
        var parts = new List<string>();
        foreach (var layer in layers)
        {
            var local = module.Options.Neighbourhood == 1 ? layer : g.AveragePoolSame(featureScope, layer, module.Options.Neighbourhood);
            var s = g.Shape(local);
            parts.Add(s[2] == grid.Height && s[3] == grid.Width ? local : g.ResizeBilinearHalfPixel(featureScope, local, grid.Height, grid.Width));
        }

        var features = parts.Count == 1 ? parts[0] : g.Concat(featureScope, parts, 1);
        long width = module.FeatureWidth, cells = grid.Count;

        // Rows: B x (h·w) x D.
        string nn = OnnxEmitContext.Child(scope, "nearest_neighbour");
        var rows = g.Transpose(nn, g.Reshape(nn, features, new[] { -1, width, cells }), 0, 2, 1);
        var bank = OnnxGraph.Values(module.Bank);
        long k = module.Bank.shape[0];
        var bankT = new float[bank.Length];
        var norms = new float[k];
        for (long i = 0; i < k; i++)
        {
            double sum = 0;
            for (long d = 0; d < width; d++)
            {
                float v = bank[(i * width) + d];
                bankT[(d * k) + i] = v;
                sum += v * v;
            }

            norms[i] = (float)sum;
        }

        var products = g.MatMul(nn, rows, g.Initializer(OnnxEmitContext.Child(nn, "bank_t"), bankT, new[] { width, k }));
        var rowNorms = g.ReduceSumKeepDims(nn, g.Mul(nn, rows, rows), 2);
        var squared = g.Add(nn, g.Sub(nn, rowNorms, g.Mul(nn, g.Scalar(2f), products)), g.Initializer(OnnxEmitContext.Child(nn, "bank_norms"), norms, new[] { 1, k }));
        var nearest = g.Unary(nn, "Sqrt", g.Reduce(nn, "ReduceMin", g.Unary(nn, "Relu", squared), new long[] { 2 }, keepDims: false));
        var scores = g.Reshape(nn, nearest, new[] { -1, 1, (long)grid.Height, grid.Width });

        string mapScope = OnnxEmitContext.Child(scope, "map");
        var input = context.InputSize;
        var map = g.ResizeBilinearHalfPixel(mapScope, scores, input.Height, input.Width);
        return new[] { module.Options.Sigma > 0 ? MapSmoothingEmitter.Emit(g, mapScope, map, module.Options.Sigma) : map };
    }
}
