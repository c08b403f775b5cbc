using System.IO.Compression;
using System.Security;
using System.Xml.Linq;
using UniAD.Build;
using Xunit;
using Xunit.Abstractions;

namespace UniAD.Core.Tests.Build;

/// <summary>Tests that start builds of their own: they run one at a time, never beside another collection.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class DotnetBuildCollection
{
    public const string Name = "dotnet builds";
}

/// <summary>Packs src/UniAD.Core (and UniAD.Core.Primitives, its TorchSharp-free base) once, at a throw-away version, into a temporary folder.</summary>
public sealed class PackedUniADCore : PackedPackages
{
    public PackedUniADCore()
        : base(new[] { "UniAD.Core.Primitives", "UniAD.Core" }, "UniAD.Core")
    {
    }
}

[Collection(DotnetBuildCollection.Name)]
public sealed class PackageConsumerTests : IClassFixture<PackedUniADCore>
{
    private const string Glibcxx3432 = "GLIBCXX_3.4.32";

    private readonly PackedUniADCore _package;
    private readonly ITestOutputHelper _output;

    public PackageConsumerTests(PackedUniADCore package, ITestOutputHelper output)
    {
        _package = package;
        _output = output;
    }

    [Fact]
    public void Package_ShipsBuildHelperAndBothLibraries_AndNoNativeBackend()
    {
        using var zip = ZipFile.OpenRead(_package.PackagePath);
        var entries = zip.Entries.Select(e => e.FullName).ToHashSet(StringComparer.Ordinal);
        string listing = string.Join(Environment.NewLine, entries.Order(StringComparer.Ordinal));
        _output.WriteLine(listing);

        foreach (string expected in new[]
        {
            "buildTransitive/UniAD.Core.targets",
            "buildTransitive/GlibcxxWeakener.cs",
            "build/UniAD.Core.targets",
            "build/GlibcxxWeakener.cs",
            "lib/net8.0/UniAD.Core.dll",
            "lib/net10.0/UniAD.Core.dll",
            "lib/net10.0/UniAD.Core.xml",
            "icon.png",
            "README.md",
        })
        {
            Assert.True(entries.Contains(expected), $"{expected} is missing from {_package.PackagePath}:{Environment.NewLine}{listing}");
        }

        Assert.DoesNotContain(entries, e => e.StartsWith("runtimes/", StringComparison.Ordinal) || e.EndsWith(".so", StringComparison.Ordinal));

        // The shipped helper is the repository's file, byte for byte.
        string helper = Path.Combine(_package.RepositoryRoot, "src", "UniAD.Core", "buildTransitive", "GlibcxxWeakener.cs");
        Assert.Equal(File.ReadAllBytes(helper), PackedPackages.ReadEntry(zip, "buildTransitive/GlibcxxWeakener.cs"));

        _package.AssertSharedMetadata(zip, _package.PackagePath, "UniAD.Core");
        var nuspec = PackedPackages.Nuspec(zip);
        var groups = nuspec.Descendants().Where(e => e.Name.LocalName == "group").ToList();
        Assert.Equal(
            new[] { "net10.0", "net8.0" },
            groups.Select(g => (string?)g.Attribute("targetFramework") ?? "").Order(StringComparer.Ordinal).ToArray());
        foreach (var group in groups)
        {
            var ids = group.Elements().Where(e => e.Name.LocalName == "dependency").Select(e => (string?)e.Attribute("id") ?? "").ToList();
            Assert.DoesNotContain(ids, id => id.Equals("TorchSharp-cpu", StringComparison.OrdinalIgnoreCase));
            Assert.DoesNotContain(ids, id => id.Contains("cuda", StringComparison.OrdinalIgnoreCase));
            Assert.DoesNotContain(ids, id => id.StartsWith("libtorch", StringComparison.OrdinalIgnoreCase));

            // SkiaSharp (with its Windows and macOS assets), but no Linux native library forced on every consumer.
            Assert.Contains("SkiaSharp", ids);
            Assert.DoesNotContain(ids, id => id.StartsWith("SkiaSharp.NativeAssets", StringComparison.OrdinalIgnoreCase));

            // The managed TorchSharp package, at the repository's version, is what it does depend on.
            var torchSharp = Assert.Single(group.Elements(), e => e.Name.LocalName == "dependency" && (string?)e.Attribute("id") == "TorchSharp");
            Assert.Equal(_package.TorchSharpVersion, (string?)torchSharp.Attribute("version"));
        }

        Assert.DoesNotContain("TorchSharp-cpu", nuspec.ToString(), StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("cuda", nuspec.ToString(), StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// samples/UniAD.ConsumerTests, a consumer's xUnit project that references the PACKAGES (here the throw-away version
    /// just packed), runs green: its faked IImageScorer tests and its tests on TestDetectors.Tiny.
    /// </summary>
    [Fact]
    public void TheConsumerTestsSample_PassesAgainstThePackedPackages()
    {
        string sample = Path.Combine(_package.RepositoryRoot, "samples", "UniAD.ConsumerTests");
        var run = DotnetCli.Run(
            sample,
            PackedUniADCore.ProcessTimeout,
            "test", Path.Combine(sample, "UniAD.ConsumerTests.csproj"),
            "-c", "Release",
            $"-p:UniADPackageVersion={_package.Version}",
            $"-p:UniADPackageFeed={_package.PackageDirectory}",
            "--artifacts-path", Path.Combine(_package.WorkDirectory, "consumer-tests"),
            "--disable-build-servers",
            "-nodeReuse:false");

        // The inner run's own summary lines are renamed, so that CI's count of THIS suite never includes them.
        string described = System.Text.RegularExpressions.Regex.Replace(run.Describe(), "(Passed|Failed)!", "$1 (consumer sample)");
        Assert.True(run.ExitCode == 0, "The consumer's tests failed:" + Environment.NewLine + described);
        var summary = System.Text.RegularExpressions.Regex.Match(run.StandardOutput, @"Passed!\s+-\s+Failed:\s+(\d+),\s+Passed:\s+(\d+),\s+Skipped:\s+(\d+)");
        Assert.True(summary.Success, "No test summary:" + Environment.NewLine + described);
        Assert.Equal(("0", "8", "0"), (summary.Groups[1].Value, summary.Groups[2].Value, summary.Groups[3].Value));
        _output.WriteLine($"consumer sample: 8 passed in {run.Elapsed.TotalSeconds:F0} s");
    }

    [Fact]
    public void ConsoleAppReferencingThePackage_BuildsWeakensAndRuns()
    {
        string consumer = _package.ConsumerDirectory;
        Assert.StartsWith("..", Path.GetRelativePath(_package.RepositoryRoot, consumer), StringComparison.Ordinal);
        WriteConsumerFolder(consumer);

        File.WriteAllText(Path.Combine(consumer, "Consumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="UniAD.Core" Version="{_package.Version}" />
                <PackageReference Include="TorchSharp-cpu" Version="{_package.TorchSharpVersion}" />
              </ItemGroup>
            </Project>
            """);

        File.WriteAllText(Path.Combine(consumer, "Program.cs"), """
            using UniAD.Core;
            using UniAD.Core.Attention;
            using static TorchSharp.torch;

            UniAD.Core.Native.TorchRuntime.EnsureLoaded(); // what every UniAD.Core entry point does first

            using var mask = NeighborMask.Create(new GridSize(4, 4), new GridSize(3, 3));
            using var blocked = mask.eq(float.NegativeInfinity).sum();
            using var open = mask.eq(0f).sum();
            using var a = ones(2, 3);
            using var doubled = a * 2;
            using var total = doubled.sum();
            Console.WriteLine(FormattableString.Invariant($"mask-shape={string.Join("x", mask.shape)}"));
            Console.WriteLine(FormattableString.Invariant($"mask-neg-inf={blocked.item<long>()}"));
            Console.WriteLine(FormattableString.Invariant($"mask-zero={open.item<long>()}"));
            Console.WriteLine(FormattableString.Invariant($"tensor-sum={total.item<float>()}"));
            """);

        var build = DotnetCli.Run(consumer, PackedUniADCore.ProcessTimeout, "build", "-c", "Release", "--disable-build-servers", "-nodeReuse:false");
        _output.WriteLine(build.Describe());
        Assert.True(build.ExitCode == 0, "The consumer did not build:" + Environment.NewLine + build.Describe());

        // The package's buildTransitive targets ran in the consumer's build.
        string bin = Path.Combine(consumer, "bin");
        string[] libraries = Directory.GetFiles(bin, "libLibTorchSharp.so", SearchOption.AllDirectories);
        Assert.True(libraries.Length > 0, $"No libLibTorchSharp.so under {bin}.{Environment.NewLine}{build.Describe()}");
        bool systemHasIt = ElfVersionPatcherTests.SystemLibStdCxxDefines(Glibcxx3432);
        foreach (string library in libraries)
        {
            var need = Assert.Single(ElfVersionPatcher.ReadVersionNeeds(File.ReadAllBytes(library), library), n => n.Version == Glibcxx3432);
            if (!systemHasIt)
            {
                Assert.True(need.IsWeak, $"{library}: the {Glibcxx3432} need is not weak, so the package's buildTransitive targets did not run.{Environment.NewLine}{build.Describe()}");
                Assert.Contains($"{library}: Weakened", build.StandardOutput, StringComparison.Ordinal);
            }
        }

        // No SkiaSharp Linux native library in this consumer: the package's targets say which to add.
        Assert.Contains("UNIAD002", build.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("SkiaSharp.NativeAssets.Linux.NoDependencies", build.StandardOutput, StringComparison.Ordinal);

        var run = DotnetCli.Run(consumer, PackedUniADCore.ProcessTimeout, "run", "-c", "Release", "--no-build");
        _output.WriteLine(run.Describe());
        Assert.True(run.ExitCode == 0, "The consumer failed:" + Environment.NewLine + run.Describe());

        var values = run.StandardOutput
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(line => line.Contains('=', StringComparison.Ordinal))
            .Select(line => line.Split('=', 2))
            .ToDictionary(kv => kv[0], kv => kv[1], StringComparer.Ordinal);
        string context = Environment.NewLine + run.Describe();
        // 4x4 tokens, 3x3 neighbourhood clipped at the borders: 4 corners see 4 keys, 8 edge tokens 6,
        // 4 inner tokens 9 → 16 + 48 + 36 = 100 blocked of 16·16 = 256.
        Assert.True(values.TryGetValue("mask-shape", out var shape) && shape == "16x16", "mask-shape" + context);
        Assert.True(values.TryGetValue("mask-neg-inf", out var negInf) && negInf == "100", "mask-neg-inf" + context);
        Assert.True(values.TryGetValue("mask-zero", out var zero) && zero == "156", "mask-zero" + context);
        Assert.True(values.TryGetValue("tensor-sum", out var sum) && sum == "12", "tensor-sum" + context);

        // Publishing runs the same fix-up on the publish folder, and the published app runs.
        string published = Path.Combine(consumer, "published");
        var publish = DotnetCli.Run(consumer, PackedUniADCore.ProcessTimeout, "publish", "-c", "Release", "--no-build", "-o", published, "--disable-build-servers", "-nodeReuse:false");
        _output.WriteLine(publish.Describe());
        Assert.True(publish.ExitCode == 0, "The consumer did not publish:" + Environment.NewLine + publish.Describe());
        string[] publishedLibraries = Directory.GetFiles(published, "libLibTorchSharp.so", SearchOption.AllDirectories);
        Assert.NotEmpty(publishedLibraries);
        foreach (string library in publishedLibraries)
        {
            var need = Assert.Single(ElfVersionPatcher.ReadVersionNeeds(File.ReadAllBytes(library), library), n => n.Version == Glibcxx3432);
            Assert.True(systemHasIt || need.IsWeak, $"{library}: the {Glibcxx3432} need is not weak after publish.{Environment.NewLine}{publish.Describe()}");
        }

        var runPublished = DotnetCli.Run(published, PackedUniADCore.ProcessTimeout, "exec", Path.Combine(published, "Consumer.dll"));
        Assert.True(runPublished.ExitCode == 0, "The published consumer failed:" + Environment.NewLine + runPublished.Describe());
        Assert.Contains("mask-neg-inf=100", runPublished.StandardOutput, StringComparison.Ordinal);

        // The running machine decides: with TorchSharp's original (unpatched) library on a machine whose libstdc++
        // lacks GLIBCXX_3.4.32, the app stops with a message that names the cause and the fix, not TorchSharp's.
        if (!systemHasIt)
        {
            string original = Path.Combine(PackedUniADCore.GlobalPackagesFolder, "torchsharp", _package.TorchSharpVersion, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
            foreach (string library in publishedLibraries)
            {
                File.Copy(original, library, overwrite: true);
            }

            var unpatched = DotnetCli.Run(published, PackedUniADCore.ProcessTimeout, "exec", Path.Combine(published, "Consumer.dll"));
            _output.WriteLine(unpatched.Describe());
            Assert.NotEqual(0, unpatched.ExitCode);
            string said = unpatched.StandardOutput + unpatched.StandardError;
            Assert.Contains("System.DllNotFoundException", said, StringComparison.Ordinal);
            Assert.Contains(Glibcxx3432, said, StringComparison.Ordinal);
            Assert.Contains("UniADGlibcxxPatch", said, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Building_for_a_runtime_without_libtorch_fails_and_names_the_onnx_route()
    {
        string consumer = Path.Combine(_package.WorkDirectory, "arm-consumer");
        WriteConsumerFolder(consumer);
        File.WriteAllText(Path.Combine(consumer, "ArmConsumer.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="UniAD.Core" Version="{_package.Version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(consumer, "Program.cs"), "System.Console.WriteLine(typeof(UniAD.Core.Detection.AnomalyDetector).Name);\n");
        foreach (string rid in new[] { "linux-arm64", "osx-x64" })
        {
            var build = DotnetCli.Run(consumer, PackedUniADCore.ProcessTimeout, "build", "-c", "Release", "-r", rid, "--disable-build-servers", "-nodeReuse:false");
            _output.WriteLine(build.Describe());
            Assert.NotEqual(0, build.ExitCode);
            Assert.Contains("error UNIAD001", build.StandardOutput, StringComparison.Ordinal);
            Assert.Contains($"no native build for '{rid}'", build.StandardOutput, StringComparison.Ordinal);
            Assert.Contains("UniAD.Onnx", build.StandardOutput, StringComparison.Ordinal);
        }
    }

    /// <summary>A consumer folder: the local feed on top of the machine's sources (no clear), and MSBuild's upward search for Directory.* files stopped here.</summary>
    private void WriteConsumerFolder(string consumer)
    {
        Directory.CreateDirectory(consumer);
        File.WriteAllText(Path.Combine(consumer, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="uniad-consumertest" value="{SecurityElement.Escape(_package.PackageDirectory)}" />
              </packageSources>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(consumer, "Directory.Build.props"), "<Project />\n");
        File.WriteAllText(Path.Combine(consumer, "Directory.Build.targets"), "<Project />\n");
        File.WriteAllText(Path.Combine(consumer, "Directory.Packages.props"), "<Project />\n");
    }
}
