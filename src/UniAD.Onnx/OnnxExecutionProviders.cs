using Microsoft.ML.OnnxRuntime;
using UniAD.Core;

namespace UniAD.Onnx;

/// <summary>
/// The execution providers: which NuGet package brings each one's native library, and which ones the native ONNX
/// Runtime library this process loaded offers.
/// </summary>
public static class OnnxExecutionProviders
{
    /// <summary>The NuGet package an application adds for <paramref name="provider"/> (the native library; UniAD.Onnx brings the managed one).</summary>
    /// <exception cref="ArgumentOutOfRangeException">An unknown provider.</exception>
    public static string PackageFor(OnnxExecutionProvider provider) => provider switch
    {
        OnnxExecutionProvider.Cpu => "Microsoft.ML.OnnxRuntime",
        OnnxExecutionProvider.Cuda => "Microsoft.ML.OnnxRuntime.Gpu",
        OnnxExecutionProvider.TensorRT => "Microsoft.ML.OnnxRuntime.Gpu",
        OnnxExecutionProvider.DirectML => "Microsoft.ML.OnnxRuntime.DirectML",
        OnnxExecutionProvider.OpenVINO => "Intel.ML.OnnxRuntime.OpenVino",
        _ => throw new ArgumentOutOfRangeException(nameof(provider), provider, "Unknown execution provider."),
    };

    /// <summary>ONNX Runtime's own name of <paramref name="provider"/> (as <see cref="Available"/> lists it), e.g. <c>CUDAExecutionProvider</c>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An unknown provider.</exception>
    public static string NativeName(OnnxExecutionProvider provider) => provider switch
    {
        OnnxExecutionProvider.Cpu => "CPUExecutionProvider",
        OnnxExecutionProvider.Cuda => "CUDAExecutionProvider",
        OnnxExecutionProvider.TensorRT => "TensorrtExecutionProvider",
        OnnxExecutionProvider.DirectML => "DmlExecutionProvider",
        OnnxExecutionProvider.OpenVINO => "OpenVINOExecutionProvider",
        _ => throw new ArgumentOutOfRangeException(nameof(provider), provider, "Unknown execution provider."),
    };

    /// <summary>The providers the loaded native ONNX Runtime library was built with (ONNX Runtime's names).</summary>
    /// <exception cref="PlatformNotSupportedException">No native ONNX Runtime library could be loaded (the message names the package to add).</exception>
    public static IReadOnlyList<string> Available()
    {
        try
        {
            return OrtEnv.Instance().GetAvailableProviders();
        }
        catch (Exception ex) when (IsMissingNativeLibrary(ex))
        {
            throw new PlatformNotSupportedException(
                $"The native ONNX Runtime library could not be loaded ({NativeLibraryErrors.Innermost(ex).Message}). UniAD.Onnx references the managed ONNX Runtime only: add the native package of your execution provider to the application ({PackageFor(OnnxExecutionProvider.Cpu)} for the CPU).",
                ex);
        }
    }

    /// <summary>Adds the chosen provider to <paramref name="session"/> (nothing for the CPU, ONNX Runtime's default).</summary>
    /// <exception cref="PlatformNotSupportedException">The provider is not in the loaded native library, or it could not be started; the message names the package.</exception>
    internal static void Append(SessionOptions session, OnnxScorerOptions options)
    {
        var provider = options.ExecutionProvider;
        var available = Available();
        var name = NativeName(provider);
        if (!available.Contains(name, StringComparer.Ordinal))
        {
            throw new PlatformNotSupportedException(
                $"The {provider} execution provider ({name}) is not in the native ONNX Runtime library this application loaded, which offers {string.Join(", ", available)}. Add the NuGet package {PackageFor(provider)} to the application (in place of {PackageFor(OnnxExecutionProvider.Cpu)}, whose library has the CPU provider only){Requirements(provider)}.");
        }

        try
        {
            switch (provider)
            {
                case OnnxExecutionProvider.Cpu:
                    break;
                case OnnxExecutionProvider.Cuda:
                    session.AppendExecutionProvider_CUDA(options.DeviceId);
                    break;
                case OnnxExecutionProvider.TensorRT:
                    session.AppendExecutionProvider_Tensorrt(options.DeviceId);
                    break;
                case OnnxExecutionProvider.DirectML:
                    session.AppendExecutionProvider_DML(options.DeviceId);
                    break;
                case OnnxExecutionProvider.OpenVINO:
                    session.AppendExecutionProvider_OpenVINO(options.OpenVinoDeviceType ?? string.Empty);
                    break;
            }
        }
        catch (Exception ex) when (ex is OnnxRuntimeException || IsMissingNativeLibrary(ex))
        {
            throw new PlatformNotSupportedException(
                $"The {provider} execution provider could not be started (device {options.DeviceId}): {NativeLibraryErrors.Innermost(ex).Message}. It comes with the NuGet package {PackageFor(provider)}{Requirements(provider)}.",
                ex);
        }
    }

    /// <summary>A native library or one of its entry points is missing (possibly behind a type initializer).</summary>
    internal static bool IsMissingNativeLibrary(Exception ex) =>
        NativeLibraryErrors.Innermost(ex) is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException;

    private static string Requirements(OnnxExecutionProvider provider) => provider switch
    {
        OnnxExecutionProvider.Cuda => "; the machine needs an NVIDIA driver with the CUDA and cuDNN versions that ONNX Runtime release names",
        OnnxExecutionProvider.TensorRT => "; the machine needs TensorRT besides the NVIDIA driver, CUDA and cuDNN",
        OnnxExecutionProvider.DirectML => "; DirectML runs on Windows 10 1903 or later with a DirectX 12 GPU",
        OnnxExecutionProvider.OpenVINO => "; OpenVINO runs on Intel CPUs, GPUs and NPUs",
        _ => string.Empty,
    };
}
