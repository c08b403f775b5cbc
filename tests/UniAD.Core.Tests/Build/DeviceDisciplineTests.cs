using System.Text.RegularExpressions;

namespace UniAD.Core.Tests.Build;

/// <summary>
/// A static check over the library's sources for the two device mistakes that only show on a GPU: a tensor factory
/// without an explicit device takes the process's default device (an application that sets CUDA as the default then
/// gets CUDA tensors where the code reads <c>.bytes</c>, or mixes devices), and a <c>Generator</c> constructed with a
/// device is a CPU generator anyway in TorchSharp 0.107 (issue 1194), which a CUDA draw rejects.
/// </summary>
public sealed partial class DeviceDisciplineTests
{
    /// <summary>Factories that allocate on a device they are told (the <c>*_like</c> forms take their source's device and are allowed).</summary>
    private static readonly string[] Factories = { "zeros", "ones", "empty", "full", "randn", "rand", "randint", "randperm", "arange", "linspace", "eye", "tensor", "normal", "from_array", "as_tensor" };

    [GeneratedRegex(@"(?<![\w.])(?:torch\.)?(?<name>zeros|ones|empty|full|randn|rand|randint|randperm|arange|linspace|eye|tensor|normal|from_array|as_tensor)\(", RegexOptions.CultureInvariant)]
    private static partial Regex FactoryCall();

    [GeneratedRegex(@"new\s+(?:TorchSharp\.)?(?:torch\.)?Generator\(", RegexOptions.CultureInvariant)]
    private static partial Regex GeneratorConstruction();

    public static TheoryData<string> SourceFiles()
    {
        var data = new TheoryData<string>();
        foreach (var project in new[] { "src/UniAD.Core", "src/UniAD.Hosting" })
        {
            var dir = Path.Combine(Fixtures.RepositoryRoot, project);
            foreach (var file in Directory.EnumerateFiles(dir, "*.cs", SearchOption.AllDirectories).Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
            {
                data.Add(Path.GetRelativePath(Fixtures.RepositoryRoot, file).Replace('\\', '/'));
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(SourceFiles))]
    public void Tensor_factories_name_their_device_and_generators_take_none(string file)
    {
        var code = StripCommentsAndStrings(File.ReadAllText(Path.Combine(Fixtures.RepositoryRoot, file)));
        var problems = new List<string>();
        foreach (Match m in FactoryCall().Matches(code))
        {
            // A method declaration or a call on an object (x.zeros(...)) is not a factory: the look-behind already
            // excludes member access; a declaration has a type before the name.
            if (IsDeclaration(code, m.Index))
            {
                continue;
            }

            var args = Arguments(code, m.Index + m.Length - 1);
            if (!args.Contains("device:", StringComparison.Ordinal))
            {
                problems.Add($"line {Line(code, m.Index)}: {m.Groups["name"].Value}({Shorten(args)}) has no explicit device:");
            }
        }

        foreach (Match m in GeneratorConstruction().Matches(code))
        {
            var args = Arguments(code, m.Index + m.Length - 1);
            if (TopLevelCommas(args) > 0)
            {
                problems.Add($"line {Line(code, m.Index)}: new Generator({Shorten(args)}) passes a device (TorchSharp 0.107 makes a CPU generator whatever it is told: draw on the CPU and move)");
            }
        }

        Assert.True(problems.Count == 0, $"{file}:{Environment.NewLine}{string.Join(Environment.NewLine, problems)}");
    }

    /// <summary>The check itself finds what it must: a factory without a device, across lines, and a generator with one.</summary>
    [Fact]
    public void The_check_finds_a_missing_device_and_a_device_generator()
    {
        const string Bad = "var a = zeros(3,\n 4);\nvar g = new Generator(1, tokens.device);\nvar ok = torch.ones(2, device: CPU); var like = zeros_like(a); x.zeros(2); // tensor(1)\nvar s = \"empty(2)\";";
        var code = StripCommentsAndStrings(Bad);
        var calls = FactoryCall().Matches(code).Where(m => !IsDeclaration(code, m.Index)).Select(m => (m.Groups["name"].Value, Arguments(code, m.Index + m.Length - 1))).ToList();
        Assert.Equal(new[] { "zeros", "ones" }, calls.Select(c => c.Item1));
        Assert.DoesNotContain("device:", calls[0].Item2, StringComparison.Ordinal);
        Assert.Contains("device:", calls[1].Item2, StringComparison.Ordinal);
        var generator = GeneratorConstruction().Match(code);
        Assert.Equal(1, TopLevelCommas(Arguments(code, generator.Index + generator.Length - 1)));
        Assert.Equal(15, Factories.Length);
    }

    private static bool IsDeclaration(string code, int index)
    {
        // "Tensor zeros(" or "static Tensor tensor(": an identifier directly before the name.
        int i = index - 1;
        while (i >= 0 && code[i] == ' ')
        {
            i--;
        }

        return i >= 0 && (char.IsLetterOrDigit(code[i]) || code[i] == '>' || code[i] == ']' || code[i] == '?') && !EndsWithKeyword(code, i);
    }

    private static bool EndsWithKeyword(string code, int end)
    {
        foreach (var keyword in new[] { "return", "new", "await", "yield", "in", "is", "throw", "case", "else" })
        {
            int start = end - keyword.Length + 1;
            if (start >= 0 && string.CompareOrdinal(code, start, keyword, 0, keyword.Length) == 0 && (start == 0 || !char.IsLetterOrDigit(code[start - 1])))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The text between the parenthesis at <paramref name="open"/> and its match.</summary>
    private static string Arguments(string code, int open)
    {
        int depth = 0;
        for (int i = open; i < code.Length; i++)
        {
            depth += code[i] switch { '(' => 1, ')' => -1, _ => 0 };
            if (depth == 0)
            {
                return code.Substring(open + 1, i - open - 1);
            }
        }

        return code[(open + 1)..];
    }

    private static int TopLevelCommas(string args)
    {
        int depth = 0, commas = 0;
        foreach (var c in args)
        {
            depth += c is '(' or '[' or '{' or '<' ? 1 : c is ')' or ']' or '}' or '>' ? -1 : 0;
            commas += c == ',' && depth == 0 ? 1 : 0;
        }

        return commas;
    }

    private static int Line(string code, int index) => code.AsSpan(0, index).Count('\n') + 1;

    private static string Shorten(string args)
    {
        var flat = Regex.Replace(args, @"\s+", " ");
        return flat.Length > 80 ? flat[..80] + "..." : flat;
    }

    /// <summary>The code with comments and string contents blanked (line breaks kept, so line numbers stay right).</summary>
    private static string StripCommentsAndStrings(string code)
    {
        var result = new System.Text.StringBuilder(code.Length);
        for (int i = 0; i < code.Length; i++)
        {
            if (code[i] == '/' && i + 1 < code.Length && code[i + 1] == '/')
            {
                while (i < code.Length && code[i] != '\n')
                {
                    i++;
                }

                if (i < code.Length)
                {
                    result.Append('\n');
                }

                continue;
            }

            if (code[i] == '/' && i + 1 < code.Length && code[i + 1] == '*')
            {
                i += 2;
                while (i + 1 < code.Length && !(code[i] == '*' && code[i + 1] == '/'))
                {
                    result.Append(code[i] == '\n' ? '\n' : ' ');
                    i++;
                }

                i++;
                continue;
            }

            if (code[i] == '"')
            {
                bool verbatim = i > 0 && code[i - 1] == '@';
                result.Append('"');
                i++;
                while (i < code.Length && code[i] != '"')
                {
                    if (!verbatim && code[i] == '\\')
                    {
                        i++;
                    }

                    result.Append(i < code.Length && code[i] == '\n' ? '\n' : ' ');
                    i++;
                }

                result.Append('"');
                continue;
            }

            if (code[i] == '\'' && i + 2 < code.Length)
            {
                int close = code.IndexOf('\'', i + (code[i + 1] == '\\' ? 3 : 2));
                if (close > i && close - i <= 8)
                {
                    result.Append("' '");
                    i = close;
                    continue;
                }
            }

            result.Append(code[i]);
        }

        return result.ToString();
    }
}
