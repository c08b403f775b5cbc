using System.Collections.Concurrent;
using static TorchSharp.torch;

namespace UniAD.Core.Attention;

/// <summary>
/// UniAD's neighbor mask: an additive (H·W x H·W) attention mask that is -inf where the key lies in the
/// query's neighbourhood (the query itself included, clipped at the borders) and 0 elsewhere, so that a
/// token cannot copy itself or its neighbours.
/// </summary>
/// <remarks>
/// The window follows the reference exactly: rows from <c>y - nh/2</c> to <c>y + nh/2</c> inclusive
/// (integer division), likewise for columns. An even size therefore spans one more than its value,
/// as in the authors' code.
/// </remarks>
public static class NeighborMask
{
    private static readonly ConcurrentDictionary<(GridSize Feature, GridSize Neighbor, string Device), Tensor> Cache = new();

    /// <summary>
    /// The mask pattern as booleans, row-major over (query, key): <c>true</c> where attention is blocked.
    /// </summary>
    /// <exception cref="ArgumentException">A size is not positive, or the neighbourhood blocks every key of some query.</exception>
    public static bool[] Pattern(GridSize featureSize, GridSize neighborSize)
    {
        Validate(featureSize, neighborSize);
        int h = featureSize.Height, w = featureSize.Width, n = featureSize.Count;
        int hm = neighborSize.Height / 2, wm = neighborSize.Width / 2;
        var blocked = new bool[n * n];
        for (int y1 = 0; y1 < h; y1++)
        {
            for (int x1 = 0; x1 < w; x1++)
            {
                int row = (y1 * w + x1) * n;
                int y2End = Math.Min(y1 + hm + 1, h), x2End = Math.Min(x1 + wm + 1, w);
                for (int y2 = Math.Max(y1 - hm, 0); y2 < y2End; y2++)
                {
                    for (int x2 = Math.Max(x1 - wm, 0); x2 < x2End; x2++)
                    {
                        blocked[row + y2 * w + x2] = true;
                    }
                }
            }
        }

        return blocked;
    }

    /// <summary>Builds a new float32 additive mask on <paramref name="device"/> (CPU by default). The caller owns it.</summary>
    /// <exception cref="ArgumentException">A size is not positive, or the neighbourhood blocks every key of some query.</exception>
    public static Tensor Create(GridSize featureSize, GridSize neighborSize, Device? device = null)
    {
        var blocked = Pattern(featureSize, neighborSize);
        var values = new float[blocked.Length];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = blocked[i] ? float.NegativeInfinity : 0f;
        }

        using var cpu = tensor(values, new long[] { featureSize.Count, featureSize.Count }, device: CPU);
        return device is null || device.type == TorchSharp.DeviceType.CPU ? cpu.clone() : cpu.to(device);
    }

    /// <summary>
    /// The mask for (feature size, neighbourhood, device), built once and cached for the life of the
    /// process. The tensor is shared and belongs to no dispose scope: do not dispose or modify it.
    /// </summary>
    /// <exception cref="ArgumentException">A size is not positive, or the neighbourhood blocks every key of some query.</exception>
    public static Tensor GetCached(GridSize featureSize, GridSize neighborSize, Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return Cache.GetOrAdd((featureSize, neighborSize, device.ToString()), key =>
        {
            var mask = Create(key.Feature, key.Neighbor, device);
            mask.DetachFromDisposeScope();
            return mask;
        });
    }

    private static void Validate(GridSize featureSize, GridSize neighborSize)
    {
        if (featureSize.Height <= 0 || featureSize.Width <= 0)
        {
            throw new ArgumentException($"The feature size must be positive, got {featureSize}.", nameof(featureSize));
        }

        if (neighborSize.Height <= 0 || neighborSize.Width <= 0)
        {
            throw new ArgumentException($"The neighbourhood size must be positive, got {neighborSize}.", nameof(neighborSize));
        }

        // A query at row y sees rows [y - h/2, y + h/2]; some query sees every row iff h - 1 <= 2 * (h/2)
        // (likewise columns). Such a query has no key left to attend to: its softmax would be NaN.
        bool coversRows = featureSize.Height - 1 <= 2 * (neighborSize.Height / 2);
        bool coversColumns = featureSize.Width - 1 <= 2 * (neighborSize.Width / 2);
        if (coversRows && coversColumns)
        {
            throw new ArgumentException(
                $"The neighbourhood {neighborSize} covers the whole {featureSize} feature map for at least one position, which would leave it no key to attend to. Use a smaller neighbourhood or none.",
                nameof(neighborSize));
        }
    }
}
