// UniAD.Core build helper: lets TorchSharp's native library load on Linux systems whose libstdc++
// is older than the one it was linked against (Debian 12 ships GCC 12, TorchSharp 0.107 asks for
// GLIBCXX_3.4.32 from GCC 13).
//
// libLibTorchSharp.so lists GLIBCXX_3.4.32 in its version-needs section (.gnu.version_r) only for
// std::ios_base_library_init(), a symbol nothing relocates. Marking that one version entry WEAK
// (VER_FLG_WEAK = 0x2) makes the dynamic loader accept a libstdc++ without it. Nothing else in the
// file is touched.
//
// This file is compiled by MSBuild's RoslynCodeTaskFactory (see UniAD.Core.targets) and, with
// UNIAD_ELF_TESTS defined, linked into the unit tests, which exercise the pure ELF logic.
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
#if !UNIAD_ELF_TESTS
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
#endif

namespace UniAD.Build
{
    /// <summary>What <see cref="ElfVersionPatcher.WeakenVersionNeed"/> did to a file.</summary>
    public enum WeakenOutcome
    {
        /// <summary>The version entry was found and marked weak; the file was rewritten.</summary>
        Weakened,
        /// <summary>The version entry was already weak; the file was not written.</summary>
        AlreadyWeak,
        /// <summary>The file does not ask for that version; the file was not written.</summary>
        NotRequired,
    }

    /// <summary>One entry (Elf64_Vernaux) of an ELF file's version-needs section.</summary>
    public sealed class VersionNeed
    {
        /// <summary>Creates an entry.</summary>
        public VersionNeed(string library, string version, ushort flags, long flagsOffset)
        {
            Library = library;
            Version = version;
            Flags = flags;
            FlagsOffset = flagsOffset;
        }

        /// <summary>The needed library (vn_file), e.g. libstdc++.so.6.</summary>
        public string Library { get; }

        /// <summary>The needed version name (vna_name), e.g. GLIBCXX_3.4.32.</summary>
        public string Version { get; }

        /// <summary>The entry's flags (vna_flags); bit 0x2 is VER_FLG_WEAK.</summary>
        public ushort Flags { get; }

        /// <summary>File offset of the 16-bit vna_flags field.</summary>
        public long FlagsOffset { get; }

        /// <summary>True when the weak flag is set.</summary>
        public bool IsWeak => (Flags & ElfVersionPatcher.VerFlagWeak) != 0;
    }

    /// <summary>Minimal, strict reader and patcher for the symbol-versioning sections of 64-bit little-endian ELF files.</summary>
    public static class ElfVersionPatcher
    {
        /// <summary>The version TorchSharp 0.107 asks libstdc++ for.</summary>
        public const string GlibcxxVersion = "GLIBCXX_3.4.32";

        /// <summary>VER_FLG_WEAK.</summary>
        public const ushort VerFlagWeak = 0x2;

        private const uint ShtGnuVerdef = 0x6ffffffd;
        private const uint ShtGnuVerneed = 0x6ffffffe;
        private const int SectionHeaderSize = 64;

        private sealed class Section
        {
            public uint Type;
            public ulong Offset;
            public ulong Size;
            public uint Link;
            public uint Info;
        }

        /// <summary>Every entry of the file's version-needs section (empty when it has none).</summary>
        public static List<VersionNeed> ReadVersionNeeds(byte[] data, string path)
        {
            var sections = ReadSections(data, path);
            var result = new List<VersionNeed>();
            foreach (var sec in sections)
            {
                if (sec.Type != ShtGnuVerneed)
                {
                    continue;
                }

                var strtab = LinkedStringTable(sections, sec, path);
                ulong entry = sec.Offset;
                for (uint i = 0; i < sec.Info; i++)
                {
                    Require(data, entry, 16, path, ".gnu.version_r entry");
                    ushort version = U16(data, entry);
                    if (version != 1)
                    {
                        throw new InvalidDataException($"'{path}': unexpected Elf64_Verneed version {version} (expected 1).");
                    }

                    ushort count = U16(data, entry + 2);
                    string library = CString(data, strtab, U32(data, entry + 4), path);
                    ulong aux = entry + U32(data, entry + 8);
                    for (ushort j = 0; j < count; j++)
                    {
                        Require(data, aux, 16, path, ".gnu.version_r auxiliary entry");
                        ushort flags = U16(data, aux + 4);
                        string name = CString(data, strtab, U32(data, aux + 8), path);
                        result.Add(new VersionNeed(library, name, flags, checked((long)(aux + 4))));
                        uint nextAux = U32(data, aux + 12);
                        if (nextAux == 0)
                        {
                            break;
                        }

                        aux += nextAux;
                    }

                    uint next = U32(data, entry + 12);
                    if (next == 0)
                    {
                        break;
                    }

                    entry += next;
                }
            }

            return result;
        }

        /// <summary>Every version name a shared library defines (its .gnu.version_d section), e.g. for libstdc++.so.6.</summary>
        public static List<string> ReadVersionDefinitions(byte[] data, string path)
        {
            var sections = ReadSections(data, path);
            var result = new List<string>();
            foreach (var sec in sections)
            {
                if (sec.Type != ShtGnuVerdef)
                {
                    continue;
                }

                var strtab = LinkedStringTable(sections, sec, path);
                ulong entry = sec.Offset;
                for (uint i = 0; i < sec.Info; i++)
                {
                    Require(data, entry, 20, path, ".gnu.version_d entry");
                    ushort auxCount = U16(data, entry + 6);
                    if (auxCount > 0)
                    {
                        ulong aux = entry + U32(data, entry + 12);
                        Require(data, aux, 8, path, ".gnu.version_d auxiliary entry");
                        result.Add(CString(data, strtab, U32(data, aux), path));
                    }

                    uint next = U32(data, entry + 16);
                    if (next == 0)
                    {
                        break;
                    }

                    entry += next;
                }
            }

            return result;
        }

        /// <summary>
        /// Sets VER_FLG_WEAK on the file's need of <paramref name="version"/>. Idempotent; writes
        /// to a temporary copy that then replaces the file, so a failure never leaves it half written
        /// (and a hard link to a package cache is never modified in place).
        /// </summary>
        public static WeakenOutcome WeakenVersionNeed(string path, string version)
        {
            byte[] data = File.ReadAllBytes(path);
            VersionNeed? target = null;
            foreach (var need in ReadVersionNeeds(data, path))
            {
                if (need.Version == version)
                {
                    target = need;
                    break;
                }
            }

            if (target == null)
            {
                return WeakenOutcome.NotRequired;
            }

            if (target.IsWeak)
            {
                return WeakenOutcome.AlreadyWeak;
            }

            ushort flags = (ushort)(target.Flags | VerFlagWeak);
            string temp = path + ".uniad-" + Guid.NewGuid().ToString("N").Substring(0, 8) + ".tmp";
            try
            {
                File.Copy(path, temp, true); // keeps the file mode
                using (var stream = new FileStream(temp, FileMode.Open, FileAccess.Write))
                {
                    stream.Position = target.FlagsOffset;
                    stream.WriteByte((byte)(flags & 0xff));
                    stream.WriteByte((byte)(flags >> 8));
                }

                // Keep the original timestamp: MSBuild then sees the output copy as up to date with the
                // package's file and does not copy (and re-patch) it on every incremental build.
                File.SetLastWriteTimeUtc(temp, File.GetLastWriteTimeUtc(path));
                File.Replace(temp, path, null); // an atomic rename on Unix
            }
            finally
            {
                if (File.Exists(temp))
                {
                    File.Delete(temp);
                }
            }

            return WeakenOutcome.Weakened;
        }

        /// <summary>The system's libstdc++.so.6, or null when none is found in the usual places.</summary>
        public static string? FindSystemLibStdCxx()
        {
            string[] dirs =
            {
                "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                "/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib",
            };
            foreach (var dir in dirs)
            {
                string candidate = Path.Combine(dir, "libstdc++.so.6");
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }

            return null;
        }

        private static Section[] ReadSections(byte[] d, string path)
        {
            if (d.Length < 64 || d[0] != 0x7f || d[1] != (byte)'E' || d[2] != (byte)'L' || d[3] != (byte)'F')
            {
                throw new InvalidDataException($"'{path}' is not an ELF file (bad magic or shorter than an ELF header).");
            }

            if (d[4] != 2)
            {
                throw new InvalidDataException($"'{path}' is not a 64-bit ELF file (EI_CLASS = {d[4]}).");
            }

            if (d[5] != 1)
            {
                throw new InvalidDataException($"'{path}' is not a little-endian ELF file (EI_DATA = {d[5]}).");
            }

            ulong shoff = U64(d, 0x28);
            ushort shentsize = U16(d, 0x3A);
            ushort shnum = U16(d, 0x3C);
            if (shnum > 0 && shentsize != SectionHeaderSize)
            {
                throw new InvalidDataException($"'{path}': unexpected section header size {shentsize} (expected {SectionHeaderSize}).");
            }

            Require(d, shoff, (ulong)shnum * SectionHeaderSize, path, "section header table");
            var sections = new Section[shnum];
            for (int i = 0; i < shnum; i++)
            {
                ulong h = shoff + (ulong)i * SectionHeaderSize;
                var s = new Section
                {
                    Type = U32(d, h + 4),
                    Offset = U64(d, h + 24),
                    Size = U64(d, h + 32),
                    Link = U32(d, h + 40),
                    Info = U32(d, h + 44),
                };
                if (s.Type == ShtGnuVerneed || s.Type == ShtGnuVerdef || s.Type == 3 /* SHT_STRTAB */)
                {
                    Require(d, s.Offset, s.Size, path, "section " + i);
                }

                sections[i] = s;
            }

            return sections;
        }

        private static Section LinkedStringTable(Section[] sections, Section sec, string path)
        {
            if (sec.Link >= sections.Length || sections[sec.Link].Type != 3)
            {
                throw new InvalidDataException($"'{path}': version section links to section {sec.Link}, which is not a string table.");
            }

            return sections[sec.Link];
        }

        private static string CString(byte[] d, Section strtab, uint offset, string path)
        {
            if (offset >= strtab.Size)
            {
                throw new InvalidDataException($"'{path}': string offset {offset} lies outside its string table ({strtab.Size} bytes).");
            }

            ulong start = strtab.Offset + offset;
            ulong end = start;
            ulong limit = strtab.Offset + strtab.Size;
            while (end < limit && d[end] != 0)
            {
                end++;
            }

            if (end >= limit)
            {
                throw new InvalidDataException($"'{path}': unterminated string at offset {offset} of a string table.");
            }

            return Encoding.ASCII.GetString(d, checked((int)start), checked((int)(end - start)));
        }

        private static void Require(byte[] d, ulong offset, ulong length, string path, string what)
        {
            if (offset > (ulong)d.Length || length > (ulong)d.Length - offset)
            {
                throw new InvalidDataException($"'{path}' is truncated or corrupt: the {what} (offset {offset}, {length} bytes) lies beyond the end of the file ({d.Length} bytes).");
            }
        }

        private static ushort U16(byte[] d, ulong o) => (ushort)(d[o] | (d[o + 1] << 8));

        private static uint U32(byte[] d, ulong o) => (uint)(d[o] | (d[o + 1] << 8) | (d[o + 2] << 16) | (d[o + 3] << 24));

        private static ulong U64(byte[] d, ulong o) => U32(d, o) | ((ulong)U32(d, o + 4) << 32);
    }

#if !UNIAD_ELF_TESTS
    /// <summary>MSBuild task: weakens the GLIBCXX_3.4.32 need of the given native libraries when the system libstdc++ lacks it.</summary>
    public sealed class WeakenGlibcxxVersion : Task
    {
        /// <summary>The libLibTorchSharp.so copies to fix.</summary>
        [Required]
        public ITaskItem[] Files { get; set; } = Array.Empty<ITaskItem>();

        /// <summary>Optional libstdc++.so.6 to check instead of the system's.</summary>
        public string? LibStdCxxPath { get; set; }

        /// <summary>Weaken whatever the building machine's libstdc++ provides (the app may run on another machine).</summary>
        public bool Always { get; set; }

        /// <inheritdoc />
        public override bool Execute()
        {
            string? libstdcxx = Always ? null : string.IsNullOrEmpty(LibStdCxxPath) ? ElfVersionPatcher.FindSystemLibStdCxx() : LibStdCxxPath;
            if (libstdcxx != null)
            {
                try
                {
                    var defined = ElfVersionPatcher.ReadVersionDefinitions(File.ReadAllBytes(libstdcxx), libstdcxx);
                    if (defined.Contains(ElfVersionPatcher.GlibcxxVersion))
                    {
                        Log.LogMessage(MessageImportance.Low, "UniAD.Core: {0} provides {1}; TorchSharp's native library is left unchanged.", libstdcxx, ElfVersionPatcher.GlibcxxVersion);
                        return true;
                    }
                }
                catch (Exception ex) when (ex is IOException || ex is InvalidDataException || ex is UnauthorizedAccessException)
                {
                    Log.LogWarning("UniAD.Core: could not read the version definitions of {0} ({1}); assuming it lacks {2}.", libstdcxx, ex.Message, ElfVersionPatcher.GlibcxxVersion);
                }
            }

            foreach (var item in Files)
            {
                string file = item.GetMetadata("FullPath");
                try
                {
                    var outcome = ElfVersionPatcher.WeakenVersionNeed(file, ElfVersionPatcher.GlibcxxVersion);
                    var importance = outcome == WeakenOutcome.Weakened ? MessageImportance.High : MessageImportance.Low;
                    Log.LogMessage(importance, "UniAD.Core: {0}: {1} ({2} need in {3}; system libstdc++: {4}).", file, outcome, ElfVersionPatcher.GlibcxxVersion, Path.GetFileName(file), Always ? "not consulted (UniADGlibcxxPatch=always)" : libstdcxx ?? "not found");
                }
                catch (Exception ex) when (ex is IOException || ex is InvalidDataException || ex is UnauthorizedAccessException || ex is OverflowException)
                {
                    Log.LogError("UniAD.Core: cannot mark {0} weak in '{1}': {2}", ElfVersionPatcher.GlibcxxVersion, file, ex.Message);
                }
            }

            return !Log.HasLoggedErrors;
        }
    }
#endif
}
