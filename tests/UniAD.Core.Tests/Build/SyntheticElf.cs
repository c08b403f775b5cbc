using System.Text;

namespace UniAD.Core.Tests.Build;

/// <summary>One library a synthetic ELF file needs, with the version names (and their vna_flags) it asks for.</summary>
internal sealed record NeededLibrary(string Library, params (string Version, ushort Flags)[] Versions);

/// <summary>
/// Builds tiny 64-bit little-endian ELF files that hold nothing but the sections the version patcher
/// reads: a null section, .dynstr, optionally .gnu.version_r and .gnu.version_d, and .shstrtab.
/// The section header table comes last, so cutting the file short cuts the table.
/// </summary>
internal sealed class SyntheticElf
{
    public const int ElfHeaderSize = 64;
    public const int SectionHeaderSize = 64;
    public const uint ShtStrtab = 3;
    public const uint ShtGnuVerdef = 0x6ffffffd;
    public const uint ShtGnuVerneed = 0x6ffffffe;

    private SyntheticElf(byte[] bytes, Dictionary<string, long> flagsOffsets, long sectionHeaderOffset, int sectionCount, int verneedSectionIndex)
    {
        Bytes = bytes;
        FlagsOffsets = flagsOffsets;
        SectionHeaderOffset = sectionHeaderOffset;
        SectionCount = sectionCount;
        VerneedSectionIndex = verneedSectionIndex;
    }

    /// <summary>The whole file.</summary>
    public byte[] Bytes { get; }

    /// <summary>File offset of each needed version's vna_flags field, keyed by version name.</summary>
    public IReadOnlyDictionary<string, long> FlagsOffsets { get; }

    /// <summary>File offset of the section header table (e_shoff).</summary>
    public long SectionHeaderOffset { get; }

    /// <summary>Number of section headers (e_shnum).</summary>
    public int SectionCount { get; }

    /// <summary>Index of the .gnu.version_r section header, or -1 when the file has none.</summary>
    public int VerneedSectionIndex { get; }

    /// <summary>The file asking for libstdc++ GLIBCXX_3.4.30 and GLIBCXX_3.4.32 and libc GLIBC_2.34, as TorchSharp's library does (abridged).</summary>
    public static SyntheticElf TorchSharpLike(ushort glibcxx3432Flags = 0) => Build(
        new[]
        {
            new NeededLibrary("libstdc++.so.6", ("GLIBCXX_3.4.30", 0), ("GLIBCXX_3.4.32", glibcxx3432Flags)),
            new NeededLibrary("libc.so.6", ("GLIBC_2.34", 0)),
        },
        Array.Empty<string>());

    /// <summary>Builds a file with the given version needs (.gnu.version_r) and definitions (.gnu.version_d).</summary>
    public static SyntheticElf Build(IReadOnlyList<NeededLibrary> needs, IReadOnlyList<string> definitions)
    {
        var dynstr = new StringTable();
        foreach (var need in needs)
        {
            dynstr.Add(need.Library);
            foreach (var (version, _) in need.Versions)
            {
                dynstr.Add(version);
            }
        }

        foreach (var name in definitions)
        {
            dynstr.Add(name);
        }

        var file = new MemoryStream();
        var w = new BinaryWriter(file); // BinaryWriter always writes little-endian
        w.Write(new byte[ElfHeaderSize]); // patched at the end

        var sections = new List<SectionHeader> { new(0, 0, 0, 0, 0, 0, 0, 0) };
        var shstrtab = new StringTable();

        // .dynstr
        long dynstrOffset = file.Position;
        w.Write(dynstr.Bytes);
        int dynstrIndex = sections.Count;
        sections.Add(new SectionHeader(shstrtab.Add(".dynstr"), ShtStrtab, 2 /* SHF_ALLOC */, dynstrOffset, dynstr.Bytes.Length, 0, 0, 1));

        // .gnu.version_r: each Elf64_Verneed followed by its Elf64_Vernaux entries, as GNU ld lays them out.
        var flagsOffsets = new Dictionary<string, long>(StringComparer.Ordinal);
        int verneedIndex = -1;
        ushort nextVersionIndex = (ushort)(definitions.Count + 1);
        if (needs.Count > 0)
        {
            Align(w, 8);
            long start = file.Position;
            for (int i = 0; i < needs.Count; i++)
            {
                var need = needs[i];
                int entrySize = 16 + (16 * need.Versions.Length);
                w.Write((ushort)1);                           // vn_version
                w.Write((ushort)need.Versions.Length);        // vn_cnt
                w.Write(dynstr.Offset(need.Library));         // vn_file
                w.Write(16u);                                 // vn_aux
                w.Write(i == needs.Count - 1 ? 0u : (uint)entrySize); // vn_next
                for (int j = 0; j < need.Versions.Length; j++)
                {
                    var (version, flags) = need.Versions[j];
                    w.Write(ElfHash(version));                // vna_hash
                    flagsOffsets.Add(version, file.Position);
                    w.Write(flags);                           // vna_flags
                    w.Write(++nextVersionIndex);              // vna_other
                    w.Write(dynstr.Offset(version));          // vna_name
                    w.Write(j == need.Versions.Length - 1 ? 0u : 16u); // vna_next
                }
            }

            verneedIndex = sections.Count;
            sections.Add(new SectionHeader(shstrtab.Add(".gnu.version_r"), ShtGnuVerneed, 2, start, file.Position - start, (uint)dynstrIndex, (uint)needs.Count, 8));
        }

        // .gnu.version_d: Elf64_Verdef + one Elf64_Verdaux per definition; the first is the base (file) version.
        if (definitions.Count > 0)
        {
            Align(w, 8);
            long start = file.Position;
            for (int i = 0; i < definitions.Count; i++)
            {
                w.Write((ushort)1);                           // vd_version
                w.Write((ushort)(i == 0 ? 1 : 0));            // vd_flags (VER_FLG_BASE on the first)
                w.Write((ushort)(i + 1));                     // vd_ndx
                w.Write((ushort)1);                           // vd_cnt
                w.Write(ElfHash(definitions[i]));             // vd_hash
                w.Write(20u);                                 // vd_aux
                w.Write(i == definitions.Count - 1 ? 0u : 28u); // vd_next
                w.Write(dynstr.Offset(definitions[i]));       // vda_name
                w.Write(0u);                                  // vda_next
            }

            sections.Add(new SectionHeader(shstrtab.Add(".gnu.version_d"), ShtGnuVerdef, 2, start, file.Position - start, (uint)dynstrIndex, (uint)definitions.Count, 8));
        }

        // .shstrtab: its own name must be in it before its bytes are written.
        uint shstrtabName = shstrtab.Add(".shstrtab");
        long shstrtabOffset = file.Position;
        w.Write(shstrtab.Bytes);
        int shstrtabIndex = sections.Count;
        sections.Add(new SectionHeader(shstrtabName, ShtStrtab, 0, shstrtabOffset, shstrtab.Bytes.Length, 0, 0, 1));

        // Section header table.
        Align(w, 8);
        long shoff = file.Position;
        foreach (var s in sections)
        {
            w.Write(s.Name);
            w.Write(s.Type);
            w.Write(s.Flags);
            w.Write(0UL);                // sh_addr
            w.Write((ulong)s.Offset);
            w.Write((ulong)s.Size);
            w.Write(s.Link);
            w.Write(s.Info);
            w.Write(s.Align);
            w.Write(0UL);                // sh_entsize
        }

        // ELF header.
        w.Flush();
        file.Position = 0;
        w.Write(new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F', 2 /* ELFCLASS64 */, 1 /* ELFDATA2LSB */, 1 /* EV_CURRENT */, 0 /* ELFOSABI_NONE */ });
        w.Write(new byte[8]);            // EI_ABIVERSION + padding
        w.Write((ushort)3);              // e_type = ET_DYN
        w.Write((ushort)0x3e);           // e_machine = EM_X86_64
        w.Write(1u);                     // e_version
        w.Write(0UL);                    // e_entry
        w.Write(0UL);                    // e_phoff
        w.Write((ulong)shoff);           // e_shoff
        w.Write(0u);                     // e_flags
        w.Write((ushort)ElfHeaderSize);  // e_ehsize
        w.Write((ushort)0);              // e_phentsize
        w.Write((ushort)0);              // e_phnum
        w.Write((ushort)SectionHeaderSize); // e_shentsize
        w.Write((ushort)sections.Count); // e_shnum
        w.Write((ushort)shstrtabIndex);  // e_shstrndx
        w.Flush();

        return new SyntheticElf(file.ToArray(), flagsOffsets, shoff, sections.Count, verneedIndex);
    }

    /// <summary>The System V ELF hash (vna_hash / vd_hash).</summary>
    public static uint ElfHash(string name)
    {
        uint h = 0;
        foreach (byte c in Encoding.ASCII.GetBytes(name))
        {
            h = (h << 4) + c;
            uint g = h & 0xf0000000;
            if (g != 0)
            {
                h ^= g >> 24;
            }

            h &= ~g;
        }

        return h;
    }

    private static void Align(BinaryWriter w, int alignment)
    {
        while (w.BaseStream.Position % alignment != 0)
        {
            w.Write((byte)0);
        }
    }

    private sealed record SectionHeader(uint Name, uint Type, ulong Flags, long Offset, long Size, uint Link, uint Info, ulong Align);

    private sealed class StringTable
    {
        private readonly MemoryStream _bytes = new();
        private readonly Dictionary<string, uint> _offsets = new(StringComparer.Ordinal);

        public StringTable() => _bytes.WriteByte(0); // offset 0 is the empty string

        public byte[] Bytes => _bytes.ToArray();

        public uint Add(string s)
        {
            if (!_offsets.TryGetValue(s, out uint offset))
            {
                offset = (uint)_bytes.Length;
                byte[] encoded = Encoding.ASCII.GetBytes(s);
                _bytes.Write(encoded, 0, encoded.Length);
                _bytes.WriteByte(0);
                _offsets.Add(s, offset);
            }

            return offset;
        }

        public uint Offset(string s) => _offsets[s];
    }
}
