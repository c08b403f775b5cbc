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
        catch (AggregateException aggregate)
        {
            var inner = aggregate.Flatten().InnerExceptions;
            if (inner.Count > 0)
            {
                ExceptionDispatchInfo.Capture(inner[0]).Throw();
            }

            throw;
        }
    }

    /// <summary><see cref="Parallel.For(int, int, Action{int})"/>, unwrapped.</summary>
    public static void For(int count, Action<int> body) => For(count, new ParallelOptions(), body);
}
