using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Onnx;

namespace UniAD.Hosting;

/// <summary>
/// What the hosting code needs to know of a model beyond the scoring contract of <see cref="ImageScorer"/>: its
/// calibration, its decoding limit, its runtime and a short description. <see cref="ImageScorer"/> has exactly two
/// implementations (its constructor is not accessible outside the library): UniAD.Core's <see cref="AnomalyDetector"/>
/// (libtorch) and UniAD.Onnx's <see cref="OnnxAnomalyScorer"/> (ONNX Runtime), so these facts are read here, once, for
/// both. Reading them never loads libtorch: only an <see cref="AnomalyDetector"/> that exists touches TorchSharp.
/// </summary>
internal static class ScorerFacts
{
    /// <summary>The runtime name reported for a TorchSharp detector.</summary>
    public const string Torch = "torch";

    /// <summary>The runtime name reported for an ONNX scorer.</summary>
    public const string Onnx = "onnx";

    /// <summary>The calibration the scorer's verdicts use (heat-map range), or null.</summary>
    public static Calibration? Calibration(ImageScorer scorer) => scorer switch
    {
        OnnxAnomalyScorer onnx => onnx.Calibration,
        _ => TorchCalibration(scorer),
    };

    /// <summary>Images with more pixels are refused before decoding.</summary>
    public static long MaxImagePixels(ImageScorer scorer) => scorer switch
    {
        OnnxAnomalyScorer onnx => onnx.Preprocess.MaxImagePixels,
        _ => TorchMaxImagePixels(scorer),
    };

    /// <summary>The classes a scorer needs one of with every image (per-class reference maps or memory banks), or null when it needs none.</summary>
    public static IReadOnlyList<string>? ClassesNeeded(ImageScorer scorer) => scorer switch
    {
        OnnxAnomalyScorer onnx => onnx.BankClasses ?? onnx.ReferenceMapClasses,
        _ => TorchClassesNeeded(scorer),
    };

    /// <summary><see cref="Torch"/> or <see cref="Onnx"/>.</summary>
    public static string Runtime(ImageScorer scorer) => scorer is OnnxAnomalyScorer ? Onnx : Torch;

    /// <summary>One line for logs: epochs and device (torch), or execution provider (ONNX), and whether it is calibrated.</summary>
    public static string Describe(ImageScorer scorer) => scorer switch
    {
        OnnxAnomalyScorer onnx => $"ONNX Runtime on {onnx.ExecutionProvider}, calibrated {onnx.Calibration is not null}",
        _ => TorchDescription(scorer),
    };

    /// <summary>The health check's data about the model: <c>runtime</c>, <c>calibrated</c>, and <c>epochsTrained</c> and <c>device</c> (torch) or <c>executionProvider</c> (ONNX).</summary>
    public static void Report(ImageScorer scorer, IDictionary<string, object> data)
    {
        data["runtime"] = Runtime(scorer);
        data["calibrated"] = Calibration(scorer) is not null;
        if (scorer is OnnxAnomalyScorer onnx)
        {
            data["executionProvider"] = onnx.ExecutionProvider.ToString();
        }
        else
        {
            TorchReport(scorer, data);
        }
    }

    // The TorchSharp detector's members are read in methods of their own, so that the JIT compiles code that names
    // AnomalyDetector only when a scorer is not an ONNX one.
    private static Calibration? TorchCalibration(ImageScorer scorer) => AsDetector(scorer).Calibration;

    private static long TorchMaxImagePixels(ImageScorer scorer) => AsDetector(scorer).Preprocess.MaxImagePixels;

    private static IReadOnlyList<string>? TorchClassesNeeded(ImageScorer scorer)
    {
        var detector = AsDetector(scorer);
        return detector.UseAnomalyModel(m => m.Classes?.ToArray()) ?? detector.ReferenceMaps?.Classes.Keys.Order(StringComparer.Ordinal).ToArray();
    }

    private static string TorchDescription(ImageScorer scorer)
    {
        var detector = AsDetector(scorer);
        return $"TorchSharp on {detector.Device}, {detector.EpochsTrained} epochs, calibrated {detector.Calibration is not null}";
    }

    private static void TorchReport(ImageScorer scorer, IDictionary<string, object> data)
    {
        var detector = AsDetector(scorer);
        data["epochsTrained"] = detector.EpochsTrained;
        data["device"] = detector.Device.ToString();
    }

    private static AnomalyDetector AsDetector(ImageScorer scorer) =>
        scorer as AnomalyDetector ?? throw new ArgumentException($"Unknown scorer type {scorer.GetType().FullName}.", nameof(scorer));
}
