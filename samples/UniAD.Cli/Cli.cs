using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.Reflection;
using Spectre.Console;
using UniAD.Core.Detection;

namespace UniAD.Cli;

/// <summary>
/// The <c>uniad</c> command line: <c>train</c>, <c>evaluate</c>, <c>score</c>, <c>calibrate</c> and <c>import</c> on
/// System.CommandLine. <see cref="Run"/> is the whole program, callable in-process (the tests do).
/// </summary>
public static class Cli
{
    private const string RootEpilog = """
        SOURCE: mvtec:ROOT[:bottle,cable,...]   meta:FILE@IMAGE_ROOT   cifar10:ROOT[:0,1,2,3,4]   folder:ROOT
        'uniad COMMAND --help' lists a command's options; docs/cli.md has the details.
        """;

    /// <summary>The UniAD.Core version (<c>--version</c> prints it).</summary>
    public static string LibraryVersion { get; } =
        typeof(AnomalyDetector).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(AnomalyDetector).Assembly.GetName().Version?.ToString()
        ?? "unknown";

    /// <summary>Runs a command line and returns its exit code (see <see cref="ExitCodes"/>).</summary>
    /// <param name="args">The arguments, without the program name.</param>
    /// <param name="output">Standard output: results (reports, scores, JSON Lines).</param>
    /// <param name="error">Standard error: progress, notes, warnings and errors.</param>
    /// <param name="cancellationToken">Cancels the work (Ctrl+C); the exit code is then <see cref="ExitCodes.Cancelled"/>.</param>
    public static int Run(IReadOnlyList<string> args, TextWriter output, TextWriter error, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);

        // 'uniad help [COMMAND]' is 'uniad [COMMAND] --help'.
        if (args.Count > 0 && args[0] == "help")
        {
            args = args.Skip(1).Append("--help").ToList();
        }

        var ctx = new CliContext(output, error, cancellationToken);
        var root = CreateRoot(ctx);
        var parse = root.Parse(args);
        var configuration = new InvocationConfiguration
        {
            Output = output,
            Error = error,
            EnableDefaultExceptionHandler = false,
            ProcessTerminationTimeout = null, // Program handles Ctrl+C (cancellationToken).
        };
        if (parse.Action is ParseErrorAction)
        {
            ReportParseErrors(ctx, parse, args.Count == 0 ? () => root.Parse("--help").Invoke(configuration) : null);
            return ExitCodes.Usage;
        }

        return parse.Invoke(configuration);
    }

    /// <summary>The root command with its subcommands, writing through <paramref name="ctx"/>.</summary>
    internal static RootCommand CreateRoot(CliContext ctx)
    {
        var root = new RootCommand("uniad: unified multi-class anomaly detection (UniAD) from the command line.")
        {
            TrainCommand.Create(ctx),
            EvaluateCommand.Create(ctx),
            ScoreCommand.Create(ctx),
            CalibrateCommand.Create(ctx),
            ImportCommand.Create(ctx),
            ExportCommand.Create(ctx),
        };
        root.HelpName = "uniad"; // also when run in-process or through 'dotnet uniad.dll'
        var epilogs = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["uniad"] = RootEpilog,
            ["train"] = TrainCommand.Epilog,
            ["evaluate"] = EvaluateCommand.Epilog,
            ["score"] = ScoreCommand.Epilog,
            ["calibrate"] = CalibrateCommand.Epilog,
        };
        foreach (var option in root.Options)
        {
            if (option is HelpOption help && help.Action is HelpAction defaultHelp)
            {
                help.Action = new HelpWithEpilog(defaultHelp, epilogs);
            }
            else if (option is VersionOption version)
            {
                version.Action = new PrintVersion();
            }
        }

        return root;
    }

    /// <summary>
    /// The parse errors on standard error, each naming the option or word, with a suggestion for a mistyped option or
    /// command; with no arguments at all, the help first.
    /// </summary>
    private static void ReportParseErrors(CliContext ctx, ParseResult parse, Action? showHelp)
    {
        if (showHelp is not null)
        {
            showHelp();
        }

        var command = parse.CommandResult.Command;
        var unmatched = parse.UnmatchedTokens;
        foreach (var error in parse.Errors)
        {
            // "Required command was not provided" says nothing new beside an unknown command.
            var message = error.Message.TrimEnd('.');
            var token = unmatched.FirstOrDefault(t => message.Contains($"'{t}'", StringComparison.Ordinal));
            if (token is null && command is RootCommand && unmatched.Count > 0)
            {
                continue;
            }

            if (token is not null && token.StartsWith('-'))
            {
                message += Suggest(token, command);
            }
            else if (token is not null && command is RootCommand)
            {
                var close = command.Subcommands.Where(c => !c.Hidden && Distance(token, c.Name) <= 2).Select(c => c.Name).ToList();
                message += close.Count == 0 ? $" (the commands: {string.Join(", ", command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name))})" : $" (did you mean {string.Join(" or ", close)}?)";
            }

            ctx.Err.MarkupLineInterpolated($"[red]usage error:[/] {message}.");
        }

        ctx.Error.WriteLine($"Run '{CommandPath(command)} --help' for the options.");
    }

    /// <summary>Runs a command's body and maps what it throws to an exit code and a message without a stack trace.</summary>
    internal static int Guard(CliContext ctx, ParseResult parse, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (UsageException ex)
        {
            ctx.Err.MarkupLineInterpolated($"[red]usage error:[/] {ex.Message}");
            ctx.Error.WriteLine($"Run '{CommandPath(parse.CommandResult.Command)} --help' for the options.");
            return ExitCodes.Usage;
        }
        catch (OperationCanceledException)
        {
            ctx.Err.MarkupLine("[yellow]cancelled[/] (the last checkpoint, if any, is intact)");
            return ExitCodes.Cancelled;
        }
        catch (Exception ex) when (Documented(ex) is { } failure)
        {
            ctx.Fail(failure.Message);
            return ExitCodes.Failure;
        }
        catch (Exception ex)
        {
            // Not a documented failure: a bug. Say so, with everything needed to report it.
            ctx.Err.MarkupLine("[red]internal error[/] (a bug in uniad or UniAD.Core; please report it with the text below):");
            ctx.Error.WriteLine(ex.ToString());
            return ExitCodes.Failure;
        }
    }

    /// <summary>Notes the model's tiling, if any (standard error).</summary>
    internal static void DescribeTiling(CliContext ctx, AnomalyDetector detector)
    {
        if (detector.Options.Tiling is { } t)
        {
            ctx.Note($"Tiling: {t.Describe(detector.Options.InputSize)}.");
        }
    }

    /// <summary>" (did you mean --x?)" for a mistyped option of <paramref name="command"/>, or nothing.</summary>
    internal static string Suggest(string token, Command? command)
    {
        if (command is null)
        {
            return string.Empty;
        }

        var name = token.Split('=', 2)[0];
        var close = command.Options.Where(o => !o.Hidden)
            .SelectMany(o => o.Aliases.Prepend(o.Name))
            .Where(candidate => candidate.StartsWith("--", StringComparison.Ordinal))
            .Select(candidate => (candidate, distance: Distance(name, candidate)))
            .Where(c => c.distance <= Math.Max(2, name.Length / 4) || c.candidate.StartsWith(name, StringComparison.Ordinal) || name.StartsWith(c.candidate, StringComparison.Ordinal))
            .OrderBy(c => c.distance)
            .Select(c => c.candidate)
            .Distinct()
            .Take(3)
            .ToList();
        return close.Count == 0 ? string.Empty : $" (did you mean {string.Join(" or ", close)}?)";
    }

    private static Exception? Documented(Exception ex) => ex switch
    {
        AggregateException aggregate when aggregate.Flatten().InnerExceptions is { Count: > 0 } inner && inner.All(ExitCodes.IsDocumentedFailure) => inner[0],
        _ when ExitCodes.IsDocumentedFailure(ex) => ex,
        _ => null,
    };

    private static string CommandPath(Command command) =>
        command is RootCommand || command.Parents.FirstOrDefault() is null ? "uniad" : $"uniad {command.Name}";

    private static int Distance(string a, string b)
    {
        var previous = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            var current = new int[b.Length + 1];
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }

            previous = current;
        }

        return previous[b.Length];
    }

    /// <summary>System.CommandLine's help, then the command's notes and the exit codes.</summary>
    private sealed class HelpWithEpilog(HelpAction help, IReadOnlyDictionary<string, string> epilogs) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            help.Invoke(parseResult);
            var output = parseResult.InvocationConfiguration.Output;
            var command = parseResult.CommandResult.Command;
            if (epilogs.TryGetValue(command is RootCommand ? "uniad" : command.Name, out var epilog))
            {
                output.WriteLine(epilog.TrimEnd());
                output.WriteLine();
            }

            output.WriteLine(ExitCodes.HelpText.TrimEnd());
            return ExitCodes.Success;
        }
    }

    /// <summary><c>--version</c>: the UniAD.Core version.</summary>
    private sealed class PrintVersion : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            parseResult.InvocationConfiguration.Output.WriteLine(LibraryVersion);
            return ExitCodes.Success;
        }
    }
}

/// <summary>Reports progress on the calling thread.</summary>
internal sealed class SynchronousProgress<T>(Action<T> handler) : IProgress<T>
{
    public void Report(T value) => handler(value);
}
