namespace UniAD.Core.Data;

/// <summary>Splits that keep calibration and model selection away from the test split.</summary>
public static class DataSplits
{
    /// <summary>
    /// The default share of each class's normal training images held out for validation and calibration: 10 %.
    /// On MVTec-AD (60 to 391 training images per class) that holds out 6 to 39 images per class, about 360 in
    /// all: enough to estimate a 1 % false-alarm threshold over the pooled images and a validation loss, while
    /// the training set loses only a tenth of its images.
    /// </summary>
    public const double DefaultHoldoutFraction = 0.1;

    /// <summary>
    /// Holds out a seeded random part of the NORMAL images, class by class: each class with n normal images
    /// gives round(<paramref name="fraction"/> · n) of them (half away from zero) to the validation split, but
    /// at least 1 and at most n − 1 when n ≥ 2 and the fraction is positive, so that every class keeps a
    /// training and a held-out image where it can (a class with a single normal image keeps it for training).
    /// Both splits keep the source's order; together they are exactly its normal images, with none in both.
    /// Anomalous images of the source (if any) go to neither: training ignores them, and a validation split
    /// taken from training data must not borrow test images.
    /// </summary>
    /// <param name="source">The training images.</param>
    /// <param name="fraction">Share held out, in [0, 1); 0 holds out nothing.</param>
    /// <param name="seed">Seed of the choice; the same seed and source give the same split.</param>
    /// <returns>The remaining training images and the held-out normal images.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The fraction is not in [0, 1).</exception>
    /// <exception cref="InvalidDataException">The source has no normal image.</exception>
    public static (ImageSource Train, ImageSource Validation) HoldOutNormal(IImageSource source, double fraction = DefaultHoldoutFraction, long seed = 133)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (!(fraction >= 0 && fraction < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "The held-out fraction must lie in [0, 1).");
        }

        var normal = source.Samples.Where(s => !s.IsAnomalous).ToList();
        if (normal.Count == 0)
        {
            throw new InvalidDataException($"'{source.Name}' has no normal image to hold out for validation.");
        }

        var heldOut = new HashSet<ImageSample>(ReferenceEqualityComparer.Instance);
        var classes = normal.Select(s => s.ClassName).Distinct(StringComparer.Ordinal).ToList();
        for (int c = 0; c < classes.Count; c++)
        {
            var members = normal.Where(s => s.ClassName == classes[c]).ToList();
            int count = (int)Math.Round(fraction * members.Count, MidpointRounding.AwayFromZero);
            if (fraction > 0 && members.Count >= 2)
            {
                count = Math.Clamp(count, 1, members.Count - 1);
            }
            else if (members.Count < 2)
            {
                count = 0;
            }

            foreach (int i in SeededRandom.For(seed, 0x401D, c).Sample(members.Count, count))
            {
                heldOut.Add(members[i]);
            }
        }

        var skipped = source.Skipped;
        return (new ImageSource(source.Name, normal.Where(s => !heldOut.Contains(s)), skipped),
                new ImageSource($"{source.Name} (held-out normal training images)", normal.Where(heldOut.Contains), skipped));
    }
}
