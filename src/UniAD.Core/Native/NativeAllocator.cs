using System.Runtime.InteropServices;

namespace UniAD.Core.Native;

/// <summary>
/// Process-wide settings of the C allocator that libtorch's CPU tensors come from. By default glibc
/// serves every block above a (dynamic, at most 32 MiB) threshold with a fresh <c>mmap</c> and gives it
/// back on free, so each forward pass of a large network page-faults (and the kernel zeroes) all of its
/// big activations again: about 12 % of a paper-size EfficientNet-B4 scoring pass at batch 8.
/// </summary>
public static class NativeAllocator
{
    private const int TrimThreshold = -1; // M_TRIM_THRESHOLD
    private const int MmapMax = -4; // M_MMAP_MAX

    /// <summary>
    /// Makes glibc's <c>malloc</c> keep freed memory for reuse: large blocks come from the heap instead
    /// of <c>mmap</c>, and the heap is never trimmed. Repeated passes then reuse the same pages; the
    /// price is that the process keeps its peak native memory (it is not returned to the system when
    /// tensors are freed). Affects the whole process, from the call on; call it once at start-up,
    /// before the first large tensors are allocated. Does nothing elsewhere than Linux with glibc.
    /// </summary>
    /// <returns>True when the settings were applied; false when the C library is not glibc (or refused them).</returns>
    public static bool KeepFreedMemory()
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        try
        {
            return Mallopt(MmapMax, 0) == 1 && Mallopt(TrimThreshold, int.MaxValue) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>
    /// Returns the C heap's free memory to the system (glibc's <c>malloc_trim(0)</c>): after a burst of large images,
    /// native buffers (SkiaSharp's bitmaps and encoders, libtorch's tensors) are freed but glibc keeps the pages. A scoring
    /// service calls it when its decoded-memory budget empties (<c>UniAD.Hosting</c> does). Does nothing elsewhere than
    /// Linux with glibc.
    /// </summary>
    /// <returns>True when memory was returned; false when there was none to return or the C library is not glibc.</returns>
    public static bool Trim()
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        try
        {
            return MallocTrim(0) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    [DllImport("libc.so.6", EntryPoint = "mallopt", ExactSpelling = true)]
    private static extern int Mallopt(int param, int value);

    [DllImport("libc.so.6", EntryPoint = "malloc_trim", ExactSpelling = true)]
    private static extern int MallocTrim(nuint pad);
}
