using System.Buffers;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace UniAD.Core.Detection;

/// <summary>
/// The JSON Lines of scoring tools, one object per image (<c>uniad score --json</c> and UniAD.Onnx's sample
/// <c>UniAD.OnnxScore</c> write these, so their output is the same): <c>{"path", "score", "normalized", "anomalous"}</c>
/// (<c>normalized</c> and <c>anomalous</c> null when the model is not calibrated; <c>"heatmap"</c> when one was written), or
/// <c>{"path", "error"}</c> for an input that could not be scored. Non-finite numbers are written as null (JSON has none).
/// </summary>
public static class ScoreJson
{
    private static readonly JsonWriterOptions Options = new() { Indented = false, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The line of a scored image.</summary>
    /// <param name="path">The input as given.</param>
    /// <param name="result">Its result.</param>
    /// <param name="heatmap">The heat map written for it, or null.</param>
    public static string Result(string path, AnomalyResult result, string? heatmap = null)
    {
        ArgumentNullException.ThrowIfNull(result);
        return Line(w =>
        {
            w.WriteString("path", path);
            Number(w, "score", result.Score);
            Number(w, "normalized", result.NormalizedScore);
            if (result.IsAnomalous is { } anomalous)
            {
                w.WriteBoolean("anomalous", anomalous);
            }
            else
            {
                w.WriteNull("anomalous");
            }

            if (heatmap is not null)
            {
                w.WriteString("heatmap", heatmap);
            }
        });
    }

    /// <summary>The line of an input that could not be scored.</summary>
    /// <param name="path">The input as given.</param>
    /// <param name="message">Why (the exception's message).</param>
    public static string Failure(string path, string message) => Line(w =>
    {
        w.WriteString("path", path);
        w.WriteString("error", message);
    });

    private static void Number(Utf8JsonWriter w, string name, double? value)
    {
        if (value is { } v && double.IsFinite(v))
        {
            w.WriteNumber(name, v);
        }
        else
        {
            w.WriteNull(name);
        }
    }

    private static string Line(Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, Options))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }
}
