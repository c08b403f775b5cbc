using System.Diagnostics;
using UniAD.Build;
using Xunit;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Build;

public sealed class ElfVersionPatcherTests : IDisposable
{
    private const string Glibcxx3432 = "GLIBCXX_3.4.32";

    private readonly string _dir;

    public ElfVersionPatcherTests()
    {
        _dir = Path.Combine(Path.GetTempPath(), "uniad-elf-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ReadVersionNeeds_ListsEveryEntryWithLibraryFlagsAndOffset()
    {
        var elf = SyntheticElf.TorchSharpLike();

        var needs = ElfVersionPatcher.ReadVersionNeeds(elf.Bytes, "synthetic.so");

        Assert.Equal(
            new[]
            {
                ("libstdc++.so.6", "GLIBCXX_3.4.30", (ushort)0),
                ("libstdc++.so.6", Glibcxx3432, (ushort)0),
                ("libc.so.6", "GLIBC_2.34", (ushort)0),
            },
            needs.Select(n => (n.Library, n.Version, n.Flags)).ToArray());
        Assert.All(needs, n => Assert.False(n.IsWeak));
        Assert.All(needs, n => Assert.Equal(elf.FlagsOffsets[n.Version], n.FlagsOffset));
        // .dynstr is 67 bytes at 64, so .gnu.version_r starts at 136 (aligned to 8): Verneed(libstdc++)
        // at 136, its Vernaux at 152 and 168, Verneed(libc) at 184, its Vernaux at 200; vna_flags is 4
        // bytes into a Vernaux.
        Assert.Equal(new long[] { 156, 172, 204 }, needs.Select(n => n.FlagsOffset).ToArray());
    }

    [Fact]
    public void ReadVersionNeeds_ReportsFlagsAlreadyInTheFile()
    {
        var elf = SyntheticElf.TorchSharpLike(glibcxx3432Flags: ElfVersionPatcher.VerFlagWeak);

        var needs = ElfVersionPatcher.ReadVersionNeeds(elf.Bytes, "weak.so");

        var weak = Assert.Single(needs, n => n.IsWeak);
        Assert.Equal(Glibcxx3432, weak.Version);
        Assert.Equal(0x2, weak.Flags);
    }

    [Fact]
    public void ReadVersionNeeds_IsEmptyWithoutVersionNeedsSection()
    {
        var elf = SyntheticElf.Build(Array.Empty<NeededLibrary>(), new[] { "libfoo.so.1", "FOO_1.0" });

        Assert.Empty(ElfVersionPatcher.ReadVersionNeeds(elf.Bytes, "libfoo.so.1"));
        Assert.Equal(-1, elf.VerneedSectionIndex);
    }

    [Fact]
    public void ReadVersionDefinitions_ListsDefinedNamesInOrder()
    {
        string[] defined = { "libstdc++.so.6", "GLIBCXX_3.4", "GLIBCXX_3.4.29", "GLIBCXX_3.4.30", "CXXABI_1.3" };
        var elf = SyntheticElf.Build(new[] { new NeededLibrary("libc.so.6", ("GLIBC_2.34", 0)) }, defined);

        Assert.Equal(defined, ElfVersionPatcher.ReadVersionDefinitions(elf.Bytes, "libstdc++.so.6"));
        Assert.DoesNotContain(Glibcxx3432, ElfVersionPatcher.ReadVersionDefinitions(elf.Bytes, "libstdc++.so.6"));
        // The same file's needs are still read independently of its definitions.
        Assert.Equal("GLIBC_2.34", Assert.Single(ElfVersionPatcher.ReadVersionNeeds(elf.Bytes, "libstdc++.so.6")).Version);
    }

    [Fact]
    public void ReadVersionDefinitions_IsEmptyWithoutVersionDefinitionsSection()
    {
        Assert.Empty(ElfVersionPatcher.ReadVersionDefinitions(SyntheticElf.TorchSharpLike().Bytes, "synthetic.so"));
    }

    [Fact]
    public void WeakenVersionNeed_SetsWeakFlagOnThatEntryOnly_ChangingOneByte()
    {
        var elf = SyntheticElf.TorchSharpLike();
        string path = Write("libLibTorchSharp.so", elf.Bytes);

        var outcome = ElfVersionPatcher.WeakenVersionNeed(path, Glibcxx3432);

        Assert.Equal(WeakenOutcome.Weakened, outcome);
        byte[] after = File.ReadAllBytes(path);
        Assert.Equal(elf.Bytes.Length, after.Length);
        int[] changed = Enumerable.Range(0, after.Length).Where(i => after[i] != elf.Bytes[i]).ToArray();
        int index = Assert.Single(changed);
        Assert.Equal(elf.FlagsOffsets[Glibcxx3432], index);
        Assert.Equal(0x00, elf.Bytes[index]);
        Assert.Equal(0x02, after[index]);

        var needs = ElfVersionPatcher.ReadVersionNeeds(after, path);
        Assert.Equal(3, needs.Count);
        var weak = Assert.Single(needs, n => n.IsWeak);
        Assert.Equal(("libstdc++.so.6", Glibcxx3432, (ushort)2), (weak.Library, weak.Version, weak.Flags));

        // The temporary copy it writes through is gone.
        Assert.Equal(new[] { path }, Directory.GetFiles(_dir));
    }

    [Fact]
    public void WeakenVersionNeed_KeepsOtherFlagBits()
    {
        var elf = SyntheticElf.TorchSharpLike(glibcxx3432Flags: 0x0101);
        string path = Write("flags.so", elf.Bytes);

        Assert.Equal(WeakenOutcome.Weakened, ElfVersionPatcher.WeakenVersionNeed(path, Glibcxx3432));

        var need = Assert.Single(ElfVersionPatcher.ReadVersionNeeds(File.ReadAllBytes(path), path), n => n.Version == Glibcxx3432);
        Assert.Equal(0x0103, need.Flags);
    }

    [Fact]
    public void WeakenVersionNeed_SecondCallIsAlreadyWeakAndLeavesFileIdentical()
    {
        string path = Write("twice.so", SyntheticElf.TorchSharpLike().Bytes);
        Assert.Equal(WeakenOutcome.Weakened, ElfVersionPatcher.WeakenVersionNeed(path, Glibcxx3432));
        byte[] once = File.ReadAllBytes(path);
        var writeTime = File.GetLastWriteTimeUtc(path);

        var outcome = ElfVersionPatcher.WeakenVersionNeed(path, Glibcxx3432);

        Assert.Equal(WeakenOutcome.AlreadyWeak, outcome);
        Assert.Equal(once, File.ReadAllBytes(path));
        Assert.Equal(writeTime, File.GetLastWriteTimeUtc(path));
    }

    [Fact]
    public void WeakenVersionNeed_FileWithoutThatNeedIsNotRequiredAndUntouched()
    {
        var elf = SyntheticElf.Build(
            new[]
            {
                new NeededLibrary("libstdc++.so.6", ("GLIBCXX_3.4.29", 0), ("GLIBCXX_3.4.30", 0)),
                new NeededLibrary("libc.so.6", ("GLIBC_2.34", 0)),
            },
            Array.Empty<string>());
        string path = Write("older.so", elf.Bytes);
        var writeTime = File.GetLastWriteTimeUtc(path);

        var outcome = ElfVersionPatcher.WeakenVersionNeed(path, Glibcxx3432);

        Assert.Equal(WeakenOutcome.NotRequired, outcome);
        Assert.Equal(elf.Bytes, File.ReadAllBytes(path));
        Assert.Equal(writeTime, File.GetLastWriteTimeUtc(path));
        Assert.Equal(new[] { path }, Directory.GetFiles(_dir));
    }

    [Fact]
    public void WeakenVersionNeed_KeepsFileModeAndDoesNotWriteThroughHardLinks()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        var elf = SyntheticElf.TorchSharpLike();
        string original = Write("cache-copy.so", elf.Bytes);
        File.SetUnixFileMode(original, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        string linked = Path.Combine(_dir, "output-copy.so");
        RunLn(original, linked);
        Assert.Equal(2, HardLinkCount(original));

        Assert.Equal(WeakenOutcome.Weakened, ElfVersionPatcher.WeakenVersionNeed(linked, Glibcxx3432));

        Assert.Equal(1, HardLinkCount(original)); // the patched file replaced the link instead of writing through it
        Assert.Equal(elf.Bytes, File.ReadAllBytes(original)); // the "package cache" file is not modified
        Assert.True(Assert.Single(ElfVersionPatcher.ReadVersionNeeds(File.ReadAllBytes(linked), linked), n => n.Version == Glibcxx3432).IsWeak);
        Assert.Equal(File.GetUnixFileMode(original), File.GetUnixFileMode(linked));
    }

    public static TheoryData<string, string> MalformedFiles => new()
    {
        { "not-elf", "is not an ELF file" },
        { "32-bit", "is not a 64-bit ELF file (EI_CLASS = 1)" },
        { "big-endian", "is not a little-endian ELF file (EI_DATA = 2)" },
        { "truncated", "is truncated or corrupt: the section header table" },
        { "empty", "is not an ELF file" },
        { "short-header", "is not an ELF file" },
        { "bad-string-table-link", "which is not a string table" },
    };

    [Theory]
    [MemberData(nameof(MalformedFiles))]
    public void MalformedFile_ThrowsInvalidDataExceptionNamingThePath_AndIsNotModified(string kind, string expectedMessage)
    {
        byte[] bytes = Malformed(kind);
        string path = Write(kind + ".so", bytes);

        var read = Assert.Throws<InvalidDataException>(() => ElfVersionPatcher.ReadVersionNeeds(File.ReadAllBytes(path), path));
        var weaken = Assert.Throws<InvalidDataException>(() => ElfVersionPatcher.WeakenVersionNeed(path, Glibcxx3432));

        foreach (var ex in new[] { read, weaken })
        {
            Assert.Contains(path, ex.Message, StringComparison.Ordinal);
            Assert.Contains(expectedMessage, ex.Message, StringComparison.Ordinal);
        }

        Assert.Equal(bytes, File.ReadAllBytes(path));
        Assert.Equal(new[] { path }, Directory.GetFiles(_dir));
        if (kind != "bad-string-table-link") // that file has no definitions section, so definitions are not read
        {
            var defs = Assert.Throws<InvalidDataException>(() => ElfVersionPatcher.ReadVersionDefinitions(bytes, path));
            Assert.Contains(path, defs.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void RealTorchSharpLibrary_NeedsGlibcxx3432_WeakenedByTheBuildWhenTheSystemLacksIt()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        string[] libraries = Directory.GetFiles(AppContext.BaseDirectory, "libLibTorchSharp.so", SearchOption.AllDirectories);
        Assert.NotEmpty(libraries);

        bool systemHasIt = SystemLibStdCxxDefines(Glibcxx3432);
        foreach (string library in libraries)
        {
            var needs = ElfVersionPatcher.ReadVersionNeeds(File.ReadAllBytes(library), library);
            Assert.True(needs.Count > 10, $"{library}: only {needs.Count} version needs read");
            Assert.Contains(needs, n => n.Library == "libc.so.6" && n.Version.StartsWith("GLIBC_2.", StringComparison.Ordinal));
            var need = Assert.Single(needs, n => n.Version == Glibcxx3432);
            Assert.Equal("libstdc++.so.6", need.Library);

            if (!systemHasIt)
            {
                Assert.True(need.IsWeak, $"{library}: the {Glibcxx3432} need is not weak (flags 0x{need.Flags:x}), but the system libstdc++ lacks that version; the build's UniADWeakenGlibcxxInOutput target did not run.");
                // Nothing else was weakened.
                Assert.Equal(need, Assert.Single(needs, n => n.IsWeak));
            }
        }
    }

    [Fact]
    public void RealTorchSharpLibrary_PackageCacheCopyIsNotModified()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        string packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p
            ? p
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string torchsharp = Path.Combine(packages, "torchsharp");
        if (!Directory.Exists(torchsharp))
        {
            return;
        }

        foreach (string library in Directory.GetFiles(torchsharp, "libLibTorchSharp.so", SearchOption.AllDirectories))
        {
            var needs = ElfVersionPatcher.ReadVersionNeeds(File.ReadAllBytes(library), library);
            Assert.DoesNotContain(needs, n => n.IsWeak);
        }
    }

    [Fact]
    public void SystemLibStdCxx_IsFoundAndItsDefinitionsAreRead()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        string? libstdcxx = ElfVersionPatcher.FindSystemLibStdCxx();
        Assert.NotNull(libstdcxx);
        var defined = ElfVersionPatcher.ReadVersionDefinitions(File.ReadAllBytes(libstdcxx), libstdcxx);
        Assert.Contains("GLIBCXX_3.4", defined);
        Assert.Contains("CXXABI_1.3", defined);
        Assert.Contains("GLIBCXX_3.4.30", defined); // GCC 12 (Debian 12) or newer: TorchSharp needs it strongly
    }

    [Fact]
    public void TorchSharpOperationRunsInProcess()
    {
        using var a = ones(2, 3);
        using var doubled = a * 2;
        using var sum = doubled.sum();

        Assert.Equal(new long[] { 2, 3 }, doubled.shape);
        Assert.Equal(12f, sum.item<float>());

        using var product = matmul(doubled, a.t()); // (2x3)·(3x2), every entry 2+2+2
        Assert.Equal(new[] { 6f, 6f, 6f, 6f }, product.data<float>().ToArray());
    }

    internal static bool SystemLibStdCxxDefines(string version)
    {
        string? libstdcxx = ElfVersionPatcher.FindSystemLibStdCxx();
        return libstdcxx is not null
            && ElfVersionPatcher.ReadVersionDefinitions(File.ReadAllBytes(libstdcxx), libstdcxx).Contains(version);
    }

    private static byte[] Malformed(string kind)
    {
        var elf = SyntheticElf.TorchSharpLike();
        byte[] bytes = (byte[])elf.Bytes.Clone();
        switch (kind)
        {
            case "not-elf":
                return "#!/bin/sh\necho this is a shell script, not a shared library\n"u8.ToArray().Concat(new byte[64]).ToArray();
            case "32-bit":
                bytes[4] = 1; // ELFCLASS32
                return bytes;
            case "big-endian":
                bytes[5] = 2; // ELFDATA2MSB
                return bytes;
            case "truncated":
                // Cut the file in the middle of the second section header.
                return bytes.Take(checked((int)elf.SectionHeaderOffset + SyntheticElf.SectionHeaderSize + 20)).ToArray();
            case "empty":
                return Array.Empty<byte>();
            case "short-header":
                return bytes.Take(40).ToArray();
            case "bad-string-table-link":
                // Point .gnu.version_r's sh_link at the null section.
                int link = checked((int)elf.SectionHeaderOffset + (elf.VerneedSectionIndex * SyntheticElf.SectionHeaderSize) + 40);
                Assert.Equal(1, bytes[link]);
                bytes[link] = 0;
                return bytes;
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, null);
        }
    }

    private string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static void RunLn(string target, string link)
    {
        var psi = new ProcessStartInfo("ln") { RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(target);
        psi.ArgumentList.Add(link);
        using var ln = Process.Start(psi)!;
        string error = ln.StandardError.ReadToEnd();
        ln.WaitForExit();
        Assert.True(ln.ExitCode == 0, $"ln failed: {error}");
    }

    private static int HardLinkCount(string path)
    {
        var psi = new ProcessStartInfo("stat", new[] { "-c", "%h", path }) { RedirectStandardOutput = true, UseShellExecute = false };
        using var stat = Process.Start(psi)!;
        string output = stat.StandardOutput.ReadToEnd();
        stat.WaitForExit();
        return int.Parse(output.Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
