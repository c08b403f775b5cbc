using System.Runtime;
using UniAD.Core.Data;

namespace UniAD.Hosting;

/// <summary>
/// The memory a scorer may hold for decoded images at once (<see cref="AnomalyDetectorServiceOptions.MaxDecodedBytes"/>):
/// requests reserve their cost, read from the image's header before anything is decoded, and give it back when their
/// result is disposed (or, for a result nobody disposes, when the garbage collector finalises it). When the budget
/// empties after more than <see cref="CompactAbove"/> bytes were in use, the large-object heap is compacted and the
/// freed memory returned to the system, so that a burst of large images does not leave the process at its peak.
/// </summary>
public sealed class DecodedMemoryBudget
{
    /// <summary>
    /// Bytes charged per pixel: the decoded image (4: RGBA), the anomaly map at the image's size (4: float), its mask (1),
    /// the heat-map overlay (4: RGBA) and its PNG (2, typical). Encoded bytes are charged on top.
    /// </summary>
    public const int BytesPerPixel = 15;

    /// <summary>The smallest budget accepted (64 MiB).</summary>
    public const long MinimumBytes = 64L * 1024 * 1024;

    /// <summary>After a peak above this many bytes, an emptied budget returns memory to the system (256 MiB).</summary>
    public const long CompactAbove = 256L * 1024 * 1024;

    private readonly object gate = new();
    private long used;
    private long peakSinceCompaction;
    private int compactions;

    /// <summary>Creates a budget of <paramref name="capacity"/> bytes.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Less than <see cref="MinimumBytes"/>.</exception>
    public DecodedMemoryBudget(long capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, MinimumBytes);
        Capacity = capacity;
    }

    /// <summary>The budget in bytes.</summary>
    public long Capacity { get; }

    /// <summary>Bytes reserved now.</summary>
    public long Used
    {
        get
        {
            lock (gate)
            {
                return used;
            }
        }
    }

    /// <summary>How many times an emptied budget has returned memory to the system (counted when the compaction and trim are done).</summary>
    public int Compactions => Volatile.Read(ref compactions);

    /// <summary>
    /// The cost of an encoded image: its pixels (from the header) times <see cref="BytesPerPixel"/> plus its encoded bytes.
    /// An image whose header cannot be read costs its encoded bytes only (decoding it fails at once, with the reason).
    /// </summary>
    public static long Cost(ReadOnlyMemory<byte> encoded)
    {
        long pixels = ImageDecoder.ReadSize(encoded.Span) is { } size ? (long)size.Width * size.Height : 0;
        return (pixels * BytesPerPixel) + encoded.Length;
    }

    /// <summary>Reserves <paramref name="bytes"/> if they fit in what is left; the reservation gives them back when disposed or finalised.</summary>
    public bool TryReserve(long bytes, out Reservation? reservation)
    {
        lock (gate)
        {
            if (bytes > Capacity - used)
            {
                reservation = null;
                return false;
            }

            used += bytes;
            peakSinceCompaction = Math.Max(peakSinceCompaction, used);
        }

        reservation = new Reservation(this, bytes);
        return true;
    }

    /// <summary>Bytes free now.</summary>
    public long Available
    {
        get
        {
            lock (gate)
            {
                return Capacity - used;
            }
        }
    }

    /// <summary>A reservation at least this large (64 MiB) is given back only after a full garbage collection has freed its arrays.</summary>
    public const long CollectBeforeReuse = 64L * 1024 * 1024;

    private void Release(long bytes)
    {
        if (bytes >= CollectBeforeReuse)
        {
            // The arrays of a large image are garbage by now but still in the process: collect them before the next request
            // may allocate as much again, so that what the budget admits is what the process holds (off the caller's thread).
            ThreadPool.UnsafeQueueUserWorkItem(
                static state =>
                {
                    GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true);
                    state.Owner.Return(state.Bytes);
                },
                (Owner: this, Bytes: bytes),
                preferLocal: false);
            return;
        }

        Return(bytes);
    }

    private void Return(long bytes)
    {
        bool compact;
        lock (gate)
        {
            used -= bytes;
            compact = used == 0 && peakSinceCompaction > CompactAbove;
            if (compact)
            {
                peakSinceCompaction = 0;
            }
        }

        if (compact)
        {
            // Off the caller's thread (a finaliser or a request's completion); aggressive mode decommits what it frees.
            ThreadPool.UnsafeQueueUserWorkItem(
                static budget =>
                {
                    GCSettings.LargeObjectHeapCompactionMode = GCLargeObjectHeapCompactionMode.CompactOnce;
                    GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
                    UniAD.Core.Native.NativeAllocator.Trim(); // and the native heap's (Skia's bitmaps and encoders)
                    Interlocked.Increment(ref budget.compactions);
                },
                this,
                preferLocal: false);
        }
    }

    /// <summary>Bytes held for one request; disposing (or finalising) gives them back once.</summary>
    public sealed class Reservation : IDisposable
    {
        private DecodedMemoryBudget? owner;

        internal Reservation(DecodedMemoryBudget owner, long bytes)
        {
            this.owner = owner;
            Bytes = bytes;
        }

        /// <summary>Finalises an undisposed reservation: its bytes go back to the budget.</summary>
        ~Reservation() => Release();

        /// <summary>The bytes held.</summary>
        public long Bytes { get; }

        /// <inheritdoc />
        public void Dispose()
        {
            Release();
            GC.SuppressFinalize(this);
        }

        private void Release() => Interlocked.Exchange(ref owner, null)?.Release(Bytes);
    }
}
