using System.Diagnostics;
using System.Net.Http.Json;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using UniAD.Core.Tests.Build;
using UniAD.Onnx;
using UniAD.ScoringService;
using Xunit.Abstractions;

namespace UniAD.Hosting.Tests.Onnx;

/// <summary>
/// The scoring service published for the ONNX runtime (<c>-p:UniADScoringRuntime=onnx</c>): its folder holds no libtorch,
/// libc10 or TorchSharp native file, the published service scores an exported model over HTTP with OnnxAnomalyScorer's
/// numbers without loading TorchSharp, and it refuses a checkpoint with a message that says why.
/// </summary>
[Collection(ModelsCollection.Name)]
public sealed partial class OnnxServicePublishTests(TestModels models, ITestOutputHelper output) : IDisposable
{
    private static readonly string[] TorchNativeFiles = { "libtorch", "libtorch_cpu", "libc10", "LibTorchSharp", "torch_cpu", "c10.dll" };
    private readonly string root = Directory.CreateTempSubdirectory("uniad-onnx-service-").FullName;

    [Fact]
    public async Task The_onnx_publish_has_no_libtorch_and_serves_an_exported_model()
    {
        if (!OperatingSystem.IsLinux())
        {
            return; // the folder listing and /proc/<pid>/maps below are Linux's
        }

        string repository = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(repository, "UniAD.Core.sln")))
        {
            repository = Path.GetDirectoryName(repository) ?? throw new DirectoryNotFoundException("No UniAD.Core.sln above the tests.");
        }

        var published = Path.Combine(root, "published");
        var publish = DotnetCli.Run(repository, TimeSpan.FromMinutes(10), "publish", Path.Combine(repository, "samples", "UniAD.ScoringService", "UniAD.ScoringService.csproj"),
            "-c", "Release", "-r", RuntimeInformation.RuntimeIdentifier, "--self-contained", "false", "-p:UniADScoringRuntime=onnx", "-o", published,
            "--artifacts-path", Path.Combine(root, "artifacts"), "--disable-build-servers", "-nodeReuse:false");
        Assert.True(publish.ExitCode == 0, "dotnet publish failed:" + Environment.NewLine + publish.Describe());
        var files = Directory.GetFiles(published, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(published, f)).Order(StringComparer.Ordinal).ToList();
        output.WriteLine($"published in {publish.Elapsed.TotalSeconds:F0} s: {files.Count} files, {files.Sum(f => new FileInfo(Path.Combine(published, f)).Length) / 1048576.0:F1} MiB");
        output.WriteLine(string.Join(Environment.NewLine, files));
        var torch = files.Where(f => TorchNativeFiles.Any(t => Path.GetFileName(f).Contains(t, StringComparison.OrdinalIgnoreCase))).ToList();
        Assert.True(torch.Count == 0, $"the ONNX service's publish folder holds libtorch files: {string.Join(", ", torch)}");
        Assert.Contains("libonnxruntime.so", files);
        Assert.Contains("UniAD.Onnx.dll", files);

        // The published service on the exported model: OnnxAnomalyScorer's numbers over HTTP, TorchSharp never loaded.
        using var reference = OnnxAnomalyScorer.Load(models.OnnxA);
        using (var service = PublishedService.Start(Path.Combine(published, "UniAD.ScoringService.dll"), published, "--UniAD:ModelPath=" + models.OnnxA))
        {
            var address = await service.AddressAsync(TimeSpan.FromSeconds(60));
            using var client = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromSeconds(30) };
            foreach (var (name, bytes) in models.Images.Take(3))
            {
                using var content = new ByteArrayContent(bytes);
                content.Headers.ContentType = new("image/png");
                using var response = await client.PostAsync($"/score?name={Uri.EscapeDataString(name)}", content);
                Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
                var verdict = (await response.Content.ReadFromJsonAsync<ScoreResponse>(new JsonSerializerOptions(JsonSerializerDefaults.Web)))!;
                var expected = reference.Score(bytes, name);
                Assert.True(Math.Abs(expected.Score - verdict.Score) <= 1e-5 * Math.Max(1, Math.Abs(expected.Score)), $"{name}: {verdict.Score:G9} vs {expected.Score:G9}");
                Assert.Equal(expected.IsAnomalous, verdict.Anomalous);
            }

            var mapped = File.ReadAllLines($"/proc/{service.Id}/maps").Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).ElementAtOrDefault(5) ?? string.Empty).Distinct().ToList();
            Assert.Contains(mapped, m => m.EndsWith("libonnxruntime.so", StringComparison.Ordinal));
            Assert.DoesNotContain(mapped, m => Path.GetFileName(m).Contains("TorchSharp", StringComparison.OrdinalIgnoreCase) || Path.GetFileName(m).StartsWith("libtorch", StringComparison.Ordinal));
        }

        // A checkpoint needs libtorch, which this build does not ship: the start fails saying so.
        using var refused = PublishedService.Start(Path.Combine(published, "UniAD.ScoringService.dll"), published, "--UniAD:ModelPath=" + models.ModelA);
        var (exitCode, log) = await refused.ExitAsync(TimeSpan.FromSeconds(60));
        Assert.NotEqual(0, exitCode);
        Assert.Contains("ships ONNX Runtime only", log);
    }

    public void Dispose() => Directory.Delete(root, recursive: true);

    /// <summary>The published service as a child process on a free loopback port.</summary>
    private sealed partial class PublishedService : IDisposable
    {
        private readonly Process process;
        private readonly System.Text.StringBuilder log = new();
        private readonly TaskCompletionSource<string> address = new(TaskCreationOptions.RunContinuationsAsynchronously);

        private PublishedService(Process process) => this.process = process;

        public int Id => process.Id;

        public static PublishedService Start(string app, string workingDirectory, params string[] arguments)
        {
            var psi = new ProcessStartInfo(DotnetCli.Executable) { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { "exec", app, "--urls", "http://127.0.0.1:0" }.Concat(arguments))
            {
                psi.ArgumentList.Add(a);
            }

            psi.Environment["Logging__Console__FormatterName"] = "simple";
            var service = new PublishedService(new Process { StartInfo = psi });
            service.process.OutputDataReceived += (_, e) => service.Line(e.Data);
            service.process.ErrorDataReceived += (_, e) => service.Line(e.Data);
            service.process.Start();
            service.process.BeginOutputReadLine();
            service.process.BeginErrorReadLine();
            return service;
        }

        public async Task<string> AddressAsync(TimeSpan timeout)
        {
            var exited = process.WaitForExitAsync();
            var first = await Task.WhenAny(address.Task, exited, Task.Delay(timeout));
            Assert.True(first == address.Task, "the published service did not start listening:" + Environment.NewLine + Log());
            return await address.Task;
        }

        public async Task<(int ExitCode, string Log)> ExitAsync(TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            await process.WaitForExitAsync(cts.Token);
            return (process.ExitCode, Log());
        }

        public void Dispose()
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit(10_000);
            }

            process.Dispose();
        }

        private string Log()
        {
            lock (log)
            {
                return log.ToString();
            }
        }

        private void Line(string? line)
        {
            if (line is null)
            {
                return;
            }

            lock (log)
            {
                log.AppendLine(line);
            }

            if (Listening().Match(line) is { Success: true } m)
            {
                address.TrySetResult(m.Groups["url"].Value);
            }
        }

        [GeneratedRegex(@"Now listening on: (?<url>http://\S+)")]
        private static partial Regex Listening();
    }
}
