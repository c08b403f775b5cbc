using System.Diagnostics;
using System.Globalization;
using UniAD.Core.Metrics;

/// <summary>
/// Pixel metrics at the scale of the MVTec-AD test set (1,725 maps of 224 x 224 = 86.6 M pixels, by default).
/// Every measurement runs in a fresh child process, so that its peak working set is its own: the maps are
/// generated batch by batch and streamed into a <see cref="PixelMetricsAccumulator"/>; the time covers Add
/// (validation, region labelling, compact storage) and Compute (radix sort, sweep), not the generation.
/// </summary>
internal static class MetricsBenchmarks
{
    private const int Batch = 25;

    private static readonly string[] Cases = ["baseline", "auroc", "ap", "f1max", "aupro", "all"];

    public static void Run(int runs, int images, int size, int seed)
    {
        Console.WriteLine($"pixel metrics: {images} synthetic maps of {size} x {size} = {(double)images * size * size / 1e6:F1} M pixels, seed {seed}, batches of {Batch}, {runs} run(s) per row, each in its own process");
        Console.WriteLine("(AUROC, AP and F1-max come from one shared sort and sweep: each alone costs what the three cost together)");
        Console.WriteLine($"{"what",-10} {"value",-27} {"Add ms",9} {"Compute ms",11} {"total ms",9} {"peak WS MiB",12} {"allocated MiB",14}");
        var last = default((string Value, double AddMs, double ComputeMs, long PeakBytes, long AllocatedBytes, long AnomalousPixels, long Regions));
        foreach (var name in Cases)
        {
            var results = Enumerable.Range(0, runs).Select(_ => RunChild(name, images, size, seed)).ToList();
            last = results[0];
            var median = results.OrderBy(r => r.AddMs + r.ComputeMs).ElementAt(results.Count / 2);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name,-10} {median.Value,-27} {median.AddMs,9:F0} {median.ComputeMs,11:F0} {median.AddMs + median.ComputeMs,9:F0} {results.Max(r => r.PeakBytes) / 1048576.0,12:F0} {median.AllocatedBytes / 1048576.0,14:F0}"));
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"anomalous pixels {last.AnomalousPixels} ({100.0 * last.AnomalousPixels / ((double)images * size * size):F2} %), regions {last.Regions}"));
    }

    /// <summary>The child's side: one measurement, printed as a single machine-readable line.</summary>
    public static void Child(string name, int images, int size, int seed)
    {
        bool auPro = name is "aupro" or "all", measure = name != "baseline";
        var accumulator = new PixelMetricsAccumulator(computeAuPro: auPro);
        var maps = new SyntheticMaps(size, seed);
        int pixels = size * size;
        var mapBuffer = new float[Batch * pixels];
        var maskBuffer = new float[Batch * pixels];
        var add = new Stopwatch();
        for (int first = 0; first < images; first += Batch)
        {
            int count = Math.Min(Batch, images - first);
            for (int i = 0; i < count; i++)
            {
                maps.Fill(first + i, mapBuffer.AsSpan(i * pixels, pixels), maskBuffer.AsSpan(i * pixels, pixels));
            }

            if (measure)
            {
                add.Start();
                accumulator.Add(mapBuffer.AsSpan(0, count * pixels), maskBuffer.AsSpan(0, count * pixels), size, size);
                add.Stop();
            }
        }

        var compute = Stopwatch.StartNew();
        var m = measure ? accumulator.Compute() : null;
        compute.Stop();
        string value = m is null ? "-" : name switch
        {
            "auroc" => Format(m.Auroc),
            "ap" => Format(m.AveragePrecision),
            "f1max" => Format(m.F1Max.F1),
            "aupro" => Format(m.AuPro),
            _ => $"{Format(m.Auroc)}/{Format(m.AveragePrecision)}/{Format(m.F1Max.F1)}/{Format(m.AuPro)}",
        };
        using var self = Process.GetCurrentProcess();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"RESULT {value} {add.Elapsed.TotalMilliseconds:R} {compute.Elapsed.TotalMilliseconds:R} {self.PeakWorkingSet64} {GC.GetTotalAllocatedBytes()} {accumulator.AnomalousPixels} {accumulator.Regions}"));
    }

    private static string Format(double value) => value.ToString("F4", CultureInfo.InvariantCulture);

    private static (string Value, double AddMs, double ComputeMs, long PeakBytes, long AllocatedBytes, long AnomalousPixels, long Regions) RunChild(string name, int images, int size, int seed)
    {
        var start = new ProcessStartInfo { RedirectStandardOutput = true, UseShellExecute = false };
        var host = Environment.ProcessPath!;
        start.FileName = host;
        if (Path.GetFileNameWithoutExtension(host) == "dotnet")
        {
            start.ArgumentList.Add(typeof(MetricsBenchmarks).Assembly.Location);
        }

        foreach (var arg in new[] { "--metrics-child", name, "--images", images.ToString(CultureInfo.InvariantCulture), "--size", size.ToString(CultureInfo.InvariantCulture), "--seed", seed.ToString(CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(arg);
        }

        using var child = Process.Start(start)!;
        string output = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        var line = output.Split('\n').FirstOrDefault(l => l.StartsWith("RESULT ", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"The '{name}' measurement (exit code {child.ExitCode}) printed no result:\n{output}");
        var f = line.Split(' ');
        return (f[1], double.Parse(f[2], CultureInfo.InvariantCulture), double.Parse(f[3], CultureInfo.InvariantCulture),
            long.Parse(f[4], CultureInfo.InvariantCulture), long.Parse(f[5], CultureInfo.InvariantCulture), long.Parse(f[6], CultureInfo.InvariantCulture), long.Parse(f[7], CultureInfo.InvariantCulture));
    }
}
