using System.IO.Compression;
using System.Xml.Linq;

namespace UniAD.Core.Tests.Build;

/// <summary>
/// Packs some of the repository's packages once, at a throw-away version, into a temporary feed (the fixture pattern
/// of the package tests; UniAD.Onnx.Tests links this file), and removes that version from the global packages folder
/// afterwards. <see cref="PackedUniADCore"/> packs UniAD.Core with its base; UniAD.Onnx's tests pack UniAD.Onnx too.
/// </summary>
public abstract class PackedPackages : IDisposable
{
    public static readonly TimeSpan ProcessTimeout = TimeSpan.FromMinutes(10);

    /// <summary>The repository URL the pack is given (a file URL: no host name is written into the repository).</summary>
    public const string RepositoryUrl = "file:///uniad-core-repository";

    private readonly string[] projects;

    /// <param name="projects">The projects under src/, packed in this order (dependencies first).</param>
    /// <param name="mainPackage">The package whose file <see cref="PackagePath"/> names.</param>
    protected PackedPackages(string[] projects, string mainPackage)
    {
        this.projects = projects;
        RepositoryRoot = DocBlocks.RepositoryRoot();
        Version = "0.0.0-consumertest." + Guid.NewGuid().ToString("N")[..12];
        WorkDirectory = Path.Combine(Path.GetTempPath(), "uniad-consumertest-" + Guid.NewGuid().ToString("N"));
        PackageDirectory = Path.Combine(WorkDirectory, "feed");
        ConsumerDirectory = Path.Combine(WorkDirectory, "consumer");
        Directory.CreateDirectory(PackageDirectory);
        TorchSharpVersion = XDocument.Load(Path.Combine(RepositoryRoot, "Directory.Packages.props"))
            .Descendants("TorchSharpVersion").Single().Value;

        // --artifacts-path keeps this build's bin/obj out of the repository, so packing never races
        // with (or rewrites) the outputs the running tests were loaded from.
        foreach (var project in projects)
        {
            PackResult = DotnetCli.Run(
                RepositoryRoot,
                ProcessTimeout,
                "pack", Path.Combine(RepositoryRoot, "src", project, project + ".csproj"),
                "-c", "Release",
                "-o", PackageDirectory,
                "--artifacts-path", Path.Combine(WorkDirectory, "artifacts"),
                $"-p:PackageVersion={Version}",
                $"-p:UniADRepositoryUrl={RepositoryUrl}",
                "-p:ContinuousIntegrationBuild=true",
                "--disable-build-servers",
                "-nodeReuse:false");
            if (PackResult.ExitCode != 0)
            {
                Dispose();
                throw new InvalidOperationException($"dotnet pack {project} failed:" + Environment.NewLine + PackResult.Describe());
            }
        }

        PackagePath = PathOf(mainPackage);
        if (!File.Exists(PackagePath))
        {
            string[] found = Directory.GetFiles(PackageDirectory);
            Dispose();
            throw new InvalidOperationException($"dotnet pack did not write {PackagePath} (found: {string.Join(", ", found)}).{Environment.NewLine}{PackResult.Describe()}");
        }
    }

    public string RepositoryRoot { get; }

    public string SymbolsPath => Path.ChangeExtension(PackagePath, ".snupkg");

    public string Version { get; }

    public string TorchSharpVersion { get; }

    public string WorkDirectory { get; }

    public string PackageDirectory { get; }

    public string ConsumerDirectory { get; }

    public string PackagePath { get; } = "";

    internal ProcessResult PackResult { get; } = null!;

    public static string GlobalPackagesFolder =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } folder
            ? folder
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    /// <summary>The .nupkg of package <paramref name="id"/> at this version.</summary>
    public string PathOf(string id) => Path.Combine(PackageDirectory, $"{id}.{Version}.nupkg");

    /// <summary>The package's nuspec.</summary>
    public static XDocument Nuspec(ZipArchive zip)
    {
        var entry = Assert.Single(zip.Entries, e => !e.FullName.Contains('/', StringComparison.Ordinal) && e.FullName.EndsWith(".nuspec", StringComparison.Ordinal));
        using var stream = entry.Open();
        return XDocument.Load(stream);
    }

    /// <summary>An entry's bytes.</summary>
    public static byte[] ReadEntry(ZipArchive zip, string name)
    {
        var entry = zip.GetEntry(name) ?? throw new InvalidOperationException($"{name} is not in the package.");
        using var stream = entry.Open();
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    /// <summary>
    /// The metadata every package of the repository has: version, MIT license, icon (the repository's), its own README
    /// naming <paramref name="assembly"/> without repository-relative links, project and repository URL with the commit, and
    /// a .snupkg with the portable PDBs of net8.0 and net10.0.
    /// </summary>
    public void AssertSharedMetadata(ZipArchive zip, string packagePath, string assembly)
    {
        var nuspec = Nuspec(zip);
        Assert.Equal(Version, nuspec.Descendants().Single(e => e.Name.LocalName == "version").Value);
        string Meta(string name) => nuspec.Descendants().SingleOrDefault(e => e.Name.LocalName == name)?.Value ?? "";
        Assert.Equal("MIT", Meta("license"));
        Assert.Equal("icon.png", Meta("icon"));
        Assert.Equal("README.md", Meta("readme"));
        Assert.Equal(RepositoryUrl, Meta("projectUrl"));
        var repository = nuspec.Descendants().Single(e => e.Name.LocalName == "repository");
        Assert.Equal(RepositoryUrl, (string?)repository.Attribute("url"));
        Assert.Equal("git", (string?)repository.Attribute("type"));
        Assert.Matches("^[0-9a-f]{40}$", (string?)repository.Attribute("commit") ?? "");

        // The package's own README: no link that only resolves inside the repository.
        var readme = System.Text.Encoding.UTF8.GetString(ReadEntry(zip, "README.md"));
        Assert.Contains(assembly, readme, StringComparison.Ordinal);
        Assert.DoesNotMatch(@"\]\((?!https?:|#)[^)]+\)", readme);
        Assert.Equal(File.ReadAllBytes(Path.Combine(RepositoryRoot, "src", "Package", "icon.png")), ReadEntry(zip, "icon.png"));

        // Symbols: a .snupkg with the portable PDBs beside the package.
        string symbolsPath = Path.ChangeExtension(packagePath, ".snupkg");
        Assert.True(File.Exists(symbolsPath), $"no symbols package {symbolsPath}");
        using var symbols = ZipFile.OpenRead(symbolsPath);
        Assert.Contains(symbols.Entries, e => e.FullName == $"lib/net10.0/{assembly}.pdb");
        Assert.Contains(symbols.Entries, e => e.FullName == $"lib/net8.0/{assembly}.pdb");
    }

    public void Dispose()
    {
        if (Directory.Exists(WorkDirectory))
        {
            Directory.Delete(WorkDirectory, recursive: true);
        }

        // A consumer's restore extracted this throw-away version into the global packages folder.
        foreach (var project in projects)
        {
            RemoveExtracted(project.ToLowerInvariant());
        }

        GC.SuppressFinalize(this);
    }

    private void RemoveExtracted(string id)
    {
        string packageFolder = Path.Combine(GlobalPackagesFolder, id);
        string versionFolder = Path.Combine(packageFolder, Version.ToLowerInvariant());
        if (Directory.Exists(versionFolder))
        {
            Directory.Delete(versionFolder, recursive: true);
        }

        if (Directory.Exists(packageFolder) && !Directory.EnumerateFileSystemEntries(packageFolder).Any())
        {
            Directory.Delete(packageFolder);
        }
    }
}
