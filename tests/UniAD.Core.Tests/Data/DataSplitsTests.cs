using UniAD.Core.Data;

namespace UniAD.Core.Tests.Data;

public sealed class DataSplitsTests
{
    // Class a: 20 normal images, b: 3, c: 1; and two anomalous images (which neither split may take).
    private static ImageSource Source() => new("train", Enumerable.Range(0, 20).Select(i => Normal("a", i))
        .Concat(Enumerable.Range(0, 3).Select(i => Normal("b", i)))
        .Append(Normal("c", 0))
        .Append(new ImageSample("/data/a/bad0.png", "/data/a/bad0_mask.png", ImageSample.Anomalous, "a", "crack"))
        .Append(new ImageSample("/data/b/bad1.png", null, ImageSample.Anomalous, "b", "crack")));

    private static ImageSample Normal(string className, int i) => new($"/data/{className}/{i:D3}.png", null, ImageSample.Normal, className, ImageSample.Good);

    [Fact]
    public void Hold_out_is_stratified_disjoint_complete_and_keeps_the_order()
    {
        var source = Source();
        var (train, validation) = DataSplits.HoldOutNormal(source, 0.1, seed: 5);
        // a: round(0.1 x 20) = 2; b: round(0.3) = 0, raised to 1 so that b is validated; c: its only image trains.
        Assert.Equal(new[] { ("a", 2), ("b", 1) }, validation.Samples.GroupBy(s => s.ClassName).Select(g => (g.Key, g.Count())));
        Assert.Equal(new[] { ("a", 18), ("b", 2), ("c", 1) }, train.Samples.GroupBy(s => s.ClassName).Select(g => (g.Key, g.Count())));
        Assert.Empty(train.Samples.Intersect(validation.Samples));
        var normal = source.Samples.Where(s => !s.IsAnomalous).ToList();
        Assert.Equal(normal.Order(Comparer<ImageSample>.Create((x, y) => string.CompareOrdinal(x.ImagePath, y.ImagePath))),
            train.Samples.Concat(validation.Samples).Order(Comparer<ImageSample>.Create((x, y) => string.CompareOrdinal(x.ImagePath, y.ImagePath))));
        Assert.All(train.Samples.Concat(validation.Samples), s => Assert.False(s.IsAnomalous));
        Assert.Equal(train.Samples, normal.Where(s => train.Samples.Contains(s)));
        Assert.Equal(validation.Samples, normal.Where(s => validation.Samples.Contains(s)));
        Assert.Contains("held-out", validation.Name, StringComparison.Ordinal);
    }

    [Fact]
    public void Hold_out_is_seeded_and_respects_the_fraction()
    {
        var source = Source();
        var first = DataSplits.HoldOutNormal(source, 0.25, seed: 9).Validation.Samples;
        Assert.Equal(first, DataSplits.HoldOutNormal(source, 0.25, seed: 9).Validation.Samples);
        var others = Enumerable.Range(10, 5).Select(seed => DataSplits.HoldOutNormal(source, 0.25, seed).Validation.Samples).ToList();
        Assert.Contains(others, o => !o.SequenceEqual(first));
        // a: 5 of 20; b: round(0.75) = 1; c: 0.
        Assert.Equal(5, first.Count(s => s.ClassName == "a"));
        Assert.Equal(1, first.Count(s => s.ClassName == "b"));
        Assert.Equal(10, DataSplits.HoldOutNormal(source, 0.5, seed: 1).Validation.Samples.Count(s => s.ClassName == "a"));
        // 0.95 of b's 3 would leave none for training: at most n - 1.
        Assert.Equal(2, DataSplits.HoldOutNormal(source, 0.95, seed: 1).Validation.Samples.Count(s => s.ClassName == "b"));
        Assert.Equal(0.1, DataSplits.DefaultHoldoutFraction);
        Assert.Equal(3, DataSplits.HoldOutNormal(source).Validation.Samples.Count);

        var (all, none) = DataSplits.HoldOutNormal(source, 0, seed: 1);
        Assert.Empty(none.Samples);
        Assert.Equal(24, all.Samples.Count);
    }

    [Fact]
    public void Bad_fractions_and_sources_without_normal_images_are_rejected()
    {
        var source = Source();
        Assert.Contains("fraction", Assert.Throws<ArgumentOutOfRangeException>(() => DataSplits.HoldOutNormal(source, 1.0)).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => DataSplits.HoldOutNormal(source, -0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => DataSplits.HoldOutNormal(source, double.NaN));
        var defects = source.Where(s => s.IsAnomalous);
        Assert.Contains("train", Assert.Throws<InvalidDataException>(() => DataSplits.HoldOutNormal(defects)).Message, StringComparison.Ordinal);
    }
}
