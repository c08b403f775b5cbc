namespace UniAD.Core.Data;

/// <summary>An image or mask file cannot be used: empty, corrupt, truncated, absurdly large, or inconsistent with its pair.</summary>
public sealed class ImageFileException : IOException
{
    /// <summary>Creates the exception; the message names the file and the reason.</summary>
    public ImageFileException(string filePath, string reason, Exception? inner = null)
        : base($"'{filePath}': {reason}", inner)
    {
        FilePath = filePath;
        Reason = reason;
    }

    /// <summary>The offending file.</summary>
    public string FilePath { get; }

    /// <summary>What is wrong with it.</summary>
    public string Reason { get; }
}
