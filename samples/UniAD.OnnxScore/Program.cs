// UniAD.OnnxScore: scores images with a detector exported to ONNX (detector.ExportOnnx), on ONNX Runtime alone.
// Usage: UniAD.OnnxScore MODEL.onnx IMAGE|FOLDER... [--class NAME] [--keep-going] [--provider cpu|cuda|tensorrt|directml|openvino]
//                         [--device N] [--threads N]
// Standard output: JSON Lines, the same objects as `uniad score --json`: {"path","score","normalized","anomalous"} per image
// (normalized and anomalous are null for an uncalibrated model), {"path","error"} for an input that could not be scored.
// Notes go to standard error. Exit codes as uniad's: 0 success; 1 failure (the model cannot be loaded, or the first input
// that cannot be scored without --keep-going); 2 usage error; 3 with --keep-going, some inputs failed; 130 cancelled.
using System.Globalization;
using UniAD.Core.Detection;
using UniAD.Onnx;

const int Success = 0, Failure = 1, Usage = 2, SomeFailed = 3, Cancelled = 130;
string[] imageExtensions = { ".png", ".jpg", ".jpeg", ".bmp" };

using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cancel.Cancel();
};

if (args.Length == 0 || args.Contains("--help") || args.Contains("-h"))
{
    Console.Error.WriteLine("Usage: UniAD.OnnxScore MODEL.onnx IMAGE|FOLDER... [--class NAME] [--keep-going] [--provider cpu|cuda|tensorrt|directml|openvino] [--device N] [--threads N]");
    Console.Error.WriteLine("Writes one JSON object per image to standard output. Exit codes: 0 success, 1 failure, 2 usage error, 3 some inputs failed (--keep-going), 130 cancelled.");
    return args.Length == 0 ? Usage : Success;
}

string? className = null;
bool keepGoing = false;
var options = new OnnxScorerOptions();
var positional = new List<string>();
for (int i = 0; i < args.Length; i++)
{
    string arg = args[i];
    string Value() => i + 1 < args.Length ? args[++i] : throw new UsageError($"{arg} needs a value.");
    int Number() => int.TryParse(Value(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n >= 0 ? n : throw new UsageError($"{arg} needs a non-negative integer.");
    try
    {
        switch (arg)
        {
            case "--class":
                className = Value();
                break;
            case "--keep-going":
                keepGoing = true;
                break;
            case "--provider":
                var name = Value();
                options = options with
                {
                    ExecutionProvider = Enum.GetValues<OnnxExecutionProvider>().FirstOrDefault(p => p.ToString().Equals(name, StringComparison.OrdinalIgnoreCase), (OnnxExecutionProvider)(-1)) is var p && Enum.IsDefined(p)
                        ? p
                        : throw new UsageError($"--provider takes {string.Join(", ", Enum.GetNames<OnnxExecutionProvider>().Select(n => n.ToLowerInvariant()))}; got '{name}'."),
                };
                break;
            case "--device":
                options = options with { DeviceId = Number() };
                break;
            case "--threads":
                options = options with { IntraOpThreads = Number() };
                break;
            default:
                if (arg.Length > 1 && arg[0] == '-')
                {
                    throw new UsageError($"Unrecognized option '{arg}'; a file whose name starts with '-' is written ./{arg}");
                }

                positional.Add(arg);
                break;
        }
    }
    catch (UsageError ex)
    {
        Console.Error.WriteLine($"error: {ex.Message}");
        return Usage;
    }
}

if (positional.Count < 2)
{
    Console.Error.WriteLine("error: give the model and at least one image or folder.");
    return Usage;
}

OnnxAnomalyScorer scorer;
try
{
    scorer = OnnxAnomalyScorer.Load(positional[0], options);
}
catch (Exception ex) when (ex is IOException or InvalidDataException or ArgumentException or PlatformNotSupportedException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return Failure;
}

using (scorer)
{
    var info = scorer.Info;
    Console.Error.WriteLine($"{positional[0]}: {info.Backbone} at {info.InputSize.Height} x {info.InputSize.Width}, {info.ScoreKind} score, {(info.Tiling is null ? "untiled" : "tiled")}, {(info.Calibration is null ? "uncalibrated" : "calibrated")}, on {scorer.ExecutionProvider}");
    int failed = 0, total = 0;
    foreach (var (path, problem) in Inputs(positional.Skip(1)))
    {
        if (cancel.IsCancellationRequested)
        {
            Console.Error.WriteLine("cancelled.");
            return Cancelled;
        }

        total++;
        try
        {
            if (problem is not null)
            {
                throw new FileNotFoundException(problem, path);
            }

            WriteLine(ScoreJson.Result(path, scorer.Score(path, className)));
        }
        catch (Exception ex) when (ex is IOException or InvalidDataException or ArgumentException or UnauthorizedAccessException)
        {
            failed++;
            WriteLine(ScoreJson.Failure(path, ex.Message));
            if (!keepGoing)
            {
                Console.Error.WriteLine($"stopped at the first input that could not be scored ({total - 1} scored); --keep-going scores the rest.");
                return Failure;
            }
        }
    }

    if (failed > 0)
    {
        Console.Error.WriteLine($"{failed} of {total} inputs could not be scored (each is reported above).");
        return SomeFailed;
    }

    return Success;
}

// Files as given, folders' images by name; a problem for an input that is neither.
IEnumerable<(string Path, string? Problem)> Inputs(IEnumerable<string> inputs)
{
    foreach (var input in inputs)
    {
        if (!Directory.Exists(input))
        {
            yield return (input, File.Exists(input) ? null : $"'{input}' is neither a file nor a folder.");
            continue;
        }

        var files = Directory.EnumerateFiles(input)
            .Where(f => imageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
            .Order(StringComparer.Ordinal)
            .ToList();
        if (files.Count == 0)
        {
            yield return (input, $"The folder '{input}' holds no image ({string.Join(", ", imageExtensions)}).");
        }

        foreach (var file in files)
        {
            yield return (file, null);
        }
    }
}

// One JSON line (the format of `uniad score --json`: UniAD.Core.Primitives' ScoreJson), flushed at once.
static void WriteLine(string line)
{
    Console.Out.WriteLine(line);
    Console.Out.Flush();
}

/// <summary>A command line that cannot be understood (exit code 2).</summary>
internal sealed class UsageError(string message) : Exception(message);
