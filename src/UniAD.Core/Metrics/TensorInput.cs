using static TorchSharp.torch;

namespace UniAD.Core.Metrics;

/// <summary>Copies tensors (any device, any real dtype) to CPU arrays for the span-based metric functions.</summary>
internal static class TensorInput
{
    /// <summary>A stack of maps: N x H x W, N x 1 x H x W, or a single H x W map, as float32 values.</summary>
    public static (float[] Data, int Count, int Height, int Width) Maps(Tensor maps, string name)
    {
        ArgumentNullException.ThrowIfNull(maps, name);
        var shape = maps.shape;
        long[] nhw = shape.Length switch
        {
            2 => [1, shape[0], shape[1]],
            3 => shape,
            4 when shape[1] == 1 => [shape[0], shape[2], shape[3]],
            _ => throw new ArgumentException($"{name} must be N x H x W, N x 1 x H x W or H x W; got [{string.Join(", ", shape)}].", name),
        };
        return (Floats(maps), checked((int)nhw[0]), checked((int)nhw[1]), checked((int)nhw[2]));
    }

    /// <summary>All values, flattened in row-major order, as float32.</summary>
    public static float[] Floats(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().cpu().to_type(ScalarType.Float32).contiguous().data<float>().ToArray();
    }

    /// <summary>All values, flattened in row-major order, as float64.</summary>
    public static double[] Doubles(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().cpu().to_type(ScalarType.Float64).contiguous().data<double>().ToArray();
    }

    /// <summary>Throws unless both stacks of maps describe the same number of maps of the same size.</summary>
    public static void RequireSameShape((float[] Data, int Count, int Height, int Width) maps, (float[] Data, int Count, int Height, int Width) masks)
    {
        if (maps.Count != masks.Count || maps.Height != masks.Height || maps.Width != masks.Width)
        {
            throw new ArgumentException($"maps are {maps.Count} x {maps.Height} x {maps.Width} but masks are {masks.Count} x {masks.Height} x {masks.Width}: they must have the same size.", "masks");
        }
    }
}
