namespace UniAD.Core;

/// <summary>A height x width pair: a feature-map size or an attention neighbourhood.</summary>
/// <param name="Height">Rows.</param>
/// <param name="Width">Columns.</param>
public readonly record struct GridSize(int Height, int Width)
{
    /// <summary>Height x width: the number of positions (tokens) of a map of this size.</summary>
    /// <exception cref="OverflowException">The product does not fit an int (sizes are validated long before that).</exception>
    public int Count => checked(Height * Width);

    /// <inheritdoc />
    public override string ToString() => $"{Height}x{Width}";
}
