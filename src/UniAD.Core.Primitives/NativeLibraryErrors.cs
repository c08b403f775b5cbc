namespace UniAD.Core;

/// <summary>What a failed first call into a native library (SkiaSharp, ONNX Runtime) really says.</summary>
internal static class NativeLibraryErrors
{
    /// <summary>The exception behind any type initializers: a missing library or a version check, for the message.</summary>
    public static Exception Innermost(Exception ex)
    {
        while (ex is TypeInitializationException { InnerException: { } inner })
        {
            ex = inner;
        }

        return ex;
    }
}
