using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace UniAD.Core.TorchSupport;

/// <summary>
/// A seeded source of dropout masks. On the CPU, libtorch draws one random number per element on a
/// single thread (24 ms for the 2.5 M attention weights of a paper-size batch of 8); this source fills
/// the mask with a counter-based SplitMix64 stream instead (64 independent chunk streams, 8 draws at a
/// time with AVX-512 or 4 with AVX2, about 0.4 ms for those 2.5 M weights with AVX-512). The result is the same
/// distribution (keep with probability 1 − p, scale by 1 / (1 − p), p resolved to 2⁻³²) and is
/// reproducible for a given seed and call sequence.
/// </summary>
public sealed class DropoutRandom
{
    private const int Chunks = 64;
    private const ulong Gamma = 0x9E3779B97F4A7C15UL;
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

        var mask = empty(shape, dtype: ScalarType.Float32, device: CPU); // filled through .bytes: always on the CPU
        long n = mask.numel();
        ulong call = unchecked((ulong)Interlocked.Increment(ref calls));
        uint threshold = (uint)Math.Min(uint.MaxValue, Math.Round(p * 4294967296.0));
        float keep = (float)(1.0 / (1.0 - p));
        fixed (byte* start = mask.bytes)
        {
            var data = start;
            long per = ((n + Chunks - 1) / Chunks + 1) & ~1L;
            // The chunks are filled one after another: vectorized, the fill is bound by memory
            // bandwidth (about 0.4 ms for 2.5 M elements on one core), and handing chunks to the
            // thread pool only competes with libtorch's own (spinning) worker threads.
            for (int chunk = 0; chunk < Chunks; chunk++)
            {
                long from = chunk * per, to = Math.Min(n, from + per);
                ulong state = Mix(seed ^ Mix(call * 0xD1B54A32D192ED03UL + (ulong)chunk));
                Fill((float*)data, from, to, state, threshold, keep, FastestVectorBits);
            }
        }

        return mask;
    }

    /// <summary>Applies dropout to <paramref name="x"/> with a mask from this source, drawn on the CPU and moved to <paramref name="x"/>'s device.</summary>
    public Tensor Apply(Tensor x, double p)
    {
        if (p == 0)
        {
            return x.alias();
        }

        // Off the CPU too the mask comes from this seeded stream, drawn on the CPU and copied to the device: libtorch's
        // own CUDA dropout would draw from the device's global generator, which no seed of this library reaches, so a
        // seeded or resumed GPU run would not repeat. The copy costs 4 bytes per element per call (about 10 MB for the
        // attention weights of a paper-size batch of 8), small next to a GPU step's own traffic.
        using var mask = Mask(x.shape, p);
        if (x.device_type != TorchSharp.DeviceType.CPU)
        {
            using var onDevice = mask.to(x.dtype).to(x.device);
            return x * onDevice;
        }

        return x * (x.dtype == ScalarType.Float32 ? mask : mask.to(x.dtype));
    }

    /// <summary>The widest vector path this CPU runs in hardware: 512 (AVX-512), 256 (AVX2) or 0 (scalar).</summary>
    internal static int FastestVectorBits { get; } =
        Vector512.IsHardwareAccelerated ? 512 : Vector256.IsHardwareAccelerated ? 256 : 0;

    /// <summary>
    /// Fills <c>f[from..to)</c> from one SplitMix64 stream: the k-th 64-bit draw (state advanced by the
    /// golden gamma before each draw) decides elements <c>from + 2k</c> (its low 32 bits) and
    /// <c>from + 2k + 1</c> (its high 32 bits). <paramref name="vectorBits"/> 512 draws 8 values at a time,
    /// 256 draws 4, 0 is scalar; all three produce exactly the same elements (little-endian lane order; a path the
    /// CPU lacks still runs, in software, which is how tests check every path on any machine).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void Fill(float* f, long from, long to, ulong state, uint threshold, float keep, int vectorBits)
    {
        long i = from;
        if (vectorBits == 512 && BitConverter.IsLittleEndian)
        {
            var gamma = Vector512.Create(Gamma);
            var lanes = Vector512.Create(1UL, 2UL, 3UL, 4UL, 5UL, 6UL, 7UL, 8UL);
            var s = Vector512.Create(state) + (lanes * gamma);
            var advance = Vector512.Create(unchecked(8 * Gamma));
            var limit = Vector512.Create(threshold);
            var kept = Vector512.Create(keep);
            for (; i + 16 <= to; i += 16)
            {
                var z = Mix(s);
                s += advance;
                var keepLane = Vector512.GreaterThanOrEqual(z.AsUInt32(), limit).AsSingle();
                Vector512.BitwiseAnd(keepLane, kept).Store(f + i);
            }

            state += (ulong)((i - from) / 2) * Gamma;
        }
        else if (vectorBits == 256 && BitConverter.IsLittleEndian)
        {
            // CPUs without AVX-512 (AVX2): 4 draws, 8 elements at a time, the same stream.
            var gamma = Vector256.Create(Gamma);
            var lanes = Vector256.Create(1UL, 2UL, 3UL, 4UL);
            var s = Vector256.Create(state) + (lanes * gamma);
            var advance = Vector256.Create(unchecked(4 * Gamma));
            var limit = Vector256.Create(threshold);
            var kept = Vector256.Create(keep);
            for (; i + 8 <= to; i += 8)
            {
                var z = Mix(s);
                s += advance;
                var keepLane = Vector256.GreaterThanOrEqual(z.AsUInt32(), limit).AsSingle();
                Vector256.BitwiseAnd(keepLane, kept).Store(f + i);
            }

            state += (ulong)((i - from) / 2) * Gamma;
        }

        for (; i < to; i += 2)
        {
            ulong z = Mix(state += Gamma);
            f[i] = (uint)z >= threshold ? keep : 0f;
            if (i + 1 < to)
            {
                f[i + 1] = (uint)(z >> 32) >= threshold ? keep : 0f;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ulong> Mix(Vector512<ulong> z)
    {
        z = (z ^ Vector512.ShiftRightLogical(z, 30)) * Vector512.Create(0xBF58476D1CE4E5B9UL);
        z = (z ^ Vector512.ShiftRightLogical(z, 27)) * Vector512.Create(0x94D049BB133111EBUL);
        return z ^ Vector512.ShiftRightLogical(z, 31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ulong> Mix(Vector256<ulong> z)
    {
        z = (z ^ Vector256.ShiftRightLogical(z, 30)) * Vector256.Create(0xBF58476D1CE4E5B9UL);
        z = (z ^ Vector256.ShiftRightLogical(z, 27)) * Vector256.Create(0x94D049BB133111EBUL);
        return z ^ Vector256.ShiftRightLogical(z, 31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
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
