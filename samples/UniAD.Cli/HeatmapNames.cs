namespace UniAD.Cli;

/// <summary>
/// Output file names that cannot collide. Each input gets the shortest name that tells it apart from every other
/// input: its file name, then as many of its parent folders as needed, joined by <c>_</c>
/// (<c>a/good/000.png</c> and <c>b/good/000.png</c> become <c>a_good_000</c> and <c>b_good_000</c>); inputs that still
/// share a name (the same file twice, <c>x.png</c> beside <c>x.jpg</c>: the same folder) get <c>-2</c>, <c>-3</c>, ... in input order.
/// Names are compared case-insensitively, so that they are distinct on every file system.
/// </summary>
internal static class HeatmapNames
{
    /// <summary>One stem (no folder, no extension) per path, in order.</summary>
    /// <param name="paths">The inputs.</param>
    /// <param name="baseNames">The base name of each input (default: its file name without extension).</param>
    public static IReadOnlyList<string> Assign(IReadOnlyList<string> paths, IReadOnlyList<string>? baseNames = null)
    {
        var parents = paths.Select(ParentFolders).ToArray();
        var stems = paths.Select((p, i) => Clean(baseNames?[i] ?? Path.GetFileNameWithoutExtension(p))).ToArray();
        var depth = new int[paths.Count];
        string Name(int i) => string.Join("_", parents[i].Skip(parents[i].Length - depth[i]).Append(stems[i]));

        // Lengthen every name shared by inputs in different folders, while its holders have folders left to add.
        var folders = parents.Select(p => string.Join("/", p)).ToArray();
        bool changed = true;
        while (changed)
        {
            changed = false;
            var shared = Enumerable.Range(0, paths.Count).GroupBy(Name, StringComparer.OrdinalIgnoreCase)
                .Where(g => g.Select(i => folders[i]).Distinct(StringComparer.OrdinalIgnoreCase).Count() > 1);
            foreach (var group in shared.ToList())
            {
                foreach (var i in group.Where(i => depth[i] < parents[i].Length))
                {
                    depth[i]++;
                    changed = true;
                }
            }
        }

        var used = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var names = new string[paths.Count];
        for (int i = 0; i < paths.Count; i++)
        {
            var name = Name(i);
            for (int n = 2; !used.Add(name); n++)
            {
                name = $"{Name(i)}-{n}";
            }

            names[i] = name;
        }

        return names;
    }

    private static string[] ParentFolders(string path)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(path)) ?? string.Empty;
        return folder.Split(new[] { Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar }, StringSplitOptions.RemoveEmptyEntries)
            .Select(Clean)
            .Where(s => s.Length > 0)
            .ToArray();
    }

    private static string Clean(string part)
    {
        var invalid = Path.GetInvalidFileNameChars();
        return new string(part.Select(c => Array.IndexOf(invalid, c) >= 0 || c == ':' ? '_' : c).ToArray());
    }
}
