namespace UniAD.Core.Detection;

/// <summary>
/// One class's reference: the mean anomaly map of its normal images on a coarse grid. A map is divided by the grid
/// upsampled to the map's size (bilinear, half-pixel centres) plus <see cref="Epsilon"/>.
/// </summary>
/// <param name="ClassName">The class.</param>
/// <param name="Height">Grid rows.</param>
/// <param name="Width">Grid columns.</param>
/// <param name="Values">Row-major grid values (mean raw map, smoothed).</param>
/// <param name="Epsilon">Added to the reference before dividing.</param>
/// <param name="Images">Normal images averaged.</param>
public sealed record ClassReferenceMap(string ClassName, int Height, int Width, IReadOnlyList<float> Values, double Epsilon, int Images);
