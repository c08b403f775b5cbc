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

/// <summary>The encoded image is larger than <see cref="AnomalyDetectorServiceOptions.MaxImageBytes"/> (HTTP 413 in the sample service).</summary>
public sealed class ImageTooLargeException : IOException
{
    /// <summary>Creates the exception for an image of <paramref name="length"/> bytes against a limit of <paramref name="limit"/>.</summary>
    public ImageTooLargeException(string? name, long length, long limit)
        : base($"'{name ?? "image"}': {length} bytes exceed the limit of {limit} bytes (UniAD:MaxImageBytes).")
    {
        Name = name;
        Length = length;
        Limit = limit;
    }

    /// <summary>The image's name, if given.</summary>
    public string? Name { get; }

    /// <summary>The image's size in bytes (at least the limit + 1 when the size was not known in advance).</summary>
    public long Length { get; }

    /// <summary>The limit in bytes.</summary>
    public long Limit { get; }
}
