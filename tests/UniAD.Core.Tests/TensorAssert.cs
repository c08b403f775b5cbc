using Xunit.Sdk;
using static TorchSharp.torch;

namespace UniAD.Core.Tests;

/// <summary>Tensor comparisons with the tolerances the parity issue fixes.</summary>
public static class TensorAssert
{
    /// <summary>Every element within <paramref name="atol"/> absolute OR <paramref name="rtol"/> relative (|a − e| ≤ max(atol, rtol·|e|)).</summary>
    public static double Close(Tensor actual, Tensor expected, double atol, double rtol, string what)
    {
        SameShape(actual, expected, what);
        using var scope = NewDisposeScope();
        var a = actual.detach().to(float64).cpu();
        var e = expected.detach().to(float64).cpu();
        var diff = (a - e).abs();
        var allowed = maximum(e.abs() * rtol, tensor(atol, float64));
        var worst = (diff - allowed).max().item<double>();
        var maxDiff = diff.max().item<double>();
        if (worst > 0 || double.IsNaN(maxDiff))
        {
            var index = (diff - allowed).argmax().item<long>();
            throw new XunitException($"{what}: max |diff| = {maxDiff:E3} exceeds atol {atol:E1} / rtol {rtol:E1} (worst flat index {index}: actual {a.flatten()[index].item<double>():G9}, expected {e.flatten()[index].item<double>():G9}).");
        }

        return maxDiff;
    }

    /// <summary>max |a − e| ≤ <paramref name="relative"/> · max |e|: the gradient tolerance.</summary>
    public static double CloseToMax(Tensor actual, Tensor expected, double relative, string what)
    {
        SameShape(actual, expected, what);
        using var scope = NewDisposeScope();
        var a = actual.detach().to(float64).cpu();
        var e = expected.detach().to(float64).cpu();
        var maxDiff = (a - e).abs().max().item<double>();
        var scale = e.abs().max().item<double>();
        if (!(maxDiff <= relative * scale) && !(scale == 0 && maxDiff == 0))
        {
            throw new XunitException($"{what}: max |diff| = {maxDiff:E3} exceeds {relative:E1} x max |expected| = {relative * scale:E3}.");
        }

        return scale == 0 ? 0 : maxDiff / scale;
    }

    private static void SameShape(Tensor actual, Tensor expected, string what)
    {
        if (!actual.shape.SequenceEqual(expected.shape))
        {
            throw new XunitException($"{what}: shape [{string.Join(", ", actual.shape)}] differs from expected [{string.Join(", ", expected.shape)}].");
        }
    }
}
