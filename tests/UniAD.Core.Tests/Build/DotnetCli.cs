using System.Diagnostics;
using System.Text;

namespace UniAD.Core.Tests.Build;

/// <summary>The outcome of one child process.</summary>
internal sealed record ProcessResult(string CommandLine, string WorkingDirectory, int ExitCode, string StandardOutput, string StandardError, TimeSpan Elapsed)
{
    public string Describe() =>
        $"$ {CommandLine}{Environment.NewLine}  (in {WorkingDirectory}; exit code {ExitCode}; {Elapsed.TotalSeconds:F1} s){Environment.NewLine}" +
        $"--- stdout ---{Environment.NewLine}{StandardOutput}{Environment.NewLine}--- stderr ---{Environment.NewLine}{StandardError}";
}

/// <summary>Runs the same .NET SDK that runs the tests.</summary>
internal static class DotnetCli
{
    /// <summary>Variables the outer 'dotnet test' leaves in the environment that would steer a nested MSBuild.</summary>
    private static readonly string[] InheritedMsBuildVariables =
    {
        "MSBuildExtensionsPath", "MSBuildSDKsPath", "MSBUILD_EXE_PATH", "MSBuildLoadMicrosoftTargetsReadOnly",
    };

    /// <summary>DOTNET_HOST_PATH (set by the SDK for the processes it starts) when it exists, else 'dotnet' on PATH.</summary>
    public static string Executable =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";

    /// <summary>Runs dotnet with <paramref name="arguments"/>; kills the process tree and throws when it outlives <paramref name="timeout"/>.</summary>
    public static ProcessResult Run(string workingDirectory, TimeSpan timeout, params string[] arguments)
    {
        var psi = new ProcessStartInfo(Executable)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            psi.ArgumentList.Add(argument);
        }

        foreach (string name in InheritedMsBuildVariables)
        {
            psi.Environment.Remove(name);
        }

        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";

        string commandLine = Executable + " " + string.Join(" ", arguments);
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var clock = Stopwatch.StartNew();
        using var process = new Process { StartInfo = psi };
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (stdout)
                {
                    stdout.AppendLine(e.Data);
                }
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (stderr)
                {
                    stderr.AppendLine(e.Data);
                }
            }
        };

        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            var killed = new ProcessResult(commandLine, workingDirectory, -1, Text(stdout), Text(stderr), clock.Elapsed);
            throw new TimeoutException($"Timed out after {timeout.TotalMinutes:F0} min and killed:{Environment.NewLine}{killed.Describe()}");
        }

        process.WaitForExit(); // drains the redirected streams
        return new ProcessResult(commandLine, workingDirectory, process.ExitCode, Text(stdout), Text(stderr), clock.Elapsed);
    }

    private static string Text(StringBuilder sb)
    {
        lock (sb)
        {
            return sb.ToString();
        }
    }
}
