using UniAD.Core.Tests.Build;

namespace UniAD.Onnx.Tests;

/// <summary>
/// Every C# block of docs/deployment.md compiles against UniAD.Onnx, UniAD.Core and ONNX Runtime as an application sees
/// them (UniAD.Core.Tests' DocsCodeBlocksTests leaves this page out: its output has no UniAD.Onnx).
/// </summary>
public sealed class DeploymentDocsTests
{
    private static readonly string Page = Path.Combine(DocBlocks.RepositoryRoot(), "docs", "deployment.md");

    public static TheoryData<int> Blocks()
    {
        var data = new TheoryData<int>();
        for (int i = 0; i < DocBlocks.Extract(File.ReadAllText(Page)).Count; i++)
        {
            data.Add(i);
        }

        return data;
    }

    [Fact]
    public void The_page_shows_export_loading_and_providers_in_code()
    {
        var blocks = DocBlocks.Extract(File.ReadAllText(Page));
        Assert.True(blocks.Count(b => !b.Fragment) >= 2);
        var code = string.Join('\n', blocks.Select(b => b.Code));
        foreach (var api in new[] { "ExportOnnx", "OnnxAnomalyScorer.Load", "OnnxExecutionProvider.Cuda", "ScoreManyAsync" })
        {
            Assert.Contains(api, code, StringComparison.Ordinal);
        }
    }

    [Theory]
    [MemberData(nameof(Blocks))]
    public void Block_compiles(int index) =>
        DocBlocks.AssertCompiles("docs/deployment.md", index, DocBlocks.Extract(File.ReadAllText(Page))[index]);
}
