using System.Diagnostics;
using System.Text;

namespace UniAD.Cli.Tests;

/// <summary>What one run of the command line did.</summary>
public sealed record CliResult(int ExitCode, string Output, string Error)
{
    /// <summary>Both streams, for messages that may go to either.</summary>
    public string All => Output + Error;

    /// <summary>The standard output's non-empty lines.</summary>
    public IReadOnlyList<string> OutputLines => Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <inheritdoc />
    public override string ToString() => $"exit code {ExitCode}\n--- stdout\n{Output}\n--- stderr\n{Error}";
}

/// <summary>
/// Runs <c>uniad</c>: in-process through <see cref="Cli.Run"/>, or, when the environment variable
/// <c>UNIAD_CLI_UNDER_TEST</c> names a built <c>uniad.dll</c>, as a process of that assembly (a time limit applies),
/// so that the same tests can be run against another build, e.g. the hand-parsed CLI before System.CommandLine.
/// </summary>
public static class CliRunner
{
    /// <summary>The assembly to run as a process instead of in-process, or null.</summary>
    public static string? External { get; } = Environment.GetEnvironmentVariable("UNIAD_CLI_UNDER_TEST") is { Length: > 0 } path ? path : null;

    /// <summary>The time one external run may take.</summary>
    public static TimeSpan ExternalTimeout { get; } = TimeSpan.FromSeconds(90);

    /// <summary>Runs a command line.</summary>
    public static CliResult Run(params string[] args) => Run(args, CancellationToken.None);

    /// <summary>Runs a command line in-process with a cancellation token (or as a process: the token is not passed).</summary>
    public static CliResult Run(string[] args, CancellationToken cancellationToken, TextWriter? output = null)
    {
        if (External is { } dll)
        {
            return RunProcess(dll, args);
        }

        var stdout = output ?? new StringWriter();
        var stderr = new StringWriter();
        int code = Cli.Run(args, stdout, stderr, cancellationToken);
        return new CliResult(code, stdout.ToString()!, stderr.ToString());
    }

    private static CliResult RunProcess(string dll, string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.Environment["OMP_NUM_THREADS"] = "1";
        start.ArgumentList.Add(dll);
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start)!;
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (stdout) { stdout.AppendLine(e.Data); } } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (stderr) { stderr.AppendLine(e.Data); } } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(ExternalTimeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            return new CliResult(-1, stdout.ToString(), stderr + $"\n(killed after {ExternalTimeout.TotalSeconds} s)");
        }

        process.WaitForExit();
        return new CliResult(process.ExitCode, stdout.ToString(), stderr.ToString());
    }
}
