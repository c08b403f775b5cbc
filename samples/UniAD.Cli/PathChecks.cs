namespace UniAD.Cli;

/// <summary>Checks of the paths a command reads and writes, made before any work starts (failures: exit code 1).</summary>
internal static class PathChecks
{
    /// <summary>The file named by <paramref name="option"/> exists.</summary>
    /// <exception cref="FileNotFoundException">It does not (the message names the option and the path).</exception>
    public static void InputFile(string path, string option)
    {
        if (Directory.Exists(path))
        {
            throw new IOException($"{option} '{path}' is a folder, not a file.");
        }

        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{option} '{path}' does not exist.", path);
        }
    }

    /// <summary>
    /// A file can be written at <paramref name="path"/>: it is not a folder, its folder exists and accepts a new file
    /// (probed with a temporary file that is deleted at once).
    /// </summary>
    /// <exception cref="IOException">The path is a folder, or the folder cannot be written.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="UnauthorizedAccessException">The folder is not writable.</exception>
    public static void OutputFile(string path, string option)
    {
        var full = Path.GetFullPath(path);
        if (Directory.Exists(full))
        {
            throw new IOException($"{option} '{path}' is a folder; name the file to write.");
        }

        var folder = Path.GetDirectoryName(full) ?? full;
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"{option} '{path}': the folder '{folder}' does not exist.");
        }

        WritableFolder(folder, option);
    }

    /// <summary>
    /// <paramref name="output"/> names none of <paramref name="inputs"/> (after resolving links, and case where the file
    /// system ignores it): writing it would destroy an input the command reads.
    /// </summary>
    /// <exception cref="RefusedException">It does (exit code 1; the message names both options and the file).</exception>
    public static void NotAnInput(string output, string outputOption, params (string? Path, string Option)[] inputs)
    {
        foreach (var (path, option) in inputs)
        {
            if (path is not null && UniAD.Core.Files.PathIdentity.Same(output, path))
            {
                throw new RefusedException($"{outputOption} '{output}' is the same file as {option} '{path}': writing it would destroy the input. Name another file.");
            }
        }
    }

    /// <summary>The folder exists or can be created, and accepts a new file.</summary>
    public static void OutputFolder(string folder, string option)
    {
        if (File.Exists(folder))
        {
            throw new IOException($"{option} '{folder}' is a file, not a folder.");
        }

        Directory.CreateDirectory(folder);
        WritableFolder(folder, option);
    }

    private static void WritableFolder(string folder, string option)
    {
        var probe = Path.Combine(folder, $".uniad-write-check-{Guid.NewGuid():N}.tmp");
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose))
            {
            }
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new UnauthorizedAccessException($"{option}: the folder '{folder}' is not writable ({ex.Message}).", ex);
        }
        catch (IOException ex)
        {
            throw new IOException($"{option}: cannot write into the folder '{folder}' ({ex.Message}).", ex);
        }
    }
}
