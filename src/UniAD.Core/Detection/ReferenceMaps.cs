using System.Collections.Concurrent;
using UniAD.Core.TorchSupport;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Detection;

/// <summary>Options of <see cref="AnomalyDetector.FitReferenceMaps"/>.</summary>
public sealed record ReferenceMapOptions
{
    /// <summary>Longest side of a class's reference grid (maps are averaged in blocks down to it; default 128).</summary>
    public int MaxSide { get; init; } = 128;

    /// <summary>Most normal images per class (a seeded choice when a class has more; default 64).</summary>
    public int ImagesPerClass { get; init; } = 64;

    /// <summary>Added to the reference before dividing, as a fraction of the reference's mean (default 0.05): keeps flat regions from blowing up.</summary>
    public double EpsilonFraction { get; init; } = 0.05;

    /// <summary>Radius of the box smoothing of the reference grid (default 1: 3 x 3).</summary>
    public int SmoothRadius { get; init; } = 1;

    /// <summary>Seed of the choice of images.</summary>
    public long Seed { get; init; } = 133;

    /// <summary>Batch size of the scoring passes.</summary>
    public int BatchSize { get; init; } = 8;

    /// <exception cref="ArgumentOutOfRangeException">A value is out of range.</exception>
    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxSide, 1, nameof(MaxSide));
        ArgumentOutOfRangeException.ThrowIfLessThan(ImagesPerClass, 1, nameof(ImagesPerClass));
        ArgumentOutOfRangeException.ThrowIfNegative(SmoothRadius, nameof(SmoothRadius));
        ArgumentOutOfRangeException.ThrowIfLessThan(BatchSize, 1, nameof(BatchSize));
        if (!(EpsilonFraction > 0 && double.IsFinite(EpsilonFraction)))
        {
            throw new ArgumentOutOfRangeException(nameof(EpsilonFraction), EpsilonFraction, "EpsilonFraction must be positive.");
        }
    }
}

/// <summary>
/// Per-class reference maps (opt-in, <see cref="AnomalyDetector.FitReferenceMaps"/>): for aligned parts, the
/// reconstruction error of normal images has a fixed layout (bright edges, specular bands) that can outweigh a
/// small defect. Each map is divided by its class's reference (the mean map of normal images, upsampled), so a
/// score says how much more error there is than normal at that place. Scoring then needs the class; stored with
/// the model. Fit it before calibrating: thresholds live on the normalised scale.
/// </summary>
public sealed class ReferenceMaps
{
    private readonly Dictionary<string, ClassReferenceMap> classes;
    private readonly ConcurrentDictionary<(string Class, long H, long W, string Device), Tensor> resized = new();

    /// <summary>Creates the set from per-class references.</summary>
    /// <exception cref="ArgumentException">A reference is inconsistent (sizes, non-finite or negative values, epsilon not positive) or a class repeats.</exception>
    public ReferenceMaps(IEnumerable<ClassReferenceMap> references)
    {
        ArgumentNullException.ThrowIfNull(references);
        classes = new Dictionary<string, ClassReferenceMap>(StringComparer.Ordinal);
        foreach (var r in references)
        {
            if (r.Height < 1 || r.Width < 1 || r.Values.Count != (long)r.Height * r.Width)
            {
                throw new ArgumentException($"Reference map of '{r.ClassName}' has {r.Values.Count} values for {r.Height} x {r.Width}.", nameof(references));
            }

            if (r.Values.Any(v => !float.IsFinite(v) || v < 0) || !(r.Epsilon > 0) || !double.IsFinite(r.Epsilon))
            {
                throw new ArgumentException($"Reference map of '{r.ClassName}' holds negative or non-finite values or a non-positive epsilon ({r.Epsilon}).", nameof(references));
            }

            if (!classes.TryAdd(r.ClassName, r))
            {
                throw new ArgumentException($"Class '{r.ClassName}' has two reference maps.", nameof(references));
            }
        }
    }

    /// <summary>The classes with a reference, by name.</summary>
    public IReadOnlyDictionary<string, ClassReferenceMap> Classes => classes;

    /// <summary>
    /// Normalised maps: each of the B x H x W <paramref name="maps"/> divided by its class's reference (bilinear,
    /// half-pixel centres) plus epsilon.
    /// </summary>
    /// <exception cref="ArgumentException">A class is missing (null) or has no reference.</exception>
    public Tensor Normalize(Tensor maps, IReadOnlyList<string?> classNames)
    {
        ArgumentNullException.ThrowIfNull(maps);
        ArgumentNullException.ThrowIfNull(classNames);
        if (maps.dim() != 3 || classNames.Count != maps.shape[0])
        {
            throw new ArgumentException($"Expected B x H x W maps with one class each; got [{string.Join(", ", maps.shape)}] and {classNames.Count} classes.", nameof(maps));
        }

        using var scope = NewDisposeScope();
        var rows = new Tensor[classNames.Count];
        for (int i = 0; i < rows.Length; i++)
        {
            rows[i] = maps[i] / Reference(classNames[i], maps.shape[1], maps.shape[2], maps.device);
        }

        return stack(rows).MoveToOuterDisposeScope();
    }

    /// <summary>The reference of a class at a map size, as <see cref="Normalize"/> divides by it (upsampled, plus epsilon), on the CPU.</summary>
    /// <exception cref="ArgumentException">A class is missing (null) or has no reference.</exception>
    internal float[] Upsampled(string className, int height, int width)
    {
        using var reference = Reference(className, height, width, CPU);
        return reference.contiguous().data<float>().ToArray();
    }

    /// <summary>Disposes the cached resized references.</summary>
    internal void ClearCache()
    {
        foreach (var t in resized.Values)
        {
            t.Dispose();
        }

        resized.Clear();
    }

    private Tensor Reference(string? className, long height, long width, Device device)
    {
        ScoringSteps.RequireClasses(classes.Keys, new[] { className }); // the scorers' own check and messages
        var r = classes[className!];
        // Cached per class, size AND device (by its name: Device has no value equality), so a GPU detector copies each
        // reference to the device once, not at every normalisation.
        var cached = resized.GetOrAdd((r.ClassName, height, width, device.ToString()), key =>
        {
            using var grid = tensor(r.Values.ToArray(), new long[] { 1, 1, r.Height, r.Width }, device: CPU);
            using var up = F.interpolate(grid, new[] { key.H, key.W }, mode: InterpolationMode.Bilinear, align_corners: false);
            using var onCpu = up.squeeze(0).squeeze(0).PlusScalar(r.Epsilon);
            return (TorchSupport.TorchDevices.Same(onCpu.device, device) ? onCpu.alias() : onCpu.to(device)).DetachFromDisposeScope();
        });
        return cached.alias();
    }
}
