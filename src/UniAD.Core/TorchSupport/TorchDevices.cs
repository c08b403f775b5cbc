using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace UniAD.Core.TorchSupport;

/// <summary>
/// Device names, their checks and the device-wide settings of this library in one place: <c>cpu</c>, <c>cuda</c> and
/// <c>cuda:N</c> are parsed and checked against what libtorch has (CUDA present, N below the device count); a CUDA
/// detector's float32 precision (TF32 on or off) is set here; timings synchronise here.
/// </summary>
public static class TorchDevices
{
    /// <summary>
    /// The device named <paramref name="name"/>: <c>cpu</c>, <c>cuda</c> (device 0) or <c>cuda:N</c> (case-insensitive).
    /// </summary>
    /// <exception cref="ArgumentException">The name is none of these, or N is not a non-negative integer.</exception>
    /// <exception cref="InvalidOperationException">CUDA was named but is not available, or N is not below the number of CUDA devices.</exception>
    public static Device Parse(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var lower = name.Trim().ToLowerInvariant();
        if (lower == "cpu")
        {
            return CPU;
        }

        if (lower != "cuda" && !lower.StartsWith("cuda:", StringComparison.Ordinal))
        {
            throw new ArgumentException($"Unknown device '{name}'; use cpu, cuda or cuda:N.", nameof(name));
        }

        int index = 0;
        if (lower.Length > 4 && !int.TryParse(lower.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out index))
        {
            throw new ArgumentException($"Device '{name}': the CUDA device index must be a non-negative integer (cuda:0, cuda:1, ...).", nameof(name));
        }

        if (!cuda.is_available())
        {
            throw new InvalidOperationException($"Device '{name}' was requested but CUDA is not available: reference the TorchSharp-cuda-windows or TorchSharp-cuda-linux package instead of TorchSharp-cpu, and check the NVIDIA driver.");
        }

        CheckIndex(name, index, cuda.device_count());
        return new Device(DeviceType.CUDA, index);
    }

    /// <summary>Refuses a CUDA device index that is not below <paramref name="deviceCount"/>, naming both.</summary>
    /// <exception cref="InvalidOperationException">The index is out of range.</exception>
    internal static void CheckIndex(string name, int index, int deviceCount)
    {
        if (index >= deviceCount)
        {
            throw new InvalidOperationException($"Device '{name}': CUDA device {index} does not exist; this machine has {deviceCount} CUDA device{(deviceCount == 1 ? string.Empty : "s")} (cuda:0{(deviceCount > 1 ? $" to cuda:{deviceCount - 1}" : string.Empty)}).");
        }
    }

    /// <summary>
    /// Sets libtorch's process-wide TF32 switches for CUDA matrix products and cuDNN convolutions. Off (the library's
    /// choice for every detector it creates on CUDA unless its builder said otherwise) keeps float32 exact; on lets
    /// Ampere and newer GPUs use TensorFloat-32 (10-bit mantissa) tensor cores, faster, with features moving by
    /// about 1e-3. libtorch's own default is on for cuDNN and off for matrix products.
    /// </summary>
    public static void SetTensorFloat32(bool allow)
    {
        backends.cuda.matmul.allow_tf32 = allow;
        backends.cudnn.allow_tf32 = allow;
    }

    /// <summary>Waits for the device's queued work (a no-op off CUDA): CUDA kernels run asynchronously, so a timing needs it.</summary>
    public static void Synchronize(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (device.type == DeviceType.CUDA)
        {
            cuda.synchronize(device);
        }
    }

    /// <summary>True when the two denote the same device (<see cref="Device"/> has no value equality).</summary>
    public static bool Same(Device a, Device b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        return a.type == b.type && (a.type == DeviceType.CPU || Math.Max(a.index, 0) == Math.Max(b.index, 0));
    }
}
