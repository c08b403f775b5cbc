using Xunit.Abstractions;

namespace UniAD.Core.Tests.Parity;

/// <summary>Says which fixture cases the parity suite runs, and keeps the embedded copies identical to the shared ones.</summary>
public sealed class FixtureInventoryTests(ITestOutputHelper output)
{
    public static TheoryData<string, string> EmbeddedCases()
    {
        var data = new TheoryData<string, string>();
        foreach (var category in Directory.GetDirectories(Fixtures.EmbeddedRoot))
        {
            foreach (var caseDir in Directory.GetDirectories(category))
            {
                data.Add(Path.GetFileName(category), Path.GetFileName(caseDir));
            }
        }

        return data;
    }

    [Fact]
    public void Reports_the_discovered_cases()
    {
        output.WriteLine($"shared fixture root: {Fixtures.SharedRoot ?? "(not found: embedded copies only)"}");
        int total = 0;
        foreach (var category in new[] { "reconstruction", "training", "preprocess", "metrics" })
        {
            var cases = Fixtures.Cases(category);
            Assert.NotEmpty(cases);
            foreach (var row in cases)
            {
                output.WriteLine($"{category}/{row[0]} from {row[1]}");
                total++;
            }
        }

        Assert.True(total >= 4, $"expected at least the 4 embedded cases, found {total}");
    }

    [Theory]
    [MemberData(nameof(EmbeddedCases))]
    public void Embedded_copy_is_complete_and_identical_to_the_shared_case(string category, string caseName)
    {
        var embedded = Path.Combine(Fixtures.EmbeddedRoot, category, caseName);
        var files = Directory.GetFiles(embedded).Select(Path.GetFileName).OrderBy(f => f, StringComparer.Ordinal).ToList();
        Assert.NotEmpty(files);
        if (Fixtures.SharedRoot is null)
        {
            return;
        }

        var shared = Path.Combine(Fixtures.SharedRoot, category, caseName);
        var sharedFiles = Directory.GetFiles(shared).Select(Path.GetFileName).OrderBy(f => f, StringComparer.Ordinal).ToList();
        Assert.Equal(sharedFiles, files);
        foreach (var file in files)
        {
            Assert.True(File.ReadAllBytes(Path.Combine(shared, file!)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(embedded, file!))), $"{category}/{caseName}/{file} differs from the shared fixture");
        }
    }
}
