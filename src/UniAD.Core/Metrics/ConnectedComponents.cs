namespace UniAD.Core.Metrics;

/// <summary>Connected components of a binary image with 8-connectivity (a 3 x 3 structuring element, as SciPy's label with a full structure).</summary>
internal static class ConnectedComponents
{
    /// <summary>
    /// Writes 0 for each normal pixel and the 1-based component number for each anomalous pixel into
    /// <paramref name="labels"/>, appends each component's size to <paramref name="sizes"/> and returns the
    /// number of components. Components are numbered in raster order of their first pixel.
    /// </summary>
    /// <param name="anomalous">Row-major height x width image.</param>
    /// <param name="height">Rows.</param>
    /// <param name="width">Columns.</param>
    /// <param name="labels">Output, height x width.</param>
    /// <param name="stack">Scratch, height x width.</param>
    /// <param name="sizes">Receives one size per component.</param>
    public static int Label8(ReadOnlySpan<bool> anomalous, int height, int width, Span<int> labels, Span<int> stack, List<int> sizes)
    {
        labels[..anomalous.Length].Clear();
        int components = 0;
        for (int start = 0; start < anomalous.Length; start++)
        {
            if (!anomalous[start] || labels[start] != 0)
            {
                continue;
            }

            int label = ++components, size = 0, top = 0;
            labels[start] = label;
            stack[top++] = start;
            while (top > 0)
            {
                int p = stack[--top];
                size++;
                int y = p / width, x = p - (y * width);
                for (int ny = Math.Max(0, y - 1); ny <= Math.Min(height - 1, y + 1); ny++)
                {
                    for (int nx = Math.Max(0, x - 1); nx <= Math.Min(width - 1, x + 1); nx++)
                    {
                        int q = (ny * width) + nx;
                        if (anomalous[q] && labels[q] == 0)
                        {
                            labels[q] = label;
                            stack[top++] = q;
                        }
                    }
                }
            }

            sizes.Add(size);
        }

        return components;
    }
}
