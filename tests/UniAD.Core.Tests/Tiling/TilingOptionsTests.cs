using UniAD.Core.Tiling;

namespace UniAD.Core.Tests.Tiling;

public sealed class TilingOptionsTests
{
    private static readonly GridSize Tile = new(224, 224);

    public static TheoryData<TilingOptions, string> Impossible => new()
    {
        { new TilingOptions { Stride = new GridSize(0, 160) }, "Stride = 0x160" },
        { new TilingOptions { Stride = new GridSize(160, 225) }, "Stride = 160x225" },
        { new TilingOptions { ResizeWidth = 223 }, "ResizeWidth = 223" },
        { new TilingOptions { ResizeWidth = 0 }, "ResizeWidth = 0" },
        { new TilingOptions { ResizeWidth = 40_000 }, "ResizeWidth = 40000" },
        { new TilingOptions { ResizeTo = new GridSize(1000, 200) }, "ResizeTo = 1000x200" },
        { new TilingOptions { ResizeTo = new GridSize(-1, 500) }, "ResizeTo = -1x500" },
        { new TilingOptions { ResizeWidth = 448, ResizeTo = new GridSize(448, 448) }, "exclude each other" },
        { new TilingOptions { Placement = (TilePlacement)7 }, "Placement = 7" },
        { new TilingOptions { MaxPixels = 1000 }, "MaxPixels = 1000" },
        { new TilingOptions { ResizeTo = new GridSize(2000, 2000), MaxPixels = 1_000_000 }, "ResizeTo = 2000x2000" },
        { new TilingOptions { MaxTilesPerImage = 0 }, "MaxTilesPerImage = 0" },
    };

    [Theory]
    [MemberData(nameof(Impossible))]
    public void Impossible_values_are_refused_by_name_and_value(TilingOptions options, string expected) =>
        Assert.Contains(expected, Assert.Throws<ArgumentException>(() => options.Validate(Tile)).Message);

    [Fact]
    public void Sensible_values_pass()
    {
        new TilingOptions().Validate(Tile);
        new TilingOptions { Stride = new GridSize(1, 224), ResizeWidth = 224 }.Validate(Tile);
        new TilingOptions { Stride = new GridSize(160, 160), ResizeTo = new GridSize(1120, 448), Placement = TilePlacement.Spread }.Validate(Tile);
        Assert.Equal(Tile, new TilingOptions().StrideFor(Tile));
    }

    [Fact]
    public void Working_size_resizes_keeping_the_aspect_and_enlarges_images_smaller_than_a_tile()
    {
        var kolektor = new GridSize(1250, 500);
        Assert.Equal(kolektor, new TilingOptions().WorkingSize(kolektor, Tile));
        Assert.Equal(new GridSize(1120, 448), new TilingOptions { ResizeWidth = 448 }.WorkingSize(kolektor, Tile));
        Assert.Equal(new GridSize(1153, 448), new TilingOptions { ResizeWidth = 448 }.WorkingSize(new GridSize(1287, 500), Tile)); // 1153.15
        Assert.Equal(new GridSize(300, 400), new TilingOptions { ResizeTo = new GridSize(300, 400) }.WorkingSize(kolektor, Tile));
        Assert.Equal(new GridSize(224, 448), new TilingOptions().WorkingSize(new GridSize(100, 200), Tile));      // enlarged x 2.24
        Assert.Equal(new GridSize(224, 1116), new TilingOptions { ResizeWidth = 448 }.WorkingSize(new GridSize(500, 2500), Tile)); // 448 x 90 is too low: enlarged x 2.49
        Assert.Equal(24, new TilingOptions { Stride = new GridSize(160, 160) }.GridFor(kolektor, Tile).Count);
    }
}
