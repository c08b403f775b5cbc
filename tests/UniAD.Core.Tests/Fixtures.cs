using System.Text.Json;
using UniAD.Core.Reconstruction;
using UniAD.Core.Weights;

namespace UniAD.Core.Tests;

/// <summary>
/// Locates the reference fixtures: the shared root (env UNIAD_FIXTURES_DIR, else ../shared/fixtures beside
/// the repository) and the small copies embedded in this test project (Fixtures/ in the output folder).
/// Cases are discovered, never named: every folder under a category becomes a test case.
/// </summary>
public static class Fixtures
{
    public const string Shared = "shared";
    public const string Embedded = "embedded";
    public const string Missing = "missing";

    public static string EmbeddedRoot => Path.Combine(AppContext.BaseDirectory, "Fixtures");

    public static string? SharedRoot { get; } = FindSharedRoot();

    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    /// <summary>Theory data (case name, source) for every case of a category; shared cases win over embedded copies.</summary>
    public static TheoryData<string, string> Cases(string category)
    {
        var data = new TheoryData<string, string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (root, source) in Roots())
        {
            var dir = Path.Combine(root, category);
            if (!Directory.Exists(dir))
            {
                continue;
            }

            foreach (var caseDir in Directory.GetDirectories(dir).OrderBy(d => d, StringComparer.Ordinal))
            {
                var name = Path.GetFileName(caseDir);
                if (seen.Add(name))
                {
                    data.Add(name, source);
                }
            }
        }

        if (data.Count == 0)
        {
            // No case anywhere (the large categories live only in the shared fixtures): one row that fails
            // with a clear message instead of xunit's bare "no data found".
            data.Add($"(no {category} case: shared fixtures not found; set UNIAD_FIXTURES_DIR)", Missing);
        }

        return data;
    }

    public static string CaseDirectory(string category, string caseName, string source)
    {
        if (source == Missing)
        {
            throw new DirectoryNotFoundException($"No '{category}' fixture case: the shared fixtures were not found next to the repository ({Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared", "fixtures"))}) and UNIAD_FIXTURES_DIR is not set.");
        }

        var root = source == Shared ? SharedRoot ?? throw new InvalidOperationException("No shared fixture root.") : EmbeddedRoot;
        return Path.Combine(root, category, caseName);
    }

    /// <summary>A reconstruction network built from a reference config and loaded (strictly) from a .pth state dict.</summary>
    public static UniADReconstruction LoadReconstruction(JsonElement referenceConfig, string stateDictPath)
    {
        var model = new UniADReconstruction(ReconstructionOptions.FromReferenceConfig(referenceConfig));
        using var weights = StateDict.ReadPyTorch(stateDictPath);
        StateDict.Load(model, weights);
        return model;
    }

    private static IEnumerable<(string Root, string Source)> Roots()
    {
        if (SharedRoot is not null)
        {
            yield return (SharedRoot, Shared);
        }

        yield return (EmbeddedRoot, Embedded);
    }

    private static string? FindSharedRoot()
    {
        var env = Environment.GetEnvironmentVariable("UNIAD_FIXTURES_DIR");
        if (!string.IsNullOrEmpty(env))
        {
            return Directory.Exists(env)
                ? Path.GetFullPath(env)
                : throw new DirectoryNotFoundException($"UNIAD_FIXTURES_DIR points to '{env}', which does not exist.");
        }

        var candidate = Path.GetFullPath(Path.Combine(FindRepositoryRoot(), "..", "shared", "fixtures"));
        if (Directory.Exists(candidate))
        {
            return candidate;
        }

        return Environment.GetEnvironmentVariable("UNIAD_REQUIRE_SHARED_FIXTURES") == "1"
            ? throw new DirectoryNotFoundException($"UNIAD_REQUIRE_SHARED_FIXTURES=1 but '{candidate}' does not exist.")
            : null;
    }

    private static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "UniAD.Core.sln")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException($"No UniAD.Core.sln above '{AppContext.BaseDirectory}'.");
    }
}
