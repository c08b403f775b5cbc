using System.Text.Json;
using UniAD.Core.Export;
using UniAD.Core.Tests.Build;
using UniAD.Core.Tests.Detection;
using Xunit.Abstractions;

namespace UniAD.Onnx.Tests;

/// <summary>Tests that start builds of their own: they run one at a time, never beside another collection.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class DotnetBuildCollection
{
    public const string Name = "dotnet builds";
}

/// <summary>
/// samples/UniAD.OnnxScore as it ships: its publish folder holds no libtorch or TorchSharp file and the published app scores
/// an exported model (JSON Lines as <c>uniad score --json</c>, the documented exit codes); and a build for linux-arm64, a
/// runtime without libtorch, is not refused (UniAD.Core's UNIAD001 check does not apply to it).
/// </summary>
[Collection(DotnetBuildCollection.Name)]
public sealed class SamplePublishTests(SyntheticData data, ITestOutputHelper output) : IClassFixture<SyntheticData>, IDisposable
{
    private static readonly string[] TorchFiles = { "torch_cpu", "libtorch", "LibTorchSharp", "TorchSharp.dll", "UniAD.Core.dll", "libc10" };
    private readonly string root = Directory.CreateTempSubdirectory("uniad-onnxscore-").FullName;
    private readonly string repository = DocBlocks.RepositoryRoot();

    private string Project => Path.Combine(repository, "samples", "UniAD.OnnxScore", "UniAD.OnnxScore.csproj");

    [Fact]
    public void The_published_sample_has_no_libtorch_and_scores_an_exported_model()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var images = data.Test.Samples.Take(3).Select(s => s.ImagePath).ToList();
        var expected = detector.ScoreBatch(images);
        var sorted = expected.Select(r => r.Score).Order().ToList();
        detector.SetThresholds((sorted[0] + sorted[1]) / 2); // between two scores, never on one (a tie float order would decide)
        expected = detector.ScoreBatch(images);
        var model = Path.Combine(root, "model.onnx");
        detector.ExportOnnx(model);

        var published = Path.Combine(root, "published");
        var publish = DotnetCli.Run(repository, PackedPackages.ProcessTimeout, "publish", Project, "-c", "Release", "-o", published,
            "--artifacts-path", Path.Combine(root, "artifacts"), "--disable-build-servers", "-nodeReuse:false");
        Assert.True(publish.ExitCode == 0, "dotnet publish failed:" + Environment.NewLine + publish.Describe());
        var files = Directory.GetFiles(published, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(published, f)).Order(StringComparer.Ordinal).ToList();
        output.WriteLine($"published in {publish.Elapsed.TotalSeconds:F0} s: {files.Count} files, {files.Sum(f => new FileInfo(Path.Combine(published, f)).Length) / 1048576.0:F1} MiB");
        output.WriteLine(string.Join(Environment.NewLine, files));
        var torch = files.Where(f => TorchFiles.Any(t => Path.GetFileName(f).Contains(t, StringComparison.OrdinalIgnoreCase))).ToList();
        Assert.True(torch.Count == 0, $"the publish folder holds libtorch/TorchSharp files: {string.Join(", ", torch)}");
        Assert.Contains("UniAD.Onnx.dll", files);
        Assert.Contains(files, f => Path.GetFileName(f) == "libonnxruntime.so");

        // One JSON object per image, the fields of `uniad score --json`, the detector's numbers.
        string app = Path.Combine(published, "UniAD.OnnxScore.dll");
        var run = DotnetCli.Run(root, PackedPackages.ProcessTimeout, "exec", app, model, images[0], Path.GetDirectoryName(images[1])!);
        Assert.True(run.ExitCode == 0, "the published sample failed:" + Environment.NewLine + run.Describe());
        var lines = run.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        output.WriteLine(run.StandardOutput + run.StandardError);
        Assert.True(lines.Count >= 2);
        Assert.Equal(images[0], lines[0].GetProperty("path").GetString());
        foreach (var line in lines)
        {
            var path = line.GetProperty("path").GetString()!;
            var result = path == images[0] ? expected[0] : detector.Score(path);
            double score = line.GetProperty("score").GetDouble();
            Assert.True(Math.Abs(score - result.Score) <= 1e-4 * Math.Max(1, Math.Abs(result.Score)), $"{path}: sample {score:G9}, detector {result.Score:G9}");
            Assert.Equal(result.IsAnomalous, line.GetProperty("anomalous").GetBoolean());
            Assert.Equal(result.NormalizedScore!.Value, line.GetProperty("normalized").GetDouble(), 1e-4);
        }

        // Exit codes: a missing input stops the run (1) or, with --keep-going, is reported in its place (3); bad options are usage errors (2).
        var missing = Path.Combine(root, "missing.png");
        var stop = DotnetCli.Run(root, PackedPackages.ProcessTimeout, "exec", app, model, missing, images[0]);
        Assert.Equal(1, stop.ExitCode);
        Assert.Equal(missing, JsonDocument.Parse(stop.StandardOutput.Trim()).RootElement.GetProperty("path").GetString());
        var keep = DotnetCli.Run(root, PackedPackages.ProcessTimeout, "exec", app, model, missing, images[0], "--keep-going");
        Assert.Equal(3, keep.ExitCode);
        var keptLines = keep.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.True(keptLines[0].TryGetProperty("error", out _));
        Assert.Equal(images[0], keptLines[1].GetProperty("path").GetString());
        Assert.Equal(2, DotnetCli.Run(root, PackedPackages.ProcessTimeout, "exec", app, model, images[0], "--clas", "x").ExitCode);
        Assert.Equal(1, DotnetCli.Run(root, PackedPackages.ProcessTimeout, "exec", app, images[0], images[0]).ExitCode); // a PNG is not a model

        // Without the native ONNX Runtime (an app that forgot the provider's package), Load names the package to add.
        foreach (var native in Directory.GetFiles(published, "libonnxruntime.so", SearchOption.AllDirectories))
        {
            File.Delete(native);
        }

        var noNative = DotnetCli.Run(root, PackedPackages.ProcessTimeout, "exec", app, model, images[0]);
        output.WriteLine(noNative.Describe());
        Assert.Equal(1, noNative.ExitCode);
        Assert.Contains("Microsoft.ML.OnnxRuntime", noNative.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public void Building_the_sample_for_linux_arm64_is_not_refused()
    {
        var artifacts = Path.Combine(root, "arm64");
        var build = DotnetCli.Run(repository, PackedPackages.ProcessTimeout, "build", Project, "-c", "Release", "-r", "linux-arm64",
            "--artifacts-path", artifacts, "--disable-build-servers", "-nodeReuse:false");
        output.WriteLine(build.Describe());
        Assert.True(build.ExitCode == 0, "the linux-arm64 build failed:" + Environment.NewLine + build.Describe());
        Assert.DoesNotContain("UNIAD001", build.StandardOutput, StringComparison.Ordinal);

        // The native ONNX Runtime in the output is an AArch64 ELF file (e_machine 183).
        var library = Assert.Single(Directory.GetFiles(artifacts, "libonnxruntime.so", SearchOption.AllDirectories), f => f.Contains("bin", StringComparison.Ordinal));
        var header = File.ReadAllBytes(library).AsSpan(0, 20);
        Assert.Equal(183, BitConverter.ToUInt16(header[18..20]));
        Assert.DoesNotContain(Directory.GetFiles(artifacts, "*", SearchOption.AllDirectories), f => TorchFiles.Any(t => Path.GetFileName(f).Contains(t, StringComparison.OrdinalIgnoreCase)));
    }

    public void Dispose() => Directory.Delete(root, recursive: true);
}
