namespace UniAD.Core.Tests.Build;

/// <summary>
/// Every <c>```csharp</c> block of README.md and docs/*.md is a complete program (or a complete file of types) and
/// compiles against the library as a consumer sees it. Fragments that are not meant to compile alone must say so
/// with the info string <c>```csharp fragment</c>; those are only parsed.
/// </summary>
public sealed class DocsCodeBlocksTests
{
    public static TheoryData<string, int> Blocks()
    {
        var data = new TheoryData<string, int>();
        foreach (var file in MarkdownFiles())
        {
            int count = DocBlocks.Extract(File.ReadAllText(file)).Count;
            for (int i = 0; i < count; i++)
            {
                data.Add(Path.GetRelativePath(DocBlocks.RepositoryRoot(), file), i);
            }
        }

        return data;
    }

    [Fact]
    public void The_docs_have_compiled_blocks()
    {
        var all = MarkdownFiles().SelectMany(f => DocBlocks.Extract(File.ReadAllText(f))).ToList();
        Assert.True(all.Count(b => !b.Fragment) >= 10, $"only {all.Count(b => !b.Fragment)} compiled blocks found");
        Assert.Contains(all, b => b.Code.Contains("AnomalyDetectorBuilder", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Blocks))]
    public void Block_compiles(string file, int index) =>
        DocBlocks.AssertCompiles(file, index, DocBlocks.Extract(File.ReadAllText(Path.Combine(DocBlocks.RepositoryRoot(), file)))[index]);

    private static IEnumerable<string> MarkdownFiles()
    {
        var root = DocBlocks.RepositoryRoot();
        // docs/hosting.md needs UniAD.Hosting and ASP.NET Core: tests/UniAD.Hosting.Tests (HostingDocsTests) compiles it.
        // docs/deployment.md needs UniAD.Onnx and ONNX Runtime: tests/UniAD.Onnx.Tests (DeploymentDocsTests) compiles it.
        var elsewhere = new[] { "hosting.md", "deployment.md" };
        return new[] { Path.Combine(root, "README.md") }.Concat(Directory.EnumerateFiles(Path.Combine(root, "docs"), "*.md")
            .Where(f => !elsewhere.Contains(Path.GetFileName(f)))
            .Order(StringComparer.Ordinal));
    }
}
