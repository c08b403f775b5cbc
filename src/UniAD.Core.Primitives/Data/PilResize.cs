using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace UniAD.Core.Data;

/// <summary>
/// PIL's resampling on 8-bit images, reproduced: BILINEAR is a separable triangle filter whose support
/// grows with the downscale factor (antialiasing), weights normalised per output pixel and turned into
/// 22-bit fixed point, a horizontal pass into an 8-bit intermediate image, then a vertical pass; NEAREST
/// picks source pixel floor((i + 0.5) · scale). Both work on the 4-byte RGBX layout of <see cref="RgbImage"/>
/// and use 128-bit vectors (one pixel's four channels, or four pixels of a row, at a time).
/// </summary>
internal static class PilResize
{
    // PIL: PRECISION_BITS = 32 - 8 - 2; products of an 8-bit value and a weight stay inside 32 bits.
    private const int PrecisionBits = 22;
    private const int Half = 1 << (PrecisionBits - 1);

    /// <summary>Resizes with PIL's BILINEAR filter; a pass whose size does not change is skipped, as in PIL.</summary>
    public static RgbImage Bilinear(RgbImage source, int width, int height)
    {
        if (width <= 0 || height <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(width), $"The target size must be positive, got {width} x {height}.");
        }

        byte[] current = source.Buffer;
        if (width != source.Width)
        {
            var taps = Taps.Bilinear(source.Width, width);
            var next = new byte[width * source.Height * 4];
            Horizontal(current, source.Width, source.Height, next, width, taps);
            current = next;
        }

        if (height != source.Height)
        {
            var taps = Taps.Bilinear(source.Height, height);
            var next = new byte[width * height * 4];
            Vertical(current, width, next, height, taps);
            current = next;
        }

        return ReferenceEquals(current, source.Buffer) ? source : new RgbImage(width, height, current);
    }

    /// <summary>Resizes a mask with PIL's NEAREST rule.</summary>
    public static BinaryMask Nearest(BinaryMask source, int width, int height)
    {
        if (width == source.Width && height == source.Height)
        {
            return source;
        }

        var columns = NearestIndices(source.Width, width);
        var rows = NearestIndices(source.Height, height);
        var values = new byte[width * height];
        for (int y = 0; y < height; y++)
        {
            var row = source.Values.AsSpan(rows[y] * source.Width, source.Width);
            var outRow = values.AsSpan(y * width, width);
            for (int x = 0; x < width; x++)
            {
                outRow[x] = row[columns[x]];
            }
        }

        return new BinaryMask(width, height, values);
    }

    internal static int[] NearestIndices(int inSize, int outSize)
    {
        double scale = (double)inSize / outSize;
        var index = new int[outSize];
        for (int i = 0; i < outSize; i++)
        {
            index[i] = Math.Min((int)Math.Floor((i + 0.5) * scale), inSize - 1);
        }

        return index;
    }

    private static void Horizontal(byte[] source, int inWidth, int rows, byte[] target, int outWidth, Taps taps)
    {
        for (int y = 0; y < rows; y++)
        {
            ref byte inRow = ref source[y * inWidth * 4];
            ref byte outRow = ref target[y * outWidth * 4];
            for (int x = 0; x < outWidth; x++)
            {
                int first = taps.First[x];
                int count = taps.Count[x];
                int offset = x * taps.Width;
                var sum = Vector128.Create(Half);
                for (int k = 0; k < count; k++)
                {
                    uint pixel = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref inRow, (first + k) * 4));
                    var channels = Vector128.WidenLower(Vector128.WidenLower(Vector128.CreateScalarUnsafe(pixel).AsByte()).AsUInt16()).AsInt32();
                    sum += channels * Vector128.Create(taps.Weights[offset + k]);
                }

                Unsafe.WriteUnaligned(ref Unsafe.Add(ref outRow, x * 4), ClipToBytes(sum).AsUInt32().ToScalar());
            }
        }
    }

    private static void Vertical(byte[] source, int width, byte[] target, int outHeight, Taps taps)
    {
        int rowBytes = width * 4;
        int vectorEnd = rowBytes - (rowBytes % 16);
        for (int y = 0; y < outHeight; y++)
        {
            int first = taps.First[y];
            int count = taps.Count[y];
            int offset = y * taps.Width;
            ref byte outRow = ref target[y * rowBytes];
            for (int i = 0; i < vectorEnd; i += 16)
            {
                var s0 = Vector128.Create(Half);
                var s1 = s0;
                var s2 = s0;
                var s3 = s0;
                for (int k = 0; k < count; k++)
                {
                    var bytes = Vector128.LoadUnsafe(ref source[((first + k) * rowBytes) + i]);
                    var weight = Vector128.Create(taps.Weights[offset + k]);
                    var (lo, hi) = Vector128.Widen(bytes);
                    var (a, b) = Vector128.Widen(lo);
                    var (c, d) = Vector128.Widen(hi);
                    s0 += a.AsInt32() * weight;
                    s1 += b.AsInt32() * weight;
                    s2 += c.AsInt32() * weight;
                    s3 += d.AsInt32() * weight;
                }

                var low = Vector128.Narrow(Clip(s0).AsUInt32(), Clip(s1).AsUInt32());
                var high = Vector128.Narrow(Clip(s2).AsUInt32(), Clip(s3).AsUInt32());
                Vector128.Narrow(low, high).StoreUnsafe(ref Unsafe.Add(ref outRow, i));
            }

            for (int i = vectorEnd; i < rowBytes; i++)
            {
                int sum = Half;
                for (int k = 0; k < count; k++)
                {
                    sum += source[((first + k) * rowBytes) + i] * taps.Weights[offset + k];
                }

                Unsafe.Add(ref outRow, i) = (byte)Math.Clamp(sum >> PrecisionBits, 0, 255);
            }
        }
    }

    private static Vector128<int> Clip(Vector128<int> sum) =>
        Vector128.Min(Vector128.Max(Vector128.ShiftRightArithmetic(sum, PrecisionBits), Vector128<int>.Zero), Vector128.Create(255));

    private static Vector128<byte> ClipToBytes(Vector128<int> sum)
    {
        var shorts = Vector128.Narrow(Clip(sum).AsUInt32(), Vector128<uint>.Zero);
        return Vector128.Narrow(shorts, Vector128<ushort>.Zero);
    }

    /// <summary>PIL's <c>precompute_coeffs</c> and <c>normalize_coeffs_8bpc</c> for one axis.</summary>
    internal sealed class Taps
    {
        private Taps(int width, int[] first, int[] count, int[] weights)
        {
            Width = width;
            First = first;
            Count = count;
            Weights = weights;
        }

        /// <summary>Room for weights per output pixel (PIL's <c>ksize</c>).</summary>
        public int Width { get; }

        /// <summary>First source index per output pixel.</summary>
        public int[] First { get; }

        /// <summary>Number of source pixels per output pixel.</summary>
        public int[] Count { get; }

        /// <summary>Fixed-point weights, <see cref="Width"/> per output pixel.</summary>
        public int[] Weights { get; }

        public static Taps Bilinear(int inSize, int outSize)
        {
            double scale = (double)inSize / outSize;
            double filterScale = Math.Max(scale, 1.0);
            double support = 1.0 * filterScale; // the triangle's support is 1
            int width = ((int)Math.Ceiling(support) * 2) + 1;
            var first = new int[outSize];
            var count = new int[outSize];
            var weights = new int[outSize * width];
            var raw = new double[width];
            double inverse = 1.0 / filterScale; // PIL multiplies by the reciprocal; dividing could round differently
            for (int i = 0; i < outSize; i++)
            {
                double center = (i + 0.5) * scale;
                int min = Math.Max((int)(center - support + 0.5), 0);
                int max = Math.Min((int)(center + support + 0.5), inSize);
                int n = max - min;
                double total = 0;
                for (int k = 0; k < n; k++)
                {
                    double t = Math.Abs((k + min - center + 0.5) * inverse);
                    raw[k] = t < 1.0 ? 1.0 - t : 0.0;
                    total += raw[k];
                }

                for (int k = 0; k < n; k++)
                {
                    double w = total != 0.0 ? raw[k] / total : raw[k];
                    double fixedPoint = w * (1 << PrecisionBits);
                    weights[(i * width) + k] = w < 0 ? (int)(fixedPoint - 0.5) : (int)(fixedPoint + 0.5);
                }

                first[i] = min;
                count[i] = n;
            }

            return new Taps(width, first, count, weights);
        }
    }
}
