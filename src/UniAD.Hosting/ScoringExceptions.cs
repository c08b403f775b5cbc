namespace UniAD.Hosting;

/// <summary>
/// The scorer cannot take the request now: it is not running (stopped, or stopping and refusing new work), or its
/// queue is full (<see cref="ScoringQueueFullException"/>). A service answers HTTP 503; the request may be retried.
/// </summary>
public class ScorerUnavailableException : Exception
{
    /// <summary>Creates the exception with its message.</summary>
    public ScorerUnavailableException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with its message and cause.</summary>
    public ScorerUnavailableException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>
/// The scorer's bounded queue (<see cref="AnomalyDetectorServiceOptions.QueueCapacity"/>) is full: the request was
/// refused at once rather than queued without bound. Retry later (HTTP 503 with Retry-After in the sample service).
/// </summary>
public sealed class ScoringQueueFullException : ScorerUnavailableException
{
    /// <summary>Creates the exception for a queue of <paramref name="capacity"/> requests.</summary>
    public ScoringQueueFullException(int capacity)
        : base($"The scoring queue is full ({capacity} requests waiting, UniAD:QueueCapacity); retry later.")
    {
        Capacity = capacity;
    }

    /// <summary>The queue's capacity.</summary>
    public int Capacity { get; }
}

/// <summary>
/// The scorer's decoded-memory budget (<see cref="AnomalyDetectorServiceOptions.MaxDecodedBytes"/>) has too little left for
/// this image now: it was refused at once rather than decoded. Retry later (HTTP 503 with Retry-After in the sample service).
/// </summary>
public sealed class ScoringMemoryBusyException : ScorerUnavailableException
{
    /// <summary>Creates the exception for a request of <paramref name="needed"/> bytes when <paramref name="available"/> of <paramref name="budget"/> are free.</summary>
    public ScoringMemoryBusyException(string? name, long needed, long available, long budget)
        : base($"'{name ?? "image"}' needs about {needed:N0} bytes decoded; {available:N0} of the {budget:N0} bytes of UniAD:MaxDecodedBytes are free now; retry later.")
    {
        Needed = needed;
        Available = available;
    }

    /// <summary>The bytes the request would hold decoded.</summary>
    public long Needed { get; }

    /// <summary>The bytes free in the budget when it was refused.</summary>
    public long Available { get; }
}

/// <summary>
/// The image is larger than a limit: its encoded bytes exceed <see cref="AnomalyDetectorServiceOptions.MaxImageBytes"/>, or
/// decoded it would need more than the whole <see cref="AnomalyDetectorServiceOptions.MaxDecodedBytes"/> (HTTP 413 in the
/// sample service).
/// </summary>
public sealed class ImageTooLargeException : IOException
{
    /// <summary>Creates the exception for an image of <paramref name="length"/> bytes against a limit of <paramref name="limit"/>.</summary>
    public ImageTooLargeException(string? name, long length, long limit)
        : this(name, length, limit, nameof(AnomalyDetectorServiceOptions.MaxImageBytes))
    {
    }

    /// <summary>Creates the exception for <paramref name="length"/> bytes against the limit <paramref name="limit"/> of the setting <paramref name="setting"/>.</summary>
    public ImageTooLargeException(string? name, long length, long limit, string setting)
        : base(setting == nameof(AnomalyDetectorServiceOptions.MaxImageBytes)
            ? $"'{name ?? "image"}': {length} bytes exceed the limit of {limit} bytes (UniAD:MaxImageBytes)."
            : $"'{name ?? "image"}': decoded it needs about {length:N0} bytes, more than the whole budget of {limit:N0} bytes (UniAD:{setting}).")
    {
        Name = name;
        Length = length;
        Limit = limit;
        Setting = setting;
    }

    /// <summary>The setting whose limit was passed: <c>MaxImageBytes</c> (encoded bytes) or <c>MaxDecodedBytes</c> (decoded).</summary>
    public string Setting { get; }

    /// <summary>The image's name, if given.</summary>
    public string? Name { get; }

    /// <summary>The image's size in bytes, encoded or decoded as <see cref="Setting"/> says (at least the limit + 1 when the size was not known in advance).</summary>
    public long Length { get; }

    /// <summary>The limit in bytes.</summary>
    public long Limit { get; }
}
