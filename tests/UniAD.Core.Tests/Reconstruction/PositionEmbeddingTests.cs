using UniAD.Core.Reconstruction;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Reconstruction;

public sealed class PositionEmbeddingTests
{
    [Fact]
    public void Sine_embedding_follows_the_detr_formula()
    {
        const int h = 3, w = 4, c = 8, feats = c / 2;
        using var sine = new SinePositionEmbedding(new GridSize(h, w), c);
        using var pos = sine.forward(CPU);
        Assert.Equal(new long[] { h * w, c }, pos.shape);
        var values = pos.data<float>().ToArray();
        for (int y = 0; y < h; y++)
        {
            for (int x = 0; x < w; x++)
            {
                for (int k = 0; k < c; k++)
                {
                    bool isY = k < feats;
                    int i = isY ? k : k - feats;
                    double p = isY ? (y + 1) / (h + 1e-6) * 2 * Math.PI : (x + 1) / (w + 1e-6) * 2 * Math.PI;
                    double arg = p / Math.Pow(10000, 2.0 * (i / 2) / feats);
                    double expected = i % 2 == 0 ? Math.Sin(arg) : Math.Cos(arg);
                    Assert.Equal(expected, values[((y * w) + x) * c + k], 1e-6);
                }
            }
        }
    }

    [Fact]
    public void Learned_embedding_concatenates_column_then_row()
    {
        using var learned = new LearnedPositionEmbedding(new GridSize(2, 3), 4);
        var sd = learned.state_dict();
        using var pos = learned.forward(CPU);
        var col = sd["col_embed.weight"];
        var row = sd["row_embed.weight"];
        // Position (y = 1, x = 2) is token 5: [col[2], row[1]].
        var expected = cat(new[] { col[2], row[1] }, 0);
        Assert.Equal(0f, (pos[5] - expected).abs().max().item<float>());
    }
}
