using Spectre.Console;

namespace UniAD.Cli;

/// <summary>
/// Where a command writes: results on <see cref="Output"/> (standard output: reports, scores, JSON), progress,
/// notes and errors on <see cref="Error"/> (standard error), and the cancellation of Ctrl+C.
/// </summary>
internal sealed class CliContext
{
    public CliContext(TextWriter output, TextWriter error, CancellationToken cancel)
    {
        Output = output;
        Error = error;
        Cancel = cancel;
        Out = CreateConsole(output);
        Err = CreateConsole(error);
    }

    /// <summary>Standard output, raw: reports and JSON go here unchanged (no wrapping, no markup).</summary>
    public TextWriter Output { get; }

    /// <summary>Standard error, raw.</summary>
    public TextWriter Error { get; }

    /// <summary>Standard output with markup (colours on a terminal).</summary>
    public IAnsiConsole Out { get; }

    /// <summary>Standard error with markup and progress bars.</summary>
    public IAnsiConsole Err { get; }

    /// <summary>Cancelled by Ctrl+C.</summary>
    public CancellationToken Cancel { get; }

    /// <summary>A note for the user (standard error).</summary>
    public void Note(FormattableString markup) => Err.MarkupLineInterpolated(markup);

    /// <summary>A failure message (standard error): <c>error: ...</c>.</summary>
    public void Fail(string message) => Err.MarkupLineInterpolated($"[red]error:[/] {message}");

    private static IAnsiConsole CreateConsole(TextWriter writer)
    {
        // Colours and cursor movement only on a terminal: never in a file, a pipe or a test's writer.
        bool terminal = (writer == Console.Out && !Console.IsOutputRedirected) || (writer == Console.Error && !Console.IsErrorRedirected);
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = terminal ? InteractionSupport.Detect : InteractionSupport.No,
        });
        if (!terminal)
        {
            // Redirected: never wrap lines at an assumed 80 columns (logs and scripts read whole lines).
            console.Profile.Width = 4096;
        }

        return console;
    }
}
