using UniAD.Core.Data;

namespace UniAD.Cli;

/// <summary>The exit codes of <c>uniad</c> (documented in docs/cli.md and in <c>uniad --help</c>).</summary>
public static class ExitCodes
{
    /// <summary>The command did what it was asked.</summary>
    public const int Success = 0;

    /// <summary>A failure: bad data, files or model (missing, unreadable, corrupt or inconsistent), or an impossible request.</summary>
    public const int Failure = 1;

    /// <summary>The command line cannot be understood: unknown command or option, missing or bad value.</summary>
    public const int Usage = 2;

    /// <summary><c>score</c> or <c>evaluate</c> with <c>--keep-going</c>: some files failed, the others were processed.</summary>
    public const int SomeFilesFailed = 3;

    /// <summary>Cancelled (Ctrl+C); the last checkpoint, if any, is intact.</summary>
    public const int Cancelled = 130;

    /// <summary>The exit-code table as printed at the end of <c>--help</c>.</summary>
    public const string HelpText = """
        Exit codes:
          0    success
          1    failure: bad data, files or model (missing, unreadable, corrupt, inconsistent)
          2    usage error: unknown command or option, missing or bad value
          3    score/evaluate --keep-going: some files failed (each is reported), the rest were processed
          130  cancelled (Ctrl+C); the last checkpoint, if any, is intact
        """;

    /// <summary>
    /// Whether <paramref name="exception"/> is a documented failure of the library or of the file system (exit code 1),
    /// as opposed to a bug. <c>StateDictMismatchException</c> is matched by name: it derives from <see cref="Exception"/>
    /// in UniAD.Core 0.1 and is to become an <see cref="InvalidDataException"/>.
    /// </summary>
    public static bool IsDocumentedFailure(Exception exception) =>
        exception is IOException or InvalidDataException or ArgumentException or InvalidOperationException
            or UnauthorizedAccessException or FormatException or NotSupportedException or ImageFileException
        || exception.GetType().Name == "StateDictMismatchException";
}

/// <summary>A command line that parses but cannot be carried out as given (exit code 2): conflicting options and the like.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>A refusal before any work (exit code 1): the request would lose data or do nothing.</summary>
internal sealed class RefusedException(string message) : InvalidOperationException(message);
