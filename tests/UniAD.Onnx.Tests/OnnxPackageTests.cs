using System.IO.Compression;
using System.Xml.Linq;
using UniAD.Core.Tests.Build;
using Xunit.Abstractions;

namespace UniAD.Onnx.Tests;

/// <summary>Packs UniAD.Core.Primitives, UniAD.Core and UniAD.Onnx once, at a throw-away version.</summary>
public sealed class PackedOnnx : PackedPackages
{
    public PackedOnnx()
        : base(new[] { "UniAD.Core.Primitives", "UniAD.Core", "UniAD.Onnx" }, "UniAD.Onnx")
    {
    }
}

/// <summary>
/// The UniAD.Onnx package: the repository's shared metadata (icon, README without repository-relative links, license,
/// repository URL, symbols), its lib folders, and its dependencies: UniAD.Core.Primitives and the managed ONNX Runtime
/// (and SkiaSharp, whose bitmap its API takes), never TorchSharp, UniAD.Core or a native ONNX Runtime package (the
/// application picks its execution provider's).
/// </summary>
[Collection(DotnetBuildCollection.Name)]
public sealed class OnnxPackageTests(PackedOnnx package, ITestOutputHelper output) : IClassFixture<PackedOnnx>
{
    [Fact]
    public void The_package_depends_on_the_primitives_and_the_managed_onnx_runtime_only()
    {
        using var zip = ZipFile.OpenRead(package.PackagePath);
        var entries = zip.Entries.Select(e => e.FullName).Order(StringComparer.Ordinal).ToList();
        output.WriteLine(string.Join(Environment.NewLine, entries));
        foreach (var expected in new[] { "lib/net8.0/UniAD.Onnx.dll", "lib/net8.0/UniAD.Onnx.xml", "lib/net10.0/UniAD.Onnx.dll", "lib/net10.0/UniAD.Onnx.xml", "icon.png", "README.md" })
        {
            Assert.Contains(expected, entries);
        }

        Assert.DoesNotContain(entries, e => e.StartsWith("runtimes/", StringComparison.Ordinal) || e.StartsWith("build", StringComparison.Ordinal) || e.EndsWith(".so", StringComparison.Ordinal));
        Assert.DoesNotContain(entries, e => e.Contains("UniAD.Core.dll", StringComparison.Ordinal) || e.Contains("TorchSharp", StringComparison.OrdinalIgnoreCase));
        package.AssertSharedMetadata(zip, package.PackagePath, "UniAD.Onnx");

        var nuspec = PackedPackages.Nuspec(zip);
        var managed = XDocument.Load(Path.Combine(package.RepositoryRoot, "Directory.Packages.props")).Descendants("PackageVersion")
            .Single(e => (string?)e.Attribute("Include") == "Microsoft.ML.OnnxRuntime.Managed").Attribute("Version")!.Value;
        var groups = nuspec.Descendants().Where(e => e.Name.LocalName == "group").ToList();
        Assert.Equal(new[] { "net10.0", "net8.0" }, groups.Select(g => (string?)g.Attribute("targetFramework") ?? "").Order(StringComparer.Ordinal));
        foreach (var group in groups)
        {
            var dependencies = group.Elements().Where(e => e.Name.LocalName == "dependency")
                .ToDictionary(e => (string?)e.Attribute("id") ?? "", e => (string?)e.Attribute("version") ?? "", StringComparer.Ordinal);
            output.WriteLine($"{group.Attribute("targetFramework")?.Value}: {string.Join(", ", dependencies.Select(d => $"{d.Key} {d.Value}"))}");
            Assert.Equal(package.Version, dependencies["UniAD.Core.Primitives"]);
            Assert.Equal(managed, dependencies["Microsoft.ML.OnnxRuntime.Managed"]);
            Assert.DoesNotContain(dependencies.Keys, id => id.StartsWith("TorchSharp", StringComparison.OrdinalIgnoreCase) || id == "UniAD.Core" || id.StartsWith("libtorch", StringComparison.OrdinalIgnoreCase));
            Assert.DoesNotContain("Microsoft.ML.OnnxRuntime", dependencies.Keys); // the native package is the application's choice

            // Nothing else but SkiaSharp (its public API takes SKBitmap; the version is the repository's pin).
            Assert.Empty(dependencies.Keys.Except(new[] { "UniAD.Core.Primitives", "Microsoft.ML.OnnxRuntime.Managed", "SkiaSharp" }));
        }

        // UniAD.Core, packed beside it, depends on the same base.
        using var core = ZipFile.OpenRead(package.PathOf("UniAD.Core"));
        Assert.Contains(PackedPackages.Nuspec(core).Descendants().Where(e => e.Name.LocalName == "dependency"), d => (string?)d.Attribute("id") == "UniAD.Core.Primitives" && (string?)d.Attribute("version") == package.Version);
    }
}
