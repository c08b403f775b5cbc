using System.Globalization;
using static TorchSharp.torch;

namespace UniAD.Core.Metrics;

/// <summary>
/// Builds a <see cref="MetricsReport"/> from a test set streamed image by image or batch by batch: either
/// (class, anomaly map, mask), from which the image scores, the image label (any mask pixel &gt; 0) and the pixel
/// metrics follow, or (class, image scores, label) when there are no maps. Maps are not kept: per image only its
/// four scores, and per pixel what <see cref="PixelMetricsAccumulator"/> stores.
/// </summary>
/// <remarks>
/// A class receives either maps or image scores, not both (pixel metrics would not cover all its images). Maps of
/// anomalous images without a mask go to <see cref="AddWithoutMask"/>: they count for the image metrics only, and
/// the report says how many anomalous images its pixel metrics left out (or that they are undefined when no
/// anomalous image has a mask). The class name <c>mean</c> is reserved for the mean row. Not thread-safe.
/// </remarks>
public sealed class MetricsReportBuilder
{
    private readonly List<ClassData> _classes = [];
    private readonly Dictionary<string, ClassData> _byName = new(StringComparer.Ordinal);

    /// <summary>Creates an empty builder.</summary>
    /// <param name="options">Settings; null for the defaults.</param>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public MetricsReportBuilder(MetricsReportOptions? options = null)
    {
        Options = options ?? new MetricsReportOptions();
        Options.Validate();
    }

    /// <summary>The settings.</summary>
    public MetricsReportOptions Options { get; }

    /// <summary>Adds one or more maps of one class with their masks, row-major, image after image.</summary>
    /// <param name="className">The class of every map in the batch.</param>
    /// <param name="maps">Anomaly scores, a whole number of <paramref name="height"/> x <paramref name="width"/> maps; finite.</param>
    /// <param name="masks">Ground truth of the same size: 0 normal, &gt; 0 anomalous.</param>
    /// <param name="height">Rows of each map, at least the window's height (<see cref="MetricsReportOptions.PoolHeight"/>, else <see cref="MetricsReportOptions.PoolSize"/>).</param>
    /// <param name="width">Columns of each map, at least <see cref="MetricsReportOptions.PoolSize"/>.</param>
    /// <exception cref="ArgumentException">A bad class name, bad sizes, a non-finite score or a negative or NaN mask
    /// value (the message says where), or maps smaller than the pooling window. Nothing is added then.</exception>
    /// <exception cref="InvalidOperationException">The class already received image scores.</exception>
    public void Add(string className, ReadOnlySpan<float> maps, ReadOnlySpan<float> masks, int height, int width)
    {
        var data = Find(className, withMaps: true);
        if (height < Options.WindowHeight || width < Options.PoolSize)
        {
            throw new ArgumentException($"The maps are {height} x {width}, smaller than the {Options.WindowHeight} x {Options.PoolSize} pooling window.", nameof(maps));
        }

        var pixels = data.Pixels ?? new PixelMetricsAccumulator(Options.ComputeAuPro);
        pixels.Add(maps, masks, height, width);
        data.Pixels = pixels;
        int size = height * width;
        for (int start = 0; start < maps.Length; start += size)
        {
            var mask = masks.Slice(start, size);
            data.Add(ImageScoring.Compute(maps.Slice(start, size), height, width, Options.WindowHeight, Options.PoolSize), InputChecks.CountAnomalous(mask) > 0);
        }

        Register(data);
    }

    /// <summary>
    /// Adds the map of an image without pixel-level ground truth (an anomalous image without a mask): its image
    /// scores count for the image metrics with <paramref name="anomalous"/> as label; its pixels count for no
    /// pixel metric. The report notes, per class, how many anomalous images the pixel metrics left out.
    /// </summary>
    /// <param name="className">The image's class.</param>
    /// <param name="map">Its anomaly map, <paramref name="height"/> x <paramref name="width"/>, finite.</param>
    /// <param name="height">Rows, at least the window's height (<see cref="MetricsReportOptions.PoolHeight"/>, else <see cref="MetricsReportOptions.PoolSize"/>).</param>
    /// <param name="width">Columns, at least <see cref="MetricsReportOptions.PoolSize"/>.</param>
    /// <param name="anomalous">Its image-level label.</param>
    /// <exception cref="ArgumentException">A bad class name, a map that is not one <paramref name="height"/> x <paramref name="width"/> map, a non-finite score, or a map smaller than the pooling window.</exception>
    /// <exception cref="InvalidOperationException">The class already received image scores without maps.</exception>
    public void AddWithoutMask(string className, ReadOnlySpan<float> map, int height, int width, bool anomalous)
    {
        var data = Find(className, withMaps: true);
        if (height < Options.WindowHeight || width < Options.PoolSize)
        {
            throw new ArgumentException($"The map is {height} x {width}, smaller than the {Options.WindowHeight} x {Options.PoolSize} pooling window.", nameof(map));
        }

        if ((long)height * width != map.Length)
        {
            throw new ArgumentException($"The map has {map.Length} values, not {height} x {width}.", nameof(map));
        }

        foreach (var value in map)
        {
            if (!float.IsFinite(value))
            {
                throw new ArgumentException($"This '{className}' map holds the score {value.ToString(CultureInfo.InvariantCulture)}; scores must be finite.", nameof(map));
            }
        }

        data.Add(ImageScoring.Compute(map, height, width, Options.WindowHeight, Options.PoolSize), anomalous);
        if (anomalous)
        {
            data.AnomalousWithoutMask++;
        }
        else
        {
            data.NormalWithoutMask++;
        }

        Register(data);
    }

    /// <summary>Adds a batch of tensors (copied to the CPU as float32), one class name per map.</summary>
    /// <param name="classNames">The class of each map, in batch order.</param>
    /// <param name="maps">N x H x W or N x 1 x H x W anomaly maps.</param>
    /// <param name="masks">Masks of the same size, any real or bool dtype: 0 normal, &gt; 0 anomalous.</param>
    /// <exception cref="ArgumentException">The number of names is not N, or as for the span overload; nothing is added then.</exception>
    /// <exception cref="InvalidOperationException">A class already received image scores.</exception>
    public void Add(IReadOnlyList<string> classNames, Tensor maps, Tensor masks)
    {
        ArgumentNullException.ThrowIfNull(classNames);
        var m = TensorInput.Maps(maps, nameof(maps));
        var g = TensorInput.Maps(masks, nameof(masks));
        TensorInput.RequireSameShape(m, g);
        if (classNames.Count != m.Count)
        {
            throw new ArgumentException($"{classNames.Count} class names for {m.Count} maps.", nameof(classNames));
        }

        // Check the whole batch first, so that a bad value late in the batch adds nothing.
        InputChecks.RequireMapsAndMasks<float>(m.Data, g.Data, m.Height, m.Width);
        foreach (var name in classNames.Distinct(StringComparer.Ordinal))
        {
            _ = Find(name, withMaps: true);
        }

        int size = m.Height * m.Width;
        for (int start = 0; start < m.Count;)
        {
            int end = start + 1;
            while (end < m.Count && classNames[end] == classNames[start])
            {
                end++;
            }

            Add(classNames[start], m.Data.AsSpan(start * size, (end - start) * size), g.Data.AsSpan(start * size, (end - start) * size), m.Height, m.Width);
            start = end;
        }
    }

    /// <summary>Adds one image by its scores, for classes evaluated without maps (no pixel metrics).</summary>
    /// <param name="className">The image's class.</param>
    /// <param name="scores">Its scores (e.g. from <see cref="ImageScoring.Compute(ReadOnlySpan{float}, int, int, int)"/>), finite; <see cref="ImageScores.TopMean"/> may be left NaN (not computed), and a class with such an image reports no top-mean metrics.</param>
    /// <param name="anomalous">Its label.</param>
    /// <exception cref="ArgumentException">A bad class name or a non-finite score.</exception>
    /// <exception cref="InvalidOperationException">The class already received maps.</exception>
    public void Add(string className, ImageScores scores, bool anomalous)
    {
        ArgumentNullException.ThrowIfNull(scores);
        var data = Find(className, withMaps: false);
        foreach (var kind in ImageScoring.Kinds)
        {
            if (!double.IsFinite(scores[kind]) && !(kind == ImageScoreKind.TopMean && double.IsNaN(scores[kind])))
            {
                throw new ArgumentException($"The {ImageScoring.Name(kind)} score of this '{className}' image is {scores[kind].ToString(CultureInfo.InvariantCulture)}; scores must be finite.", nameof(scores));
            }
        }

        data.Add(scores, anomalous);
        Register(data);
    }

    /// <summary>Computes every metric of every class and the mean over classes. Can be called again after more data.</summary>
    /// <exception cref="InvalidOperationException">Nothing was added.</exception>
    public MetricsReport Build()
    {
        if (_classes.Count == 0)
        {
            throw new InvalidOperationException("Nothing was added: a report needs at least one image.");
        }

        var notes = new List<string>();
        var rows = new List<ClassMetrics>();
        foreach (var data in _classes)
        {
            var labels = data.Labels.ToArray();
            var image = new Dictionary<ImageScoreKind, BinaryMetrics>();
            foreach (var kind in ImageScoring.Kinds)
            {
                var values = data.Scores.Select(s => s[kind]).ToArray();
                if (kind == ImageScoreKind.TopMean && values.Any(double.IsNaN))
                {
                    continue; // added by scores without it (Add(className, ImageScores, ...) from an older caller)
                }

                var metrics = BinaryClassification.Evaluate(values, labels);
                image[kind] = metrics with { Auroc = Fold(metrics.Auroc, $"{data.Name}: {MetricKeys.ImageAuroc(kind)}", notes) };
            }

            if (image[ImageScoreKind.PooledMax].UndefinedReason is { } imageReason)
            {
                notes.Add($"{data.Name}: image level: {imageReason}");
            }

            int anomalousImages = data.Labels.Count(l => l);
            var pixel = data.Pixels?.Compute(Options.FprLimit);
            if (data.AnomalousWithoutMask > 0 && data.AnomalousWithoutMask == anomalousImages)
            {
                // No anomalous image has pixel labels: pixel metrics would rest on normal pixels alone.
                pixel = null;
                notes.Add($"{data.Name}: pixel metrics undefined: {data.AnomalousWithoutMask} of {anomalousImages} anomalous images have no mask");
            }
            else if (data.AnomalousWithoutMask > 0)
            {
                notes.Add($"{data.Name}: pixel metrics over {anomalousImages - data.AnomalousWithoutMask} of {anomalousImages} anomalous images: {data.AnomalousWithoutMask} have no mask and are left out of pixel metrics (they count for image metrics)");
            }

            if (data.NormalWithoutMask > 0)
            {
                notes.Add($"{data.Name}: {data.NormalWithoutMask} normal images were added without a mask and are left out of pixel metrics");
            }

            if (pixel is not null)
            {
                pixel = pixel with { Auroc = Fold(pixel.Auroc, $"{data.Name}: {MetricKeys.PixelAuroc}", notes) };
                if (pixel.UndefinedReason is { } pixelReason)
                {
                    notes.Add($"{data.Name}: pixel level: {pixelReason}");
                }
            }

            rows.Add(new ClassMetrics(data.Name, labels.Length, anomalousImages, image, pixel, data.AnomalousWithoutMask));
        }

        return new MetricsReport(Options, rows, notes);
    }

    private double Fold(double auroc, string what, List<string> notes)
    {
        double folded = Options.FoldAurocBelowHalf ? BinaryClassification.FoldBelowHalf(auroc) : auroc;
        if (folded != auroc)
        {
            notes.Add(string.Create(CultureInfo.InvariantCulture, $"{what}: the true AUROC {auroc:F6} is below 0.5 and is reported as 1 − AUROC = {folded:F6} (reference evaluator's convention)"));
        }

        return folded;
    }

    private ClassData Find(string className, bool withMaps)
    {
        if (string.IsNullOrWhiteSpace(className))
        {
            throw new ArgumentException("A class name must not be empty.", nameof(className));
        }

        if (className == MetricKeys.MeanRow)
        {
            throw new ArgumentException($"The class name '{MetricKeys.MeanRow}' is reserved for the mean over classes.", nameof(className));
        }

        if (!_byName.TryGetValue(className, out var data))
        {
            return new ClassData(className, withMaps);
        }

        if (data.WithMaps != withMaps)
        {
            throw new InvalidOperationException($"Class '{className}' already received {(data.WithMaps ? "maps" : "image scores without maps")}; a class gets either maps or image scores, so that its pixel metrics cover all its images.");
        }

        return data;
    }

    private void Register(ClassData data)
    {
        if (_byName.TryAdd(data.Name, data))
        {
            _classes.Add(data);
        }
    }

    private sealed class ClassData(string name, bool withMaps)
    {
        public string Name { get; } = name;

        public bool WithMaps { get; } = withMaps;

        public List<ImageScores> Scores { get; } = [];

        public List<bool> Labels { get; } = [];

        public PixelMetricsAccumulator? Pixels { get; set; }

        public int AnomalousWithoutMask { get; set; }

        public int NormalWithoutMask { get; set; }

        public void Add(ImageScores scores, bool anomalous)
        {
            Scores.Add(scores);
            Labels.Add(anomalous);
        }
    }
}
