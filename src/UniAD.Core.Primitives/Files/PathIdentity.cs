namespace UniAD.Core.Files;

/// <summary>
/// Whether two paths name the same file: both made absolute, every symbolic link on the way (folders and the file
/// itself) followed to its final target, and compared without case where the platform's file systems ignore it
/// (Windows, macOS). Hard links are not detected. Used to refuse writing a command's output over one of its inputs.
/// </summary>
public static class PathIdentity
{
    /// <summary>The comparer of canonical paths on this platform.</summary>
    public static StringComparer Comparer { get; } = OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;

    /// <summary>True when <paramref name="a"/> and <paramref name="b"/> name the same file (whether or not it exists yet).</summary>
    public static bool Same(string a, string b) => Comparer.Equals(Canonical(a), Canonical(b));

    /// <summary>The absolute path with every symbolic link on the way resolved (parts that do not exist are kept as written).</summary>
    public static string Canonical(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return Canonical(Path.GetFullPath(path), depth: 0);
    }

    private static string Canonical(string full, int depth)
    {
        var root = Path.GetPathRoot(full) ?? string.Empty;
        var current = root;
        foreach (var part in full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            current = Path.Combine(current, part);
            FileSystemInfo info = Directory.Exists(current) ? new DirectoryInfo(current) : new FileInfo(current);
            if (depth < 40 && info.Exists && info.LinkTarget is { } target) // a cycle of links is left as it is
            {
                current = Canonical(Path.GetFullPath(target, Path.GetDirectoryName(current) ?? root), depth + 1);
            }
        }

        return current;
    }
}
