using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.MemoryBank;

/// <summary>
/// PatchCore's locally aware patch features (<c>shared/methods/PATCHCORE.md</c>, step 2): each layer's map is averaged
/// over every p x p neighbourhood (stride 1; padding positions do not count, so a border position averages the positions
/// that exist), deeper maps are upsampled bilinearly (half-pixel centres) to the first map's grid, and the maps are
/// concatenated on channels. One patch is one position of the first map's grid.
/// </summary>
public static class PatchFeatures
{
    /// <summary>The patch features of <paramref name="layers"/> (B x C_i x H_i x W_i, shallowest first): B x ΣC_i x H_0 x W_0.</summary>
    /// <exception cref="ArgumentException">No layer, batch sizes differ, a map is not 4-D, or the neighbourhood is not a positive odd size.</exception>
    public static Tensor Embed(IReadOnlyList<Tensor> layers, int neighbourhood = 3)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (layers.Count == 0 || layers.Any(l => l.dim() != 4) || layers.Any(l => l.shape[0] != layers[0].shape[0]))
        {
            throw new ArgumentException($"Patch features need 4-D maps of one batch; got [{string.Join("; ", layers.Select(l => string.Join(" x ", l.shape)))}].", nameof(layers));
        }

        if (neighbourhood < 1 || neighbourhood % 2 == 0)
        {
            throw new ArgumentException($"The neighbourhood must be a positive odd size; got {neighbourhood}.", nameof(neighbourhood));
        }

        using var scope = NewDisposeScope();
        long height = layers[0].shape[2], width = layers[0].shape[3];
        var parts = new Tensor[layers.Count];
        for (int i = 0; i < layers.Count; i++)
        {
            var local = neighbourhood == 1 ? layers[i].alias() : F.avg_pool2d(layers[i], new long[] { neighbourhood, neighbourhood }, new long[] { 1, 1 }, new long[] { neighbourhood / 2, neighbourhood / 2 }, count_include_pad: false);
            parts[i] = local.shape[2] == height && local.shape[3] == width
                ? local
                : F.interpolate(local, new[] { height, width }, mode: InterpolationMode.Bilinear, align_corners: false);
        }

        return cat(parts, 1).MoveToOuterDisposeScope();
    }

    /// <summary>The patches of B x D x H x W features as (B·H·W) x D rows, row-major per image.</summary>
    public static Tensor Rows(Tensor features)
    {
        ArgumentNullException.ThrowIfNull(features);
        return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]);
    }
}
