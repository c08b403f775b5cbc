using System.Runtime.CompilerServices;

namespace UniAD.Core.Data;

/// <summary>The checks the data options share, with messages that name the option and its value.</summary>
internal static class OptionCheck
{
    /// <summary>Throws unless <paramref name="value"/> is positive.</summary>
    public static void Positive(long value, [CallerArgumentExpression(nameof(value))] string name = "")
    {
        if (value <= 0)
        {
            throw new ArgumentException($"{name} = {value} must be positive.", name);
        }
    }

    /// <summary>Throws unless <paramref name="value"/> is 0 (all cores) or positive.</summary>
    public static void Parallelism(int value, [CallerArgumentExpression(nameof(value))] string name = "")
    {
        if (value < 0)
        {
            throw new ArgumentException($"{name} = {value} must be 0 (all cores) or positive.", name);
        }
    }

    /// <summary>The degree of parallelism meant by an option value (0 = one per logical core).</summary>
    public static int Threads(int maxDegreeOfParallelism) => maxDegreeOfParallelism == 0 ? Environment.ProcessorCount : maxDegreeOfParallelism;
}
