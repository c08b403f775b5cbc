namespace UniAD.Core.Metrics;

/// <summary>
/// An append-only list of unmanaged values kept in fixed-size chunks, so that growing it never copies what is
/// already stored and never reserves more than one chunk beyond what it holds.
/// </summary>
internal sealed class ChunkedBuffer<T>
    where T : unmanaged
{
    private const int ChunkLength = 1 << 20;
    private readonly List<T[]> _chunks = [];
    private int _used = ChunkLength;

    public long Count { get; private set; }

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

    /// <summary>Copies every value, in insertion order, to the start of <paramref name="destination"/>.</summary>
    public void CopyTo(Span<T> destination)
    {
        int at = 0;
        for (int c = 0; c < _chunks.Count; c++)
        {
            int length = c == _chunks.Count - 1 ? _used : ChunkLength;
            _chunks[c].AsSpan(0, length).CopyTo(destination[at..]);
            at += length;
        }
    }

    public void Clear()
    {
        _chunks.Clear();
        _used = ChunkLength;
        Count = 0;
    }
}
