using System.Runtime.ExceptionServices;

namespace UniAD.Core.Data;

/// <summary>
/// Parallel loops that fail like sequential ones: an exception thrown inside <see cref="Parallel"/>'s body reaches the
/// caller as itself (the first one, with its stack trace), not wrapped in an <see cref="AggregateException"/>, so the
/// documented exception types (a missing native library, a cancelled token, a bad file) hold for parallel code too.
/// </summary>
internal static class ParallelLoops
{
    /// <summary><see cref="Parallel.For(int, int, ParallelOptions, Action{int})"/>, unwrapped.</summary>
    public static void For(int count, ParallelOptions options, Action<int> body)
    {
        try
        {
            Parallel.For(0, count, options, body);
        }
        catch (AggregateException aggregate) when (aggregate.Flatten().InnerExceptions.Count > 0)
        {
            ExceptionDispatchInfo.Capture(aggregate.Flatten().InnerExceptions[0]).Throw();
            throw; // not reached
        }
    }

    /// <summary><see cref="Parallel.For(int, int, Action{int})"/>, unwrapped.</summary>
    public static void For(int count, Action<int> body) => For(count, new ParallelOptions(), body);
}
