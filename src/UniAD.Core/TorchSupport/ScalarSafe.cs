using TorchSharp;
using static TorchSharp.torch;

namespace UniAD.Core.TorchSupport;

/// <summary>
/// Tensor arithmetic that never hands libtorch a <see cref="Scalar"/> the garbage collector may free.
/// </summary>
/// <remarks>
/// TorchSharp 0.107 turns every .NET number given to an operator (<c>a + b</c> passes alpha = 1,
/// <c>a * 0.5</c>, <c>add_(b, alpha: x)</c>, ...) into a native <see cref="Scalar"/> that nothing disposes: its
/// finalizer frees it. The temporary is unreachable as soon as its handle has been read, so a garbage
/// collection started by another thread while the native operation runs can free the scalar under it;
/// libtorch then reads freed memory and fails ("Expected false to be true ... toFloat") or computes with
/// a wrong value. These helpers pass scalars that stay alive for the whole call: a cached one for 1, and
/// for other values one that is disposed only after the call returned.
/// </remarks>
internal static class ScalarSafe
{
    /// <summary>The integer 1, the alpha of plain additions; never disposed.</summary>
    private static readonly Scalar One = 1.ToScalar();

    /// <summary><c>a + b</c>.</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);

    /// <summary><c>a += b</c>, in place; returns <paramref name="a"/>'s new handle.</summary>
    public static Tensor PlusInPlace(this Tensor a, Tensor b) => a.add_(b, One);

    /// <summary><c>a += alpha · b</c>, in place.</summary>
    public static Tensor PlusScaledInPlace(this Tensor a, Tensor b, double alpha)
    {
        using var s = alpha.ToScalar();
        return a.add_(b, s);
    }

    /// <summary><c>a + value</c> element-wise.</summary>
    public static Tensor PlusScalar(this Tensor a, double value)
    {
        using var s = value.ToScalar();
        return a.add(s, One);
    }

    /// <summary><c>a += value</c> element-wise, in place.</summary>
    public static Tensor PlusScalarInPlace(this Tensor a, double value)
    {
        using var s = value.ToScalar();
        return a.add_(s, One);
    }

    /// <summary><c>a · factor</c>.</summary>
    public static Tensor Times(this Tensor a, double factor)
    {
        using var s = factor.ToScalar();
        return a.mul(s);
    }

    /// <summary><c>a *= factor</c>, in place.</summary>
    public static Tensor TimesInPlace(this Tensor a, double factor)
    {
        using var s = factor.ToScalar();
        return a.mul_(s);
    }

    /// <summary><c>a / divisor</c>.</summary>
    public static Tensor DividedBy(this Tensor a, double divisor)
    {
        using var s = divisor.ToScalar();
        return a.div(s);
    }

    /// <summary><c>a += value · t1 · t2</c>, in place.</summary>
    public static Tensor AddcmulInPlace(this Tensor a, Tensor t1, Tensor t2, double value)
    {
        using var s = value.ToScalar();
        return a.addcmul_(t1, t2, s);
    }

    /// <summary><c>a += value · t1 / t2</c>, in place.</summary>
    public static Tensor AddcdivInPlace(this Tensor a, Tensor t1, Tensor t2, double value)
    {
        using var s = value.ToScalar();
        return a.addcdiv_(t1, t2, s);
    }
}
