using UniAD.Core.Detection;
using UniAD.Core.Export;

namespace UniAD.Cli.Tests;

/// <summary>Issue 12, section 1: <c>uniad export --model M --out model.onnx</c>.</summary>
[Collection(CliCollection.Name)]
public sealed class ExportTests(CliFixture fixture)
{
    [Fact]
    public void Export_writes_the_onnx_model_with_its_metadata_and_the_same_bytes_as_the_library()
    {
        var folder = fixture.NewFolder("export");
        var output = Path.Combine(folder, "model.onnx");
        var run = CliRunner.Run("export", "--model", fixture.CalibratedModel, "--out", output, "--classes", "disc,stripes");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("calibrated", run.Output, StringComparison.Ordinal);
        var info = OnnxExport.ReadInfo(output);
        Assert.Equal(new[] { "disc", "stripes" }, info.ClassNames);
        Assert.NotNull(info.Calibration);

        // The same bytes as the library's export of the same file (export is deterministic).
        var direct = Path.Combine(folder, "direct.onnx");
        using (var detector = AnomalyDetector.Load(fixture.CalibratedModel))
        {
            detector.ExportOnnx(direct, new OnnxExportOptions { ClassNames = new[] { "disc", "stripes" } });
        }

        Assert.Equal(File.ReadAllBytes(direct), File.ReadAllBytes(output));
    }

    [Fact]
    public void Export_with_quantize_int8_writes_the_int8_model_of_the_library_and_refuses_other_spellings()
    {
        var folder = fixture.NewFolder("export-int8");
        var output = Path.Combine(folder, "int8.onnx");
        var run = CliRunner.Run("export", "--model", fixture.CalibratedModel, "--out", output, "--quantize", "int8");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("int8 reconstruction", run.Output, StringComparison.Ordinal);
        var direct = Path.Combine(folder, "direct.onnx");
        using (var detector = AnomalyDetector.Load(fixture.CalibratedModel))
        {
            detector.ExportOnnx(direct, new OnnxExportOptions { Quantization = OnnxQuantization.DynamicInt8 });
        }

        Assert.Equal(File.ReadAllBytes(direct), File.ReadAllBytes(output));
        var wrong = CliRunner.Run("export", "--model", fixture.CalibratedModel, "--out", Path.Combine(folder, "x.onnx"), "--quantize", "int4");
        Assert.True(wrong.ExitCode == 2, wrong.ToString());
        Assert.Contains("int4", wrong.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Export_refuses_missing_inputs_and_output_folders()
    {
        var missing = CliRunner.Run("export", "--model", Path.Combine(fixture.Root, "no-such-model.safetensors"), "--out", Path.Combine(fixture.Root, "x.onnx"));
        Assert.True(missing.ExitCode == 1, missing.ToString());
        Assert.Contains("no-such-model.safetensors", missing.Error, StringComparison.Ordinal);
        var noFolder = CliRunner.Run("export", "--model", fixture.Model, "--out", Path.Combine(fixture.Root, "no-such-folder", "x.onnx"));
        Assert.True(noFolder.ExitCode == 1, noFolder.ToString());
        Assert.Contains("no-such-folder", noFolder.Error, StringComparison.Ordinal);
        var usage = CliRunner.Run("export", "--model", fixture.Model);
        Assert.True(usage.ExitCode == 2, usage.ToString());
    }
}
