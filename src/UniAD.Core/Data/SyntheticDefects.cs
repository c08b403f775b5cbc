using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace UniAD.Core.Data;

/// <summary>The visually distinct classes of the synthetic data set: two textures and two objects.</summary>
public enum SyntheticClass
{
    /// <summary>Texture: an oblique brown grating ("stripes").</summary>
    Stripes,

    /// <summary>Texture: smooth green value noise ("grain").</summary>
    Grain,

    /// <summary>Object: a metallic washer on a dark background ("disc").</summary>
    Disc,

    /// <summary>Object: a blue rounded tile with a yellow band on a light background ("tile").</summary>
    Tile,
}

/// <summary>The anomaly types of the synthetic data set.</summary>
public enum SyntheticDefect
{
    /// <summary>A thin dark or bright line ("scratch").</summary>
    Scratch,

    /// <summary>A brown elliptic stain ("spot").</summary>
    Spot,

    /// <summary>A piece of the object (or the texture) gone, showing what lies beneath: an object's background, the dark surface under a texture ("missing_part").</summary>
    MissingPart,

    /// <summary>A region tinted another colour ("colour_change").</summary>
    ColourChange,
}

/// <summary>What <see cref="SyntheticDefects.Generate"/> writes.</summary>
public sealed record SyntheticDatasetOptions
{
    /// <summary>The classes (default: all four).</summary>
    public IReadOnlyList<SyntheticClass> Classes { get; init; } = Enum.GetValues<SyntheticClass>();

    /// <summary>The anomaly types of every class's test set (default: all four).</summary>
    public IReadOnlyList<SyntheticDefect> Defects { get; init; } = Enum.GetValues<SyntheticDefect>();

    /// <summary>Width and height of every image, in pixels.</summary>
    public int ImageSize { get; init; } = 128;

    /// <summary>Normal training images per class.</summary>
    public int TrainPerClass { get; init; } = 10;

    /// <summary>Normal test images per class.</summary>
    public int TestGoodPerClass { get; init; } = 4;

    /// <summary>Anomalous test images per class and anomaly type.</summary>
    public int TestPerDefect { get; init; } = 2;

    /// <summary>Seed of everything drawn: the same seed writes the same files.</summary>
    public long Seed { get; init; }

    /// <summary>zlib level of the PNG files (1 = fastest, 9 = smallest).</summary>
    public int PngCompressionLevel { get; init; } = 1;

    /// <summary>Images rendered at the same time; 0 means one per logical core.</summary>
    public int MaxDegreeOfParallelism { get; init; }

    /// <summary>Checks every value and throws an exception naming the first one that is impossible.</summary>
    /// <exception cref="ArgumentException">A list is empty or repeats an entry, or a count or size is out of range.</exception>
    public void Validate()
    {
        if (Classes is not { Count: > 0 } || Classes.Distinct().Count() != Classes.Count || Classes.Any(c => !Enum.IsDefined(c)))
        {
            throw new ArgumentException($"{nameof(Classes)} must list distinct known classes, at least one.", nameof(Classes));
        }

        if (Defects is null || Defects.Distinct().Count() != Defects.Count || Defects.Any(d => !Enum.IsDefined(d)))
        {
            throw new ArgumentException($"{nameof(Defects)} must list distinct known anomaly types.", nameof(Defects));
        }

        if (ImageSize < 16 || ImageSize > 4096)
        {
            throw new ArgumentException($"{nameof(ImageSize)} = {ImageSize} must lie in 16..4096.", nameof(ImageSize));
        }

        if (TrainPerClass < 0 || TestGoodPerClass < 0 || TestPerDefect < 0 || TrainPerClass + TestGoodPerClass + TestPerDefect == 0)
        {
            throw new ArgumentException($"Image counts must be non-negative and not all zero (train {TrainPerClass}, test good {TestGoodPerClass}, test per defect {TestPerDefect}).", nameof(TrainPerClass));
        }

        if (PngCompressionLevel < 0 || PngCompressionLevel > 9)
        {
            throw new ArgumentException($"{nameof(PngCompressionLevel)} = {PngCompressionLevel} must lie in 0..9.", nameof(PngCompressionLevel));
        }

        OptionCheck.Parallelism(MaxDegreeOfParallelism);
    }
}

/// <summary>A written synthetic data set.</summary>
/// <param name="Root">The folder, in the MVTec-AD layout (open it with <see cref="MvtecAd.Open"/>).</param>
/// <param name="Classes">The class folder names.</param>
/// <param name="DefectTypes">The defect folder names.</param>
/// <param name="TrainImages">Training images written.</param>
/// <param name="TestImages">Test images written (normal and anomalous).</param>
public sealed record SyntheticDataset(string Root, IReadOnlyList<string> Classes, IReadOnlyList<string> DefectTypes, int TrainImages, int TestImages);

/// <summary>
/// A seeded, fast generator of multi-class defect images for demos and tests: textures and objects with
/// normal variation (position, angle, period, brightness, noise), and anomalies with exact pixel masks
/// (a mask pixel is 1 exactly where the anomaly changed the rendering), written in the MVTec-AD layout.
/// </summary>
public static class SyntheticDefects
{
    /// <summary>The folder name of a class ("stripes", "grain", "disc", "tile").</summary>
    public static string ClassName(SyntheticClass kind) => kind switch
    {
        SyntheticClass.Stripes => "stripes",
        SyntheticClass.Grain => "grain",
        SyntheticClass.Disc => "disc",
        SyntheticClass.Tile => "tile",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown synthetic class."),
    };

    /// <summary>The folder name of an anomaly type ("scratch", "spot", "missing_part", "colour_change").</summary>
    public static string DefectName(SyntheticDefect defect) => defect switch
    {
        SyntheticDefect.Scratch => "scratch",
        SyntheticDefect.Spot => "spot",
        SyntheticDefect.MissingPart => "missing_part",
        SyntheticDefect.ColourChange => "colour_change",
        _ => throw new ArgumentOutOfRangeException(nameof(defect), defect, "Unknown anomaly type."),
    };

    /// <summary>
    /// Writes <c>&lt;class&gt;/train/good/NNN.png</c>, <c>&lt;class&gt;/test/good/NNN.png</c>,
    /// <c>&lt;class&gt;/test/&lt;defect&gt;/NNN.png</c> and <c>&lt;class&gt;/ground_truth/&lt;defect&gt;/NNN_mask.png</c>
    /// (greyscale, 0 or 255) under <paramref name="root"/>, which must be absent or empty.
    /// </summary>
    /// <exception cref="IOException">The root exists and is not empty.</exception>
    /// <exception cref="ArgumentException">An option is impossible.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled (files written so far stay).</exception>
    public static SyntheticDataset Generate(string root, SyntheticDatasetOptions? options = null, IProgress<DataProgress>? progress = null, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        options ??= new SyntheticDatasetOptions();
        options.Validate();
        logger ??= NullLogger.Instance;
        root = Path.GetFullPath(root);
        if (Directory.Exists(root) && Directory.EnumerateFileSystemEntries(root).Any())
        {
            throw new IOException($"'{root}' is not empty: the synthetic data set needs an empty or new folder.");
        }

        var jobs = new List<(SyntheticClass Kind, SyntheticDefect? Defect, string ImagePath, string? MaskPath, long Seed)>();
        for (int c = 0; c < options.Classes.Count; c++)
        {
            var kind = options.Classes[c];
            var classDir = Path.Combine(root, ClassName(kind));
            for (int i = 0; i < options.TrainPerClass; i++)
            {
                jobs.Add((kind, null, Path.Combine(classDir, "train", ImageSample.Good, $"{i:D3}.png"), null, ImageSeed(options.Seed, kind, 0, -1, i)));
            }

            for (int i = 0; i < options.TestGoodPerClass; i++)
            {
                jobs.Add((kind, null, Path.Combine(classDir, "test", ImageSample.Good, $"{i:D3}.png"), null, ImageSeed(options.Seed, kind, 1, -1, i)));
            }

            foreach (var defect in options.Defects)
            {
                var name = DefectName(defect);
                for (int i = 0; i < options.TestPerDefect; i++)
                {
                    jobs.Add((kind, defect, Path.Combine(classDir, "test", name, $"{i:D3}.png"), Path.Combine(classDir, "ground_truth", name, $"{i:D3}_mask.png"), ImageSeed(options.Seed, kind, 1, (int)defect, i)));
                }
            }
        }

        foreach (var folder in jobs.SelectMany(j => new[] { Path.GetDirectoryName(j.ImagePath), j.MaskPath is null ? null : Path.GetDirectoryName(j.MaskPath) }).Distinct())
        {
            if (folder is not null)
            {
                Directory.CreateDirectory(folder);
            }
        }

        int done = 0;
        var parallel = new ParallelOptions
        {
            MaxDegreeOfParallelism = OptionCheck.Threads(options.MaxDegreeOfParallelism),
            CancellationToken = cancellationToken,
        };
        ParallelLoops.For(jobs.Count, parallel, j =>
        {
            var job = jobs[j];
            var (image, mask) = Render(job.Kind, job.Defect, options.ImageSize, job.Seed);
            ImageWriter.WritePng(job.ImagePath, image, options.PngCompressionLevel);
            if (job.MaskPath is not null)
            {
                var grey = mask!.Select(m => m == 0 ? (byte)0 : (byte)255).ToArray();
                ImageWriter.WriteGrayPng(job.MaskPath, options.ImageSize, options.ImageSize, grey, options.PngCompressionLevel);
            }

            progress?.Report(new DataProgress("generate", Interlocked.Increment(ref done), jobs.Count));
        });

        int train = options.Classes.Count * options.TrainPerClass;
        logger.LogInformation("Synthetic data set in {Root}: {Classes} classes, {Train} training and {Test} test images", root, options.Classes.Count, train, jobs.Count - train);
        return new SyntheticDataset(root, options.Classes.Select(ClassName).ToList(), options.Defects.Select(DefectName).ToList(), train, jobs.Count - train);
    }

    /// <summary>
    /// Renders one image in memory: a normal one (<paramref name="defect"/> null, mask null) or an anomalous
    /// one with its mask (one byte per pixel, 1 where the anomaly changed the image; never empty).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The size is outside 16..4096.</exception>
    public static (RgbImage Image, byte[]? Mask) Render(SyntheticClass kind, SyntheticDefect? defect, int size, long seed)
    {
        if (size < 16 || size > 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "The image size must lie in 16..4096.");
        }

        var random = SeededRandom.For(seed, 0x5E7);
        var scene = Scene.Create(kind, random);
        ulong noiseSeed = random.NextUInt64(); // drawn before the anomaly: a defect changes nothing outside its mask
        Anomaly? anomaly = null;
        if (defect is { } d)
        {
            // Redraw until the anomaly covers at least one pixel of the object (almost always the first draw).
            for (int attempt = 0; anomaly is null || !anomaly.Covers(scene, size); attempt++)
            {
                if (attempt == 100)
                {
                    throw new InvalidOperationException($"Could not place a {d} on a {kind} at size {size}.");
                }

                anomaly = Anomaly.Create(d, scene, random, size);
            }
        }

        var pixels = new byte[size * size * 4];
        var mask = anomaly is null ? null : new byte[size * size];
        for (int y = 0; y < size; y++)
        {
            double v = (y + 0.5) / size;
            for (int x = 0; x < size; x++)
            {
                double u = (x + 0.5) / size;
                var colour = scene.Colour(u, v);
                if (anomaly is not null && anomaly.Contains(scene, u, v))
                {
                    colour = anomaly.Apply(scene, colour, u, v);
                    mask![(y * size) + x] = 1;
                }

                int noise = (int)(Hash(noiseSeed, x, y) % 9) - 4;
                int i = ((y * size) + x) * 4;
                pixels[i] = ToByte(colour.R + noise);
                pixels[i + 1] = ToByte(colour.G + noise);
                pixels[i + 2] = ToByte(colour.B + noise);
                pixels[i + 3] = 255;
            }
        }

        return (new RgbImage(size, size, pixels), mask);
    }

    private static long ImageSeed(long seed, SyntheticClass kind, int split, int defect, int index) =>
        unchecked((long)SeededRandom.For(seed, (long)kind, split, defect, index).NextUInt64());

    private static byte ToByte(double value) => (byte)Math.Clamp((int)Math.Round(value), 0, 255);

    private static ulong Hash(ulong seed, int x, int y)
    {
        unchecked
        {
            ulong h = seed ^ ((ulong)(uint)x * 0x9E3779B97F4A7C15UL) ^ ((ulong)(uint)y * 0xC2B2AE3D27D4EB4FUL);
            h = (h ^ (h >> 31)) * 0xBF58476D1CE4E5B9UL;
            return h ^ (h >> 29);
        }
    }

    /// <summary>An RGB colour with components in 0..255 (unclamped while computing).</summary>
    internal readonly record struct Rgb(double R, double G, double B)
    {
        public static Rgb Mix(Rgb a, Rgb b, double t) => new(a.R + ((b.R - a.R) * t), a.G + ((b.G - a.G) * t), a.B + ((b.B - a.B) * t));

        public Rgb Scale(double f) => new(R * f, G * f, B * f);

        public double Luma => (0.299 * R) + (0.587 * G) + (0.114 * B);
    }

    /// <summary>A normal image: colour per point (u, v in [0, 1]) and where the object is.</summary>
    private abstract class Scene
    {
        public abstract Rgb Background { get; }

        public abstract Rgb Tint { get; }

        public static Scene Create(SyntheticClass kind, SeededRandom r) => kind switch
        {
            SyntheticClass.Stripes => new Stripes(r),
            SyntheticClass.Grain => new Grain(r),
            SyntheticClass.Disc => new Disc(r),
            _ => new Tile(r),
        };

        public abstract Rgb Colour(double u, double v);

        public virtual bool OnObject(double u, double v) => true;

        /// <summary>A random point on the object.</summary>
        public (double U, double V) PointOnObject(SeededRandom r)
        {
            for (int i = 0; i < 1000; i++)
            {
                double u = r.Uniform(0.15, 0.85), v = r.Uniform(0.15, 0.85);
                if (OnObject(u, v))
                {
                    return (u, v);
                }
            }

            return (0.5, 0.5);
        }
    }

    private sealed class Stripes : Scene
    {
        private readonly double cos, sin, period, phase, brightness;

        public Stripes(SeededRandom r)
        {
            double angle = 0.5 + r.Uniform(-0.05, 0.05);
            (cos, sin) = (Math.Cos(angle), Math.Sin(angle));
            period = 0.1 * r.Uniform(0.95, 1.05);
            phase = r.NextDouble();
            brightness = r.Uniform(0.92, 1.08);
        }

        // Textures cover the whole image: the background is the dark surface beneath, seen only through a missing part.
        public override Rgb Background => new Rgb(60, 45, 30).Scale(brightness);

        public override Rgb Tint => new(40, 120, 210);

        public override Rgb Colour(double u, double v)
        {
            double t = 0.5 + (0.5 * Math.Sin(2 * Math.PI * ((((u * cos) + (v * sin)) / period) + phase)));
            return Rgb.Mix(new Rgb(205, 170, 120), new Rgb(115, 85, 55), t).Scale(brightness);
        }
    }

    private sealed class Grain : Scene
    {
        private readonly double[,] coarse = new double[9, 9];
        private readonly double[,] fine = new double[17, 17];
        private readonly double brightness;

        public Grain(SeededRandom r)
        {
            Fill(coarse, r);
            Fill(fine, r);
            brightness = r.Uniform(0.92, 1.08);
        }

        public override Rgb Background => new Rgb(40, 45, 35).Scale(brightness);

        public override Rgb Tint => new(210, 60, 170);

        public override Rgb Colour(double u, double v)
        {
            double n = (Lattice(coarse, u, v) + (0.5 * Lattice(fine, u, v))) / 1.5;
            return Rgb.Mix(new Rgb(80, 105, 70), new Rgb(165, 185, 130), n).Scale(brightness);
        }

        private static void Fill(double[,] grid, SeededRandom r)
        {
            for (int i = 0; i < grid.GetLength(0); i++)
            {
                for (int j = 0; j < grid.GetLength(1); j++)
                {
                    grid[i, j] = r.NextDouble();
                }
            }
        }

        private static double Lattice(double[,] grid, double u, double v)
        {
            int cells = grid.GetLength(0) - 1;
            double gx = u * cells, gy = v * cells;
            int x0 = Math.Min((int)gx, cells - 1), y0 = Math.Min((int)gy, cells - 1);
            double fx = Smooth(gx - x0), fy = Smooth(gy - y0);
            double top = grid[y0, x0] + ((grid[y0, x0 + 1] - grid[y0, x0]) * fx);
            double bottom = grid[y0 + 1, x0] + ((grid[y0 + 1, x0 + 1] - grid[y0 + 1, x0]) * fx);
            return top + ((bottom - top) * fy);
        }

        private static double Smooth(double t) => t * t * (3 - (2 * t));
    }

    private sealed class Disc : Scene
    {
        private readonly double cu, cv, radius, hole, brightness;

        public Disc(SeededRandom r)
        {
            cu = 0.5 + r.Uniform(-0.02, 0.02);
            cv = 0.5 + r.Uniform(-0.02, 0.02);
            radius = 0.35 + r.Uniform(-0.01, 0.01);
            hole = 0.1;
            brightness = r.Uniform(0.92, 1.08);
        }

        public override Rgb Background => new Rgb(55, 55, 62).Scale(brightness);

        public override Rgb Tint => new(220, 120, 20);

        public override bool OnObject(double u, double v)
        {
            double d = Math.Sqrt(((u - cu) * (u - cu)) + ((v - cv) * (v - cv)));
            return d > hole && d < radius;
        }

        public override Rgb Colour(double u, double v)
        {
            if (!OnObject(u, v))
            {
                return Background;
            }

            double d = Math.Sqrt(((u - cu) * (u - cu)) + ((v - cv) * (v - cv)));
            double shade = 0.8 + (0.2 * (((cu - u) + (cv - v)) / radius)) + (0.03 * Math.Sin(d / radius * 60));
            return new Rgb(190, 192, 200).Scale(shade * brightness);
        }
    }

    private sealed class Tile : Scene
    {
        private readonly double cu, cv, half, corner, cos, sin, brightness;

        public Tile(SeededRandom r)
        {
            cu = 0.5 + r.Uniform(-0.01, 0.01);
            cv = 0.5 + r.Uniform(-0.01, 0.01);
            half = 0.3 + r.Uniform(-0.01, 0.01);
            corner = 0.06;
            double angle = r.Uniform(-0.03, 0.03);
            (cos, sin) = (Math.Cos(angle), Math.Sin(angle));
            brightness = r.Uniform(0.92, 1.08);
        }

        public override Rgb Background => new Rgb(225, 225, 212).Scale(brightness);

        public override Rgb Tint => new(220, 40, 40);

        public override bool OnObject(double u, double v)
        {
            var (tx, ty) = Local(u, v);
            double qx = Math.Abs(tx) - (half - corner), qy = Math.Abs(ty) - (half - corner);
            double outside = Math.Sqrt((Math.Max(qx, 0) * Math.Max(qx, 0)) + (Math.Max(qy, 0) * Math.Max(qy, 0)));
            return outside + Math.Min(Math.Max(qx, qy), 0) < corner;
        }

        public override Rgb Colour(double u, double v)
        {
            if (!OnObject(u, v))
            {
                return Background;
            }

            var (_, ty) = Local(u, v);
            return (Math.Abs(ty) < 0.05 ? new Rgb(235, 200, 60) : new Rgb(60, 90, 165)).Scale(brightness);
        }

        private (double X, double Y) Local(double u, double v) => ((cos * (u - cu)) + (sin * (v - cv)), (-sin * (u - cu)) + (cos * (v - cv)));
    }

    /// <summary>An anomaly: where it is (always intersected with the object) and what it does to the colour.</summary>
    private abstract class Anomaly
    {
        public static Anomaly Create(SyntheticDefect defect, Scene scene, SeededRandom r, int size)
        {
            var (u, v) = scene.PointOnObject(r);
            return defect switch
            {
                SyntheticDefect.Scratch => new Scratch(u, v, r, size),
                SyntheticDefect.Spot => new Region(u, v, r.Uniform(0.04, 0.07), r.Uniform(0.5, 1.0), r.Uniform(0, Math.PI), (_, c) => Rgb.Mix(c, new Rgb(105, 60, 30), 0.85)),
                SyntheticDefect.MissingPart => new Region(u, v, r.Uniform(0.07, 0.11), r.Uniform(0.6, 1.0), r.Uniform(0, Math.PI), (s, _) => s.Background),
                _ => new Region(u, v, r.Uniform(0.07, 0.12), r.Uniform(0.6, 1.0), r.Uniform(0, Math.PI), (s, c) => Rgb.Mix(c, s.Tint, 0.6)),
            };
        }

        public bool Contains(Scene scene, double u, double v) => Inside(u, v) && scene.OnObject(u, v);

        public abstract bool Inside(double u, double v);

        public abstract Rgb Apply(Scene scene, Rgb colour, double u, double v);

        public bool Covers(Scene scene, int size)
        {
            for (int y = 0; y < size; y++)
            {
                for (int x = 0; x < size; x++)
                {
                    if (Contains(scene, (x + 0.5) / size, (y + 0.5) / size))
                    {
                        return true;
                    }
                }
            }

            return false;
        }
    }

    private sealed class Scratch : Anomaly
    {
        private readonly double u0, v0, u1, v1, halfWidth;

        public Scratch(double u, double v, SeededRandom r, int size)
        {
            double angle = r.Uniform(0, 2 * Math.PI), length = r.Uniform(0.15, 0.35);
            (u0, v0) = (u, v);
            (u1, v1) = (u + (length * Math.Cos(angle)), v + (length * Math.Sin(angle)));
            halfWidth = Math.Max(0.75, size * 0.006) / size;
        }

        public override bool Inside(double u, double v)
        {
            double du = u1 - u0, dv = v1 - v0;
            double t = Math.Clamp((((u - u0) * du) + ((v - v0) * dv)) / ((du * du) + (dv * dv)), 0, 1);
            double pu = u0 + (t * du) - u, pv = v0 + (t * dv) - v;
            return (pu * pu) + (pv * pv) < halfWidth * halfWidth;
        }

        public override Rgb Apply(Scene scene, Rgb colour, double u, double v) => colour.Luma > 110 ? new Rgb(30, 28, 26) : new Rgb(245, 245, 240);
    }

    private sealed class Region : Anomaly
    {
        private readonly double cu, cv, ru, rv, cos, sin;
        private readonly Func<Scene, Rgb, Rgb> apply;

        public Region(double u, double v, double radius, double aspect, double angle, Func<Scene, Rgb, Rgb> apply)
        {
            (cu, cv, ru, rv) = (u, v, radius, radius * aspect);
            (cos, sin) = (Math.Cos(angle), Math.Sin(angle));
            this.apply = apply;
        }

        public override bool Inside(double u, double v)
        {
            double x = (cos * (u - cu)) + (sin * (v - cv)), y = (-sin * (u - cu)) + (cos * (v - cv));
            return ((x * x) / (ru * ru)) + ((y * y) / (rv * rv)) < 1;
        }

        public override Rgb Apply(Scene scene, Rgb colour, double u, double v) => apply(scene, colour);
    }
}
