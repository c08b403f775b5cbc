using System.Runtime.InteropServices;
using TorchSharp;

namespace UniAD.Core.Native;

/// <summary>
/// Loads libtorch before first use and turns a failure into a message that says what to do. TorchSharp's own message
/// ("doesn't contain a reference to libtorch-cpu-...") is misleading when the real cause is the running machine's
/// libstdc++ (GLIBCXX_3.4.32 missing, e.g. Debian 12 with an output that was not patched by the UniAD.Core build step)
/// or a runtime libtorch does not exist for.
/// </summary>
public static class TorchRuntime
{
    private static readonly Lazy<Exception?> Failure = new(Probe, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Makes sure libtorch is loaded; called by the builder and by every load of a detector.</summary>
    /// <exception cref="DllNotFoundException">libtorch cannot be loaded; the message names the cause and the fix.</exception>
    public static void EnsureLoaded()
    {
        if (Failure.Value is { } failure)
        {
            throw failure;
        }
    }

    /// <summary>
    /// The message for a failed load: <paramref name="loaderError"/> is the dynamic loader's own error for
    /// libLibTorchSharp (null when it was not obtained), <paramref name="torchSharpError"/> TorchSharp's message.
    /// </summary>
    public static string Explain(string? loaderError, string torchSharpError, string? libraryPath, Architecture architecture, string runtimeIdentifier)
    {
        ArgumentNullException.ThrowIfNull(torchSharpError);
        if (loaderError is not null && loaderError.Contains("GLIBCXX_", StringComparison.Ordinal))
        {
            return $"libtorch cannot be loaded: {libraryPath ?? "libLibTorchSharp.so"} needs a newer libstdc++ than this machine has ({FirstLine(loaderError)}). "
                + "The only such need of TorchSharp 0.107 (GLIBCXX_3.4.32) is unused: the UniAD.Core package's build step marks it weak in every build and publish output "
                + "(UniADGlibcxxPatch=always, the default). This output was not patched: rebuild or republish it with the UniAD.Core package referenced (not with UniADGlibcxxPatch=off), "
                + "or install a libstdc++ from GCC 13 or newer.";
        }

        bool unsupported = !(runtimeIdentifier is "linux-x64" or "win-x64" or "osx-arm64");
        if (unsupported)
        {
            return $"libtorch cannot be loaded: there is no libtorch for {runtimeIdentifier} ({architecture}). Export the detector with ExportOnnx on a supported machine "
                + "(linux-x64, win-x64, osx-arm64) and score here with the UniAD.Onnx package (ONNX Runtime). TorchSharp said: " + FirstLine(torchSharpError);
        }

        return "libtorch cannot be loaded. Reference a native backend package in the application (TorchSharp-cpu, TorchSharp-cuda-linux or TorchSharp-cuda-windows, "
            + "the same version as TorchSharp)" + (loaderError is null ? string.Empty : $"; the loader said: {FirstLine(loaderError)}") + ". TorchSharp said: " + FirstLine(torchSharpError);
    }

    private static Exception? Probe()
    {
        try
        {
            _ = torch.get_num_threads();
            return null;
        }
        catch (Exception ex) when (ex is TypeInitializationException or NotSupportedException or DllNotFoundException)
        {
            var inner = ex is TypeInitializationException { InnerException: { } i } ? i : ex;
            var (path, loaderError) = LoaderError();
            return new DllNotFoundException(Explain(loaderError, inner.Message, path, RuntimeInformation.ProcessArchitecture, RuntimeInformation.RuntimeIdentifier), ex);
        }
    }

    /// <summary>The loader's own error for libLibTorchSharp beside the application, if the file is there and does not load.</summary>
    private static (string? Path, string? Error) LoaderError()
    {
        string name = OperatingSystem.IsWindows() ? "LibTorchSharp.dll" : OperatingSystem.IsMacOS() ? "libLibTorchSharp.dylib" : "libLibTorchSharp.so";
        var candidates = new[] { Path.Combine(AppContext.BaseDirectory, name) }
            .Concat(Directory.Exists(Path.Combine(AppContext.BaseDirectory, "runtimes"))
                ? Directory.EnumerateFiles(Path.Combine(AppContext.BaseDirectory, "runtimes"), name, SearchOption.AllDirectories)
                : Enumerable.Empty<string>());
        foreach (var path in candidates.Where(File.Exists))
        {
            try
            {
                NativeLibrary.Free(NativeLibrary.Load(path));
            }
            catch (DllNotFoundException ex)
            {
                return (path, ex.Message);
            }
            catch (BadImageFormatException ex)
            {
                return (path, ex.Message);
            }
        }

        return (null, null);
    }

    private static string FirstLine(string text)
    {
        int end = text.IndexOfAny(new[] { '\r', '\n' });
        return (end < 0 ? text : text[..end]).Trim();
    }
}
