using UniAD.Core.Tiling;

namespace UniAD.Core.Tests.Tiling;

public sealed class TileGridTests
{
    [Theory]
    [InlineData(500, 224, 160, new[] { 0, 160, 276 })]                               // KolektorSDD's width: 2 full strides do not fit, the third tile is shifted back
    [InlineData(1250, 224, 160, new[] { 0, 160, 320, 480, 640, 800, 960, 1026 })]    // KolektorSDD's height
    [InlineData(224, 224, 160, new[] { 0 })]                                         // exactly one tile
    [InlineData(225, 224, 224, new[] { 0, 1 })]                                      // one pixel more: a second tile, almost on top of the first
    [InlineData(256, 64, 64, new[] { 0, 64, 128, 192 })]                             // a whole number of tiles, no overlap, no shift
    [InlineData(10, 4, 3, new[] { 0, 3, 6 })]                                        // a whole number of strides: the last tile already ends at the border
    [InlineData(11, 4, 3, new[] { 0, 3, 6, 7 })]
    public void Shift_last_offsets_step_by_the_stride_and_end_flush_with_the_border(int length, int tile, int stride, int[] expected) =>
        Assert.Equal(expected, TileGrid.Offsets(length, tile, stride, TilePlacement.ShiftLast));

    [Theory]
    [InlineData(500, 224, 160, new[] { 0, 138, 276 })]
    [InlineData(11, 4, 3, new[] { 0, 2, 5, 7 })]      // 7/3 = 2.33 apart, rounded
    [InlineData(224, 224, 1, new[] { 0 })]
    public void Spread_offsets_have_the_same_count_spread_evenly(int length, int tile, int stride, int[] expected) =>
        Assert.Equal(expected, TileGrid.Offsets(length, tile, stride, TilePlacement.Spread));

    [Fact]
    public void Every_grid_covers_the_image_with_steps_of_at_most_the_stride()
    {
        var random = new Random(5);
        for (int trial = 0; trial < 2000; trial++)
        {
            int tile = random.Next(1, 40);
            int length = tile + random.Next(0, 200);
            int stride = random.Next(1, tile + 1);
            foreach (var placement in Enum.GetValues<TilePlacement>())
            {
                var offsets = TileGrid.Offsets(length, tile, stride, placement);
                string what = $"length {length}, tile {tile}, stride {stride}, {placement}: [{string.Join(", ", offsets)}]";
                Assert.True(offsets[0] == 0, what);
                Assert.True(offsets[^1] == length - tile, what);
                Assert.True(offsets.Length == ((length - tile + stride - 1) / stride) + 1, what);
                for (int i = 1; i < offsets.Length; i++)
                {
                    Assert.True(offsets[i] > offsets[i - 1] && offsets[i] - offsets[i - 1] <= stride, what); // no gap: each step at most the stride (<= tile)
                }
            }
        }
    }

    [Fact]
    public void Grid_lists_tiles_row_major_and_counts_rows_times_columns()
    {
        var grid = TileGrid.Create(new GridSize(1250, 500), new GridSize(224, 224), new GridSize(160, 160));
        Assert.Equal(8 * 3, grid.Count);
        var tiles = grid.Tiles.ToList();
        Assert.Equal(24, tiles.Count);
        Assert.Equal(new TileRect(0, 0, 224, 224), tiles[0]);
        Assert.Equal(new TileRect(160, 0, 224, 224), tiles[1]);
        Assert.Equal(new TileRect(276, 0, 224, 224), tiles[2]);
        Assert.Equal(new TileRect(0, 160, 224, 224), tiles[3]);
        Assert.Equal(new TileRect(276, 1026, 224, 224), tiles[^1]);
        Assert.All(Enumerable.Range(0, grid.Count), i => Assert.Equal(tiles[i], grid[i]));

        // Every pixel is covered, the corners by exactly one tile.
        var cover = new int[1250, 500];
        foreach (var t in tiles)
        {
            for (int y = t.Y; y < t.Y + t.Height; y++)
            {
                for (int x = t.X; x < t.X + t.Width; x++)
                {
                    cover[y, x]++;
                }
            }
        }

        Assert.True(cover.Cast<int>().All(c => c >= 1));
        Assert.Equal(1, cover[0, 0]);
        Assert.Equal(1, cover[1249, 499]);
        Assert.Equal(2 * 2, cover[200, 200]); // inside the overlap of rows 0/1 and columns 0/1
    }

    [Fact]
    public void Impossible_grids_are_refused()
    {
        Assert.Contains("cannot hold a tile", Assert.Throws<ArgumentException>(() => TileGrid.Offsets(100, 101, 10)).Message);
        Assert.Contains("stride 0", Assert.Throws<ArgumentException>(() => TileGrid.Offsets(100, 10, 0)).Message);
        Assert.Contains("stride 11", Assert.Throws<ArgumentException>(() => TileGrid.Offsets(100, 10, 11)).Message);
        Assert.Throws<ArgumentException>(() => TileGrid.Create(new GridSize(63, 500), new GridSize(64, 64), new GridSize(32, 32)));
        Assert.Throws<ArgumentOutOfRangeException>(() => TileGrid.Create(new GridSize(64, 64), new GridSize(64, 64), new GridSize(64, 64))[1]);
    }
}
