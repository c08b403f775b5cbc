using System.Text;

namespace UniAD.Core.Files;

/// <summary>Writes files through a temporary name in the same folder, then moves it into place.</summary>
internal static class AtomicFile
{
    public static void WriteAllText(string path, string text) => Write(path, stream =>
    {
        using var writer = new StreamWriter(stream, new UTF8Encoding(false));
        writer.Write(text);
    });

    public static void Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        var folder = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"Cannot write '{full}': the folder '{folder}' does not exist.");
        }

        RemoveStaleTemporaries(folder, Path.GetFileName(full));
        var temp = Path.Combine(folder, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
            }

            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
    }

    /// <summary>How old a temporary file of the same target must be before a new write removes it (a write in progress elsewhere is younger).</summary>
    public static readonly TimeSpan StaleAfter = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Deletes temporary files an interrupted write of the same target left behind (<c>.NAME.&lt;32 hex&gt;.tmp</c>, last
    /// written more than <see cref="StaleAfter"/> ago). Files that cannot be deleted are left alone.
    /// </summary>
    public static int RemoveStaleTemporaries(string folder, string fileName)
    {
        int removed = 0;
        var cutoff = DateTime.UtcNow - StaleAfter;
        foreach (var candidate in Directory.EnumerateFiles(folder, $".{fileName}.*.tmp"))
        {
            var middle = Path.GetFileName(candidate)[(fileName.Length + 2)..^4];
            if (middle.Length != 32 || !middle.All(char.IsAsciiHexDigitLower) || File.GetLastWriteTimeUtc(candidate) > cutoff)
            {
                continue;
            }

            try
            {
                File.Delete(candidate);
                removed++;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Someone else's file, or in use: not ours to force.
            }
        }

        return removed;
    }
}
