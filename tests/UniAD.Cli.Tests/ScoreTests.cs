using System.Text.Json;

namespace UniAD.Cli.Tests;

/// <summary>Issue 11, sections 1 and 4: <c>uniad score</c> streams results, reports bad files per file, and names heat maps uniquely.</summary>
[Collection(CliCollection.Name)]
public sealed class ScoreTests(CliFixture fixture)
{
    [Fact]
    public void Json_output_is_one_object_per_image_and_nothing_else()
    {
        var images = fixture.GoodImages();
        var run = CliRunner.Run("score", "--model", fixture.Model, "--json", Path.GetDirectoryName(images[0])!);
        Assert.True(run.ExitCode == 0, run.ToString());
        var lines = Objects(run);
        Assert.Equal(images, lines.Select(l => l.GetProperty("path").GetString()));
        foreach (var line in lines)
        {
            Assert.True(line.GetProperty("score").GetDouble() > 0);
            Assert.Equal(JsonValueKind.Null, line.GetProperty("anomalous").ValueKind); // not calibrated
            Assert.Equal(JsonValueKind.Null, line.GetProperty("normalized").ValueKind);
        }

        var calibrated = CliRunner.Run("score", "--model", fixture.CalibratedModel, "--json", images[0]);
        Assert.True(calibrated.ExitCode == 0, calibrated.ToString());
        var only = Assert.Single(Objects(calibrated));
        Assert.Contains(only.GetProperty("anomalous").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
        Assert.Equal(JsonValueKind.Number, only.GetProperty("normalized").ValueKind);
    }

    [Fact]
    public void Human_output_has_a_line_per_image()
    {
        var images = fixture.GoodImages();
        var run = CliRunner.Run("score", "--model", fixture.CalibratedModel, images[0], images[1]);
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(3, run.OutputLines.Count);
        Assert.StartsWith("score", run.OutputLines[0], StringComparison.Ordinal);
        Assert.EndsWith(images[0], run.OutputLines[1], StringComparison.Ordinal);
        Assert.EndsWith(images[1], run.OutputLines[2], StringComparison.Ordinal);
    }

    [Fact]
    public void With_keep_going_every_bad_input_is_reported_and_the_rest_scored_with_exit_code_3()
    {
        var folder = BadFolder();
        var missingFile = Path.Combine(fixture.Root, "no-such-image.png");
        var missingFolder = Path.Combine(fixture.Root, "no-such-folder");
        var emptyFolder = fixture.NewFolder("empty");
        var run = CliRunner.Run("score", "--model", fixture.Model, "--json", "--keep-going", folder, missingFile, missingFolder, emptyFolder);
        Assert.True(run.ExitCode == 3, run.ToString());
        var lines = Objects(run).ToDictionary(l => l.GetProperty("path").GetString()!);
        foreach (var bad in new[] { "a-empty.png", "b-truncated.png", "c-text.png" })
        {
            Assert.True(lines[Path.Combine(folder, bad)].TryGetProperty("error", out var error), bad);
            Assert.Contains(bad, error.GetString(), StringComparison.Ordinal);
        }

        foreach (var missing in new[] { missingFile, missingFolder, emptyFolder })
        {
            Assert.True(lines[missing].TryGetProperty("error", out _), missing);
        }

        Assert.True(lines[Path.Combine(folder, "d-good.png")].TryGetProperty("score", out _));
        Assert.True(lines[Path.Combine(folder, "z-good.png")].TryGetProperty("score", out _));
        Assert.Contains("6 of 8 inputs could not be scored", run.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Without_keep_going_the_first_bad_input_stops_with_exit_code_1_after_the_results_before_it()
    {
        var images = fixture.GoodImages();
        var folder = BadFolder();
        var run = CliRunner.Run("score", "--model", fixture.Model, "--json", images[0], Path.Combine(folder, "b-truncated.png"), images[1]);
        Assert.True(run.ExitCode == 1, run.ToString());
        var lines = Objects(run);
        Assert.Equal(2, lines.Count);
        Assert.Equal(images[0], lines[0].GetProperty("path").GetString());
        Assert.True(lines[0].TryGetProperty("score", out _));
        Assert.Contains("truncated", lines[1].GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", run.All, StringComparison.Ordinal);

        var human = CliRunner.Run("score", "--model", fixture.Model, images[0], Path.Combine(folder, "c-text.png"));
        Assert.True(human.ExitCode == 1, human.ToString());
        Assert.EndsWith(images[0], human.OutputLines[^1], StringComparison.Ordinal);
        Assert.Contains("c-text.png", human.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Results_are_written_as_they_come()
    {
        if (CliRunner.External is not null)
        {
            return; // in-process only: the test cancels the run from its output
        }

        var images = fixture.GoodImages();
        using var cancel = new CancellationTokenSource();
        var output = new CallbackWriter(() => cancel.Cancel()); // Ctrl+C once the first result is out
        var run = CliRunner.Run(new[] { "score", "--model", fixture.Model, "--json", images[0], images[1], images[2] }, cancel.Token, output);
        Assert.True(run.ExitCode == 130, run.ToString());
        var only = Assert.Single(Objects(run));
        Assert.Equal(images[0], only.GetProperty("path").GetString());
        Assert.Contains("cancelled", run.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Heat_maps_of_same_named_images_in_different_folders_do_not_overwrite_each_other()
    {
        var a = fixture.NewFolder("a");
        var b = fixture.NewFolder("b");
        var images = fixture.GoodImages();
        File.Copy(images[0], Path.Combine(a, "000.png"));
        File.Copy(images[1], Path.Combine(b, "000.png"));
        var heatmaps = Path.Combine(fixture.Root, "heatmaps-" + Guid.NewGuid().ToString("N")[..8]);
        var run = CliRunner.Run("score", "--model", fixture.CalibratedModel, "--heatmaps", heatmaps, "--json", a, b, Path.Combine(a, "000.png"));
        Assert.True(run.ExitCode == 0, run.ToString());
        var written = Directory.GetFiles(heatmaps).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(3, written.Count);
        Assert.Contains($"{Path.GetFileName(a)}_000_heatmap.png", written);
        Assert.Contains($"{Path.GetFileName(b)}_000_heatmap.png", written);
        Assert.Contains($"{Path.GetFileName(a)}_000-2_heatmap.png", written);
        var named = Objects(run).Select(l => l.GetProperty("heatmap").GetString()).ToList();
        Assert.Equal(3, named.Distinct().Count());
        Assert.All(named, path => Assert.True(File.Exists(path), path));
        Assert.NotEqual(File.ReadAllBytes(named[0]!), File.ReadAllBytes(named[1]!));
    }

    /// <summary>A folder with two good images and an empty, a truncated and a non-image PNG, sorted a- to z-.</summary>
    private string BadFolder()
    {
        var folder = fixture.NewFolder("bad");
        var good = fixture.GoodImages();
        File.WriteAllBytes(Path.Combine(folder, "a-empty.png"), Array.Empty<byte>());
        var bytes = File.ReadAllBytes(good[0]);
        File.WriteAllBytes(Path.Combine(folder, "b-truncated.png"), bytes[..(bytes.Length / 2)]);
        File.WriteAllText(Path.Combine(folder, "c-text.png"), "not an image");
        File.Copy(good[0], Path.Combine(folder, "d-good.png"));
        File.Copy(good[1], Path.Combine(folder, "z-good.png"));
        return folder;
    }

    /// <summary>Standard output as JSON Lines: every line must be one JSON object.</summary>
    private static List<JsonElement> Objects(CliResult run) =>
        run.OutputLines.Select(line =>
        {
            using var doc = JsonDocument.Parse(line);
            Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
            return doc.RootElement.Clone();
        }).ToList();

    /// <summary>A writer that calls back after its first line.</summary>
    private sealed class CallbackWriter(Action afterFirstLine) : StringWriter
    {
        private bool called;

        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (!called)
            {
                called = true;
                afterFirstLine();
            }
        }
    }
}
