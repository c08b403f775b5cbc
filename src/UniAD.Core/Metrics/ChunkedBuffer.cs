namespace UniAD.Core.Metrics;

/// <summary>
/// A list of unmanaged values kept in fixed-size chunks: growing it never copies what is already stored and never
/// reserves more than one chunk beyond what it holds, and it is not limited to one array's length.
/// </summary>
internal sealed class ChunkedBuffer<T>
    where T : unmanaged
{
    public const int ChunkShift = 20;
    public const int ChunkLength = 1 << ChunkShift;
    private const long OffsetMask = ChunkLength - 1;
    private List<T[]> _chunks = [];
    private int _used = ChunkLength;

    public long Count { get; private set; }

    public int ChunkCount => _chunks.Count;

    public T this[long index]
    {
        get => _chunks[(int)(index >> ChunkShift)][index & OffsetMask];
        set => _chunks[(int)(index >> ChunkShift)][index & OffsetMask] = value;
    }

    /// <summary>A buffer of <paramref name="count"/> values (contents unspecified), e.g. scratch space for a sort.</summary>
    public static ChunkedBuffer<T> OfLength(long count)
    {
        var buffer = new ChunkedBuffer<T>();
        for (long left = count; left > 0; left -= ChunkLength)
        {
            buffer._chunks.Add(GC.AllocateUninitializedArray<T>(ChunkLength));
        }

        buffer.Count = count;
        buffer._used = count == 0 ? ChunkLength : (int)(((count - 1) & OffsetMask) + 1);
        return buffer;
    }

    public void Add(T value)
    {
        if (_used == ChunkLength)
        {
            _chunks.Add(new T[ChunkLength]);
            _used = 0;
        }

        _chunks[^1][_used++] = value;
        Count++;
    }

    /// <summary>The chunk arrays themselves, for fast indexed writes (index &gt;&gt; <see cref="ChunkShift"/>, index &amp; (<see cref="ChunkLength"/> − 1)).</summary>
    public T[][] ChunkArrays() => [.. _chunks];

    /// <summary>The values of chunk <paramref name="chunk"/> (all chunks are full but the last).</summary>
    public Span<T> Chunk(int chunk) => _chunks[chunk].AsSpan(0, chunk == _chunks.Count - 1 ? _used : ChunkLength);

    /// <summary>Exchanges the contents of two buffers of the same length.</summary>
    public void SwapContents(ChunkedBuffer<T> other)
    {
        (_chunks, other._chunks) = (other._chunks, _chunks);
        (_used, other._used) = (other._used, _used);
        (Count, other.Count) = (other.Count, Count);
    }
}
