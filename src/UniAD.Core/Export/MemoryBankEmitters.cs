using UniAD.Core.MemoryBank;

namespace UniAD.Core.Export;

/// <summary>
/// The memory-bank model in ONNX: backbone → locally aware patch features → distance of every patch to its nearest bank
/// patch (the bank an initializer; |x|² − 2x·b + |b|², clamped at 0, minimum over the bank, square root, in one batched
/// matrix product) → the score grid upsampled bilinearly (half-pixel centres) to the input size → the Gaussian blur
/// (reflection padding, two 1-D convolutions). Output: the map, B x 1 x H x W. With one bank per class the emitter takes a
/// second input, the int64 bank index of each image (<see cref="OnnxExport.BankIndexName"/>), and measures each image's
/// patches against its class's bank only.
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
        var rowNorms = g.ReduceSumKeepDims(nn, g.Mul(nn, rows, rows), 2);
        string products, bankNorms;
        if (module.Options.PerClassBanks)
        {
            // One bank per class, stacked C x D x Kmax (a shorter bank padded with copies of its own first patch, which
            // leaves its minimum unchanged); each image's bank is gathered by its bank index: B x D x Kmax.
            var banks = module.ClassBanks.Values.ToArray();
            long kmax = banks.Max(b => b.shape[0]);
            var stacked = new float[banks.Length * width * kmax];
            var norms = new float[banks.Length * kmax];
            for (int c = 0; c < banks.Length; c++)
            {
                Transposed(OnnxGraph.Values(banks[c]), banks[c].shape[0], width, kmax, stacked.AsSpan((int)(c * width * kmax)), norms.AsSpan((int)(c * kmax)));
            }

            var bankIndex = inputs[1];
            products = g.MatMul(nn, rows, g.GatherRows(nn, g.Initializer(OnnxEmitContext.Child(nn, "bank_t"), stacked, new[] { banks.Length, width, kmax }), bankIndex));
            bankNorms = g.GatherRows(nn, g.Initializer(OnnxEmitContext.Child(nn, "bank_norms"), norms, new[] { banks.Length, 1, kmax }), bankIndex);
        }
        else
        {
            long k = module.Bank.shape[0];
            var bankT = new float[width * k];
            var norms = new float[k];
            Transposed(OnnxGraph.Values(module.Bank), k, width, k, bankT, norms);
            products = g.MatMul(nn, rows, g.Initializer(OnnxEmitContext.Child(nn, "bank_t"), bankT, new[] { width, k }));
            bankNorms = g.Initializer(OnnxEmitContext.Child(nn, "bank_norms"), norms, new[] { 1, k });
        }

        var squared = g.Add(nn, g.Sub(nn, rowNorms, g.Mul(nn, g.Scalar(2f), products)), bankNorms);
        var nearest = g.Unary(nn, "Sqrt", g.Reduce(nn, "ReduceMin", g.Unary(nn, "Relu", squared), new long[] { 2 }, keepDims: false));
        var scores = g.Reshape(nn, nearest, new[] { -1, 1, (long)grid.Height, grid.Width });

        string mapScope = OnnxEmitContext.Child(scope, "map");
        var input = context.InputSize;
        var map = g.ResizeBilinearHalfPixel(mapScope, scores, input.Height, input.Width);
        return new[] { module.Options.Sigma > 0 ? MapSmoothingEmitter.Emit(g, mapScope, map, module.Options.Sigma) : map };
    }

    /// <summary>
    /// A K x D bank written transposed into <paramref name="target"/> (D x <paramref name="columns"/>), its squared norms into
    /// <paramref name="norms"/>; columns past K repeat the first patch.
    /// </summary>
    private static void Transposed(float[] bank, long k, long width, long columns, Span<float> target, Span<float> norms)
    {
        for (long i = 0; i < columns; i++)
        {
            long source = i < k ? i : 0;
            double sum = 0;
            for (long d = 0; d < width; d++)
            {
                float v = bank[(source * width) + d];
                target[(int)((d * columns) + i)] = v;
                sum += v * v;
            }

            norms[(int)i] = (float)sum;
        }
    }
}
