using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace UniAD.Core.Tests.Build;

/// <summary>
/// Every <c>```csharp</c> block of README.md and docs/*.md is a complete program (or a complete file of types) and
/// compiles against the library as a consumer sees it. Fragments that are not meant to compile alone must say so
/// with the info string <c>```csharp fragment</c>; those are only parsed.
/// </summary>
public sealed partial class DocsCodeBlocksTests
{
    public static TheoryData<string, int> Blocks()
    {
        var data = new TheoryData<string, int>();
        foreach (var file in MarkdownFiles())
        {
            int count = Extract(File.ReadAllText(file)).Count;
            for (int i = 0; i < count; i++)
            {
                data.Add(Path.GetRelativePath(RepositoryRoot(), file), i);
            }
        }

        return data;
    }

    [Fact]
    public void The_docs_have_compiled_blocks()
    {
        var all = MarkdownFiles().SelectMany(f => Extract(File.ReadAllText(f))).ToList();
        Assert.True(all.Count(b => !b.Fragment) >= 10, $"only {all.Count(b => !b.Fragment)} compiled blocks found");
        Assert.Contains(all, b => b.Code.Contains("AnomalyDetectorBuilder", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Blocks))]
    public void Block_compiles(string file, int index)
    {
        var block = Extract(File.ReadAllText(Path.Combine(RepositoryRoot(), file)))[index];
        var tree = CSharpSyntaxTree.ParseText(block.Code, new CSharpParseOptions(LanguageVersion.Latest), path: $"{file}#{index}");
        var syntax = tree.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
        Assert.True(syntax.Count == 0, $"{file} block {index} (line {block.Line}) does not parse:{Environment.NewLine}{string.Join(Environment.NewLine, syntax)}");
        if (block.Fragment)
        {
            return;
        }

        bool program = tree.GetCompilationUnitRoot().Members.OfType<Microsoft.CodeAnalysis.CSharp.Syntax.GlobalStatementSyntax>().Any();
        var compilation = CSharpCompilation.Create(
            $"DocBlock{index}",
            new[] { tree, CSharpSyntaxTree.ParseText(ImplicitUsings, new CSharpParseOptions(LanguageVersion.Latest)) },
            References.Value,
            new CSharpCompilationOptions(program ? OutputKind.ConsoleApplication : OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        var errors = compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
        Assert.True(errors.Count == 0, $"{file} block {index} (line {block.Line}) does not compile:{Environment.NewLine}{string.Join(Environment.NewLine, errors.Take(10))}{Environment.NewLine}{block.Code}");
    }

    /// <summary>The implicit usings of an SDK console project (what a reader's new project has).</summary>
    private const string ImplicitUsings = """
        global using System;
        global using System.Collections.Generic;
        global using System.IO;
        global using System.Linq;
        global using System.Net.Http;
        global using System.Threading;
        global using System.Threading.Tasks;
        """;

    private static readonly Lazy<IReadOnlyList<MetadataReference>> References = new(() =>
    {
        // The runtime's assemblies and everything beside the tests (UniAD.Core, TorchSharp, SkiaSharp, logging, ...).
        var paths = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Concat(Directory.EnumerateFiles(AppContext.BaseDirectory, "*.dll"))
            .GroupBy(Path.GetFileName, StringComparer.OrdinalIgnoreCase)
            .Select(g => g.First());
        var references = new List<MetadataReference>();
        foreach (var path in paths)
        {
            try
            {
                using var stream = File.OpenRead(path);
                using var pe = new System.Reflection.PortableExecutable.PEReader(stream);
                if (pe.HasMetadata)
                {
                    references.Add(MetadataReference.CreateFromFile(path));
                }
            }
            catch (BadImageFormatException)
            {
                // a native library
            }
        }

        return references;
    });

    private static List<(string Code, bool Fragment, int Line)> Extract(string markdown)
    {
        var blocks = new List<(string, bool, int)>();
        foreach (Match m in Fence().Matches(markdown))
        {
            int line = markdown.AsSpan(0, m.Index).Count('\n') + 1;
            blocks.Add((m.Groups["code"].Value, m.Groups["info"].Value.Contains("fragment", StringComparison.Ordinal), line));
        }

        return blocks;
    }

    private static IEnumerable<string> MarkdownFiles()
    {
        var root = RepositoryRoot();
        // docs/hosting.md needs UniAD.Hosting and ASP.NET Core: tests/UniAD.Hosting.Tests (HostingDocsTests) compiles it.
        return new[] { Path.Combine(root, "README.md") }.Concat(Directory.EnumerateFiles(Path.Combine(root, "docs"), "*.md")
            .Where(f => Path.GetFileName(f) != "hosting.md")
            .Order(StringComparer.Ordinal));
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "UniAD.Core.sln")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException($"No UniAD.Core.sln above {AppContext.BaseDirectory}.");
    }

    [GeneratedRegex(@"^```(?:csharp|cs|c#)(?<info>[^\n]*)\n(?<code>.*?)^```", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex Fence();
}
