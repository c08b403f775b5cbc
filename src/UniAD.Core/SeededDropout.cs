using System.Runtime.InteropServices;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core;

/// <summary>
/// A seeded source of dropout masks. On the CPU, libtorch draws one random number per element on a
/// single thread (24 ms for the 2.5 M attention weights of a paper-size batch of 8); this source fills
/// the mask in parallel with a counter-based SplitMix64 stream instead. The result is the same
/// distribution (keep with probability 1 − p, scale by 1 / (1 − p), p resolved to 2⁻³²) and is
/// reproducible for a given seed and call sequence.
/// </summary>
public sealed class DropoutRandom
{
    private const int Chunks = 64;
    private ulong seed;
    private long calls;

    /// <summary>Creates a source with the given seed.</summary>
    public DropoutRandom(long seed) => this.seed = unchecked((ulong)seed);

    /// <summary>Restarts the source as if it had just been created with <paramref name="newSeed"/>.</summary>
    public void Reseed(long newSeed)
    {
        seed = unchecked((ulong)newSeed);
        Interlocked.Exchange(ref calls, 0);
    }

    /// <summary>
    /// A float32 CPU tensor of <paramref name="shape"/> whose elements are 0 with probability
    /// <paramref name="p"/> and 1 / (1 − p) otherwise.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="p"/> is outside [0, 1).</exception>
    public unsafe Tensor Mask(long[] shape, double p)
    {
        if (!(p >= 0 && p < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(p), p, "The dropout probability must lie in [0, 1).");
        }

        var mask = empty(shape, dtype: ScalarType.Float32);
        long n = mask.numel();
        ulong call = unchecked((ulong)Interlocked.Increment(ref calls));
        uint threshold = (uint)Math.Min(uint.MaxValue, Math.Round(p * 4294967296.0));
        float keep = (float)(1.0 / (1.0 - p));
        fixed (byte* start = mask.bytes)
        {
            var data = (IntPtr)start;
            long per = ((n + Chunks - 1) / Chunks + 1) & ~1L;
            Parallel.For(0, Chunks, chunk =>
            {
                long from = chunk * per, to = Math.Min(n, from + per);
                ulong state = Mix(seed ^ Mix(call * 0xD1B54A32D192ED03UL + (ulong)chunk));
                var f = (float*)data;
                for (long i = from; i < to; i += 2)
                {
                    ulong z = Mix(state += 0x9E3779B97F4A7C15UL);
                    f[i] = (uint)z >= threshold ? keep : 0f;
                    if (i + 1 < to)
                    {
                        f[i + 1] = (uint)(z >> 32) >= threshold ? keep : 0f;
                    }
                }
            });
        }

        return mask;
    }

    /// <summary>Applies dropout to <paramref name="x"/>: a mask from this source on the CPU, libtorch's own dropout elsewhere.</summary>
    public Tensor Apply(Tensor x, double p)
    {
        if (p == 0)
        {
            return x.alias();
        }

        if (x.device_type != TorchSharp.DeviceType.CPU)
        {
            return F.dropout(x, p, training: true);
        }

        using var mask = Mask(x.shape, p);
        return x * (x.dtype == ScalarType.Float32 ? mask : mask.to(x.dtype));
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

/// <summary>Dropout driven by a <see cref="DropoutRandom"/>: identity in evaluation mode. Has no parameters.</summary>
public sealed class SeededDropout : Module<Tensor, Tensor>
{
    private readonly DropoutRandom random;

    /// <summary>Creates the layer.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="p"/> is outside [0, 1).</exception>
    public SeededDropout(double p, DropoutRandom random)
        : base(nameof(SeededDropout))
    {
        if (!(p >= 0 && p < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(p), p, "The dropout probability must lie in [0, 1).");
        }

        P = p;
        this.random = random ?? throw new ArgumentNullException(nameof(random));
    }

    /// <summary>The drop probability.</summary>
    public double P { get; }

    /// <inheritdoc />
    public override Tensor forward(Tensor input) => training && P > 0 ? random.Apply(input, P) : input.alias();
}
