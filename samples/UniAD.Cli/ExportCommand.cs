using System.CommandLine;
using Spectre.Console;
using UniAD.Core.Detection;
using UniAD.Core.Export;

namespace UniAD.Cli;

/// <summary><c>uniad export</c>: writes a model file as one ONNX model for ONNX Runtime (UniAD.Onnx).</summary>
internal static class ExportCommand
{
    public static Command Create(CliContext ctx)
    {
        var model = CliOptions.Text("--model", "MODEL", "The UniAD.Core model file (.safetensors).", required: true);
        var output = CliOptions.Text("--out", "FILE", "The ONNX model to write (opset 17; metadata inside).", required: true);
        var classes = CliOptions.Text("--classes", "A,B", "Class names of the training data, stored in the metadata.", required: false);
        var quantize = CliOptions.Choice("--quantize", "The reconstruction's linear layers: float32 (any ONNX runtime), or int8 (ONNX Runtime's DynamicQuantizeMatMul; faster on CPUs, changes the numbers slightly: docs/benchmarks.md) [default: none].", ("none", OnnxQuantization.None), ("int8", OnnxQuantization.DynamicInt8));
        var command = new Command("export", "Export a model to ONNX: score it with UniAD.Onnx (ONNX Runtime, no libtorch) on any platform.")
        {
            model, output, classes, quantize,
        };
        command.SetAction(p => Cli.Guard(ctx, p, () =>
        {
            var modelPath = p.GetRequiredValue(model);
            var outputPath = p.GetRequiredValue(output);
            PathChecks.InputFile(modelPath, "--model");
            PathChecks.OutputFile(outputPath, "--out");
            PathChecks.NotAnInput(outputPath, "--out", (modelPath, "--model"));
            var names = p.GetValue(classes)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            using var detector = AnomalyDetector.Load(modelPath);
            var quantization = p.GetValue(quantize) ?? OnnxQuantization.None;
            detector.ExportOnnx(outputPath, new OnnxExportOptions { ClassNames = names, Quantization = quantization });
            ctx.Out.MarkupLineInterpolated($"Exported {detector.Options.Backbone} model ({detector.Options.InputSize} input{(detector.Options.Tiling is null ? string.Empty : ", tiled")}{(detector.Calibration is null ? string.Empty : ", calibrated")}{(quantization == OnnxQuantization.DynamicInt8 ? ", int8 reconstruction" : string.Empty)}) to [bold]{outputPath}[/].");
            return ExitCodes.Success;
        }));
        return command;
    }
}
