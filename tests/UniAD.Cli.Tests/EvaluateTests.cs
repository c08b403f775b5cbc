using System.Text.Json;

namespace UniAD.Cli.Tests;

/// <summary>Issue 11, section 4: <c>uniad evaluate</c> writes its report as JSON (to a file or to standard output) and markdown.</summary>
[Collection(CliCollection.Name)]
public sealed class EvaluateTests(CliFixture fixture)
{
    [Fact]
    public void Json_dash_writes_the_report_alone_to_standard_output()
    {
        File.Delete("-"); // left by a run against a CLI that took '-' for a file name
        var run = CliRunner.Run("evaluate", "--model", fixture.Model, "--data", $"mvtec:{fixture.Data}", "--json", "-");
        Assert.True(run.ExitCode == 0, run.ToString());
        using var report = JsonDocument.Parse(run.Output);
        Assert.Equal(JsonValueKind.Object, report.RootElement.ValueKind);
        Assert.Contains("stripes", run.Output, StringComparison.Ordinal);
        Assert.Contains("disc", run.Output, StringComparison.Ordinal);
        Assert.False(File.Exists("-"), "a file named '-' was written");
        Assert.Contains("|", run.Error, StringComparison.Ordinal); // the markdown table went to standard error
    }

    [Fact]
    public void Markdown_and_json_files_and_compound_heat_maps_are_written()
    {
        var folder = fixture.NewFolder("evaluate");
        var markdown = Path.Combine(folder, "metrics.md");
        var json = Path.Combine(folder, "metrics.json");
        var heatmaps = Path.Combine(folder, "views");
        var run = CliRunner.Run("evaluate", "--model", fixture.CalibratedModel, "--data", $"mvtec:{fixture.Data}:stripes", "--markdown", markdown, "--json", json, "--heatmaps", heatmaps);
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("stripes", File.ReadAllText(markdown), StringComparison.Ordinal);
        using var report = JsonDocument.Parse(File.ReadAllText(json));
        Assert.Contains("| ", run.Output, StringComparison.Ordinal);
        int images = Directory.GetFiles(Path.Combine(fixture.Data, "stripes", "test"), "*.png", SearchOption.AllDirectories).Length;
        Assert.Equal(images, Directory.GetFiles(heatmaps).Length);
    }

    [Fact]
    public void Compound_views_of_same_named_images_in_different_folders_do_not_overwrite_each_other()
    {
        // A meta file with one class, "parts", whose images a/000.png and b/000.png share class, defect type and name.
        var root = fixture.NewFolder("meta");
        var images = fixture.GoodImages();
        var defects = Directory.GetFiles(Path.Combine(fixture.Data, "stripes", "test"), "*.png", SearchOption.AllDirectories).Where(f => !f.Contains("good", StringComparison.Ordinal)).ToList();
        Directory.CreateDirectory(Path.Combine(root, "a"));
        Directory.CreateDirectory(Path.Combine(root, "b"));
        File.Copy(images[0], Path.Combine(root, "a", "000.png"));
        File.Copy(images[1], Path.Combine(root, "b", "000.png"));
        File.Copy(defects[0], Path.Combine(root, "a", "001.png"));
        var meta = Path.Combine(root, "test.json");
        File.WriteAllLines(meta, new[]
        {
            """{"filename": "a/000.png", "label": 0, "clsname": "parts"}""",
            """{"filename": "b/000.png", "label": 0, "clsname": "parts"}""",
            """{"filename": "a/001.png", "label": 1, "clsname": "parts"}""",
        });
        var heatmaps = Path.Combine(root, "views");
        var run = CliRunner.Run("evaluate", "--model", fixture.Model, "--data", $"meta:{meta}@{root}", "--heatmaps", heatmaps);
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(3, Directory.GetFiles(heatmaps).Length);
        Assert.Empty(Directory.GetDirectories(heatmaps)); // the scratch folder is gone
    }

    [Fact]
    public void With_keep_going_unreadable_test_images_are_left_out_with_exit_code_3()
    {
        // A copy of one class's test split with a truncated image in it.
        var root = fixture.NewFolder("broken-mvtec");
        foreach (var file in Directory.GetFiles(Path.Combine(fixture.Data, "stripes"), "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(root, "stripes", Path.GetRelativePath(Path.Combine(fixture.Data, "stripes"), file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }

        var broken = Directory.GetFiles(Path.Combine(root, "stripes", "test", "good")).Order(StringComparer.Ordinal).First();
        var bytes = File.ReadAllBytes(broken);
        File.WriteAllBytes(broken, bytes[..(bytes.Length / 2)]);

        var stop = CliRunner.Run("evaluate", "--model", fixture.Model, "--data", $"mvtec:{root}");
        Assert.True(stop.ExitCode == 1, stop.ToString());
        Assert.Contains(Path.GetFileName(broken), stop.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stop.All, StringComparison.Ordinal);

        var keep = CliRunner.Run("evaluate", "--model", fixture.Model, "--data", $"mvtec:{root}", "--keep-going", "--json", "-");
        Assert.True(keep.ExitCode == 3, keep.ToString());
        Assert.Contains(Path.GetFileName(broken), keep.Error, StringComparison.Ordinal);
        using var report = JsonDocument.Parse(keep.Output);
    }
}
