using System.Reflection.PortableExecutable;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace UniAD.Hosting.Tests.Docs;

/// <summary>
/// Every C# block of docs/hosting.md is a complete program or file and compiles against UniAD.Hosting, UniAD.Core and
/// ASP.NET Core as an application sees them, with a console project's implicit usings (so each block names its own).
/// </summary>
public sealed partial class HostingDocsTests
{
    private const string Usings = "global using System; global using System.Collections.Generic; global using System.IO; global using System.Linq; global using System.Net.Http; global using System.Threading; global using System.Threading.Tasks;";

    private static readonly Lazy<MetadataReference[]> References = new(() =>
        ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Concat(Directory.EnumerateFiles(AppContext.BaseDirectory, "*.dll"))
            .GroupBy(Path.GetFileName, StringComparer.OrdinalIgnoreCase)
            .Select(g => g.First())
            .Where(IsManaged)
            .Select(p => (MetadataReference)MetadataReference.CreateFromFile(p))
            .ToArray());

    public static TheoryData<int> Blocks()
    {
        var data = new TheoryData<int>();
        for (int i = 0; i < CodeBlocks().Count; i++)
        {
            data.Add(i);
        }

        return data;
    }

    [Fact]
    public void The_page_shows_registration_hot_swap_and_metrics_in_code()
    {
        var code = string.Join('\n', CodeBlocks().Select(b => b.Code));
        Assert.True(CodeBlocks().Count >= 4);
        foreach (var api in new[] { "AddAnomalyDetector", "AddOnnxAnomalyScorer", "OnnxScorerServiceOptions", "AddAnomalyDetectorHealthCheck", "IAnomalyScorer", "provider.Swap", "ReloadAsync", "AnomalyScoringMetrics.MeterName" })
        {
            Assert.Contains(api, code);
        }
    }

    [Theory]
    [MemberData(nameof(Blocks))]
    public void Block_compiles(int index)
    {
        var (code, line) = CodeBlocks()[index];
        var tree = CSharpSyntaxTree.ParseText(code, new CSharpParseOptions(LanguageVersion.Latest), path: $"docs/hosting.md:{line}");
        bool program = tree.GetCompilationUnitRoot().Members.OfType<Microsoft.CodeAnalysis.CSharp.Syntax.GlobalStatementSyntax>().Any();
        var compilation = CSharpCompilation.Create(
            $"HostingDoc{index}",
            new[] { tree, CSharpSyntaxTree.ParseText(Usings) },
            References.Value,
            new CSharpCompilationOptions(program ? OutputKind.ConsoleApplication : OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        var errors = compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).Take(10).ToList();
        Assert.True(errors.Count == 0, $"docs/hosting.md block {index} (line {line}) does not compile:\n{string.Join('\n', errors)}\n{code}");
    }

    private static List<(string Code, int Line)> CodeBlocks()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "UniAD.Core.sln")))
        {
            dir = dir.Parent;
        }

        var markdown = File.ReadAllText(Path.Combine(dir?.FullName ?? throw new DirectoryNotFoundException("No UniAD.Core.sln above the tests."), "docs", "hosting.md"));
        return Fence().Matches(markdown).Select(m => (m.Groups["code"].Value, markdown.AsSpan(0, m.Index).Count('\n') + 1)).ToList();
    }

    private static bool IsManaged(string path)
    {
        try
        {
            using var pe = new PEReader(File.OpenRead(path));
            return pe.HasMetadata;
        }
        catch (BadImageFormatException)
        {
            return false;
        }
    }

    [GeneratedRegex(@"^```(?:csharp|cs|c#)[^\n]*\n(?<code>.*?)^```", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex Fence();
}
