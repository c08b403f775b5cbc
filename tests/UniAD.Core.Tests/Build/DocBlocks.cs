using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace UniAD.Core.Tests.Build;

/// <summary>
/// The C# blocks of a Markdown page and their compilation against the assemblies beside the running tests, as a
/// consumer's console project sees them (its implicit usings). Shared by the test projects that compile docs
/// (DocsCodeBlocksTests here, DeploymentDocsTests in UniAD.Onnx.Tests, which links this file).
/// </summary>
public static partial class DocBlocks
{
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

    /// <summary>The <c>```csharp</c> blocks of <paramref name="markdown"/>: code, whether marked <c>fragment</c>, first line.</summary>
    public static List<(string Code, bool Fragment, int Line)> Extract(string markdown)
    {
        var blocks = new List<(string, bool, int)>();
        foreach (Match m in Fence().Matches(markdown))
        {
            int line = markdown.AsSpan(0, m.Index).Count('\n') + 1;
            blocks.Add((m.Groups["code"].Value, m.Groups["info"].Value.Contains("fragment", StringComparison.Ordinal), line));
        }

        return blocks;
    }

    /// <summary>
    /// Parses the block (a fragment is only parsed) and compiles it as a program or a library; fails the test with the
    /// errors and the code.
    /// </summary>
    public static void AssertCompiles(string file, int index, (string Code, bool Fragment, int Line) block)
    {
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

    /// <summary>The folder holding UniAD.Core.sln above the running tests.</summary>
    public static string RepositoryRoot()
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
