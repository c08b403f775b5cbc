namespace UniAD.Cli.Tests;

/// <summary>The collision-free output names of <see cref="HeatmapNames"/>.</summary>
public sealed class HeatmapNamesTests
{
    private static readonly string Root = Path.Combine(Path.GetTempPath(), "names");

    private static string P(params string[] parts) => Path.Combine(new[] { Root }.Concat(parts).ToArray());

    [Fact]
    public void A_name_grows_only_as_far_as_needed()
    {
        var names = HeatmapNames.Assign(new[] { P("a", "good", "000.png"), P("b", "good", "000.png"), P("a", "good", "001.png"), P("c", "002.png") });
        Assert.Equal(new[] { "a_good_000", "b_good_000", "001", "002" }, names);
    }

    [Fact]
    public void The_same_folder_twice_gets_a_counter()
    {
        var names = HeatmapNames.Assign(new[] { P("x", "1.png"), P("x", "1.jpg"), P("y", "1.png"), P("x", "1.png") });
        Assert.Equal(new[] { "x_1", "x_1-2", "y_1", "x_1-3" }, names);
    }

    [Fact]
    public void Names_differing_only_in_case_are_told_apart()
    {
        var names = HeatmapNames.Assign(new[] { P("A", "img.png"), P("a", "IMG.png") });
        Assert.Equal(2, names.Distinct(StringComparer.OrdinalIgnoreCase).Count());
    }
}
