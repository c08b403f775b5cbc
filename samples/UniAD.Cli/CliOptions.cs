using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.RegularExpressions;

namespace UniAD.Cli;

/// <summary>
/// Option factories with invariant-culture parsing: every bad value is a parse error (exit code 2) whose message
/// names the option and, for enumerated values, lists the accepted spellings.
/// </summary>
internal static partial class CliOptions
{
    private static readonly CultureInfo Culture = CultureInfo.InvariantCulture;

    /// <summary>A text option (a path or a data source).</summary>
    public static Option<string> Text(string name, string helpName, string description, bool required = false, params string[] aliases) =>
        new(name, aliases) { HelpName = helpName, Description = description, Required = required };

    /// <summary>A whole-number option, at least <paramref name="min"/>; absent means null.</summary>
    public static Option<int?> Int(string name, string description, int min = int.MinValue, string helpName = "N") =>
        new(name)
        {
            HelpName = helpName,
            Description = description,
            CustomParser = result =>
            {
                var text = Token(result);
                if (!int.TryParse(text, NumberStyles.Integer, Culture, out var value))
                {
                    result.AddError($"{name} needs a whole number, got '{text}'.");
                    return null;
                }

                if (value < min)
                {
                    result.AddError($"{name} needs a whole number of at least {min}, got {value}.");
                    return null;
                }

                return value;
            },
        };

    /// <summary>A number option in [<paramref name="min"/>, <paramref name="max"/>] (or the open interval); absent means null.</summary>
    public static Option<double?> Double(string name, string description, double min = double.MinValue, double max = double.MaxValue, bool exclusive = false, string helpName = "X") =>
        new(name)
        {
            HelpName = helpName,
            Description = description,
            CustomParser = result =>
            {
                var text = Token(result);
                if (!double.TryParse(text, NumberStyles.Float, Culture, out var value) || !double.IsFinite(value))
                {
                    result.AddError($"{name} needs a number (e.g. 0.05 or 1e-4), got '{text}'.");
                    return null;
                }

                bool inside = exclusive ? value > min && value < max : value >= min && value <= max;
                if (!inside)
                {
                    var range = exclusive
                        ? max == double.MaxValue ? string.Create(Culture, $"above {min}") : string.Create(Culture, $"between {min} and {max} (exclusive)")
                        : max == double.MaxValue ? string.Create(Culture, $"of at least {min}") : string.Create(Culture, $"from {min} to {max}");
                    result.AddError(string.Create(Culture, $"{name} needs a number {range}, got {value}."));
                    return null;
                }

                return value;
            },
        };

    /// <summary>A comma-separated list of whole numbers (e.g. <c>1,2,3,4</c>), each at least <paramref name="min"/>.</summary>
    public static Option<int[]?> Ints(string name, string description, string helpName, int min = int.MinValue, int maxCount = int.MaxValue) =>
        new(name)
        {
            HelpName = helpName,
            Description = description,
            Arity = ArgumentArity.ExactlyOne, // one token: 1,2,3 (not 1 2 3)
            CustomParser = result =>
            {
                var text = Token(result);
                var parts = text.Split(',', StringSplitOptions.TrimEntries);
                var values = new int[parts.Length];
                for (int i = 0; i < parts.Length; i++)
                {
                    if (!int.TryParse(parts[i], NumberStyles.Integer, Culture, out values[i]) || values[i] < min)
                    {
                        result.AddError($"{name} needs {helpName} (whole numbers{(min == int.MinValue ? string.Empty : string.Create(Culture, $" of at least {min}"))}, separated by commas), got '{text}'.");
                        return null;
                    }
                }

                if (values.Length > maxCount)
                {
                    result.AddError($"{name} needs {helpName}, got '{text}'.");
                    return null;
                }

                return values;
            },
        };

    /// <summary>The value of an <see cref="Ints"/> option, or null when it is absent (System.CommandLine gives an empty array).</summary>
    public static int[]? GetInts(this ParseResult parse, Option<int[]?> option) => parse.GetValue(option) is { Length: > 0 } values ? values : null;

    /// <summary>An enumerated option: one of <paramref name="choices"/>, case-insensitive; the error lists them.</summary>
    public static Option<T?> Choice<T>(string name, string description, params (string Spelling, T Value)[] choices)
        where T : struct
    {
        var spellings = string.Join("|", choices.Select(c => c.Spelling));
        var option = new Option<T?>(name)
        {
            HelpName = spellings,
            Description = description,
            CustomParser = result =>
            {
                var text = Token(result);
                foreach (var (spelling, value) in choices)
                {
                    if (string.Equals(spelling, text, StringComparison.OrdinalIgnoreCase))
                    {
                        return value;
                    }
                }

                result.AddError($"{name} is one of {string.Join(", ", choices.Select(c => c.Spelling))}; got '{text}'.");
                return null;
            },
        };
        option.CompletionSources.Add(choices.Select(c => c.Spelling).ToArray());
        return option;
    }

    /// <summary>A name option: one of <paramref name="names"/>, case-insensitive, returned as spelled there; the error lists them.</summary>
    public static Option<string?> Name(string name, string helpName, string description, IReadOnlyList<string> names)
    {
        var option = new Option<string?>(name)
        {
            HelpName = helpName,
            Description = description,
            CustomParser = result =>
            {
                var text = Token(result);
                var match = names.FirstOrDefault(n => string.Equals(n, text, StringComparison.OrdinalIgnoreCase));
                if (match is null)
                {
                    result.AddError($"{name} is one of {string.Join(", ", names)}; got '{text}'.");
                }

                return match;
            },
        };
        option.CompletionSources.Add(names.ToArray());
        return option;
    }

    /// <summary>The device option: <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c> (case-insensitive), returned in lower case.</summary>
    public static Option<string?> Device(string description) =>
        new("--device")
        {
            HelpName = "cpu|cuda|cuda:N",
            Description = description,
            CustomParser = result =>
            {
                var text = Token(result);
                if (DevicePattern().IsMatch(text))
                {
                    return text.ToLowerInvariant();
                }

                result.AddError($"--device is one of cpu, cuda, cuda:N (N a GPU index); got '{text}'.");
                return null;
            },
        };

    [GeneratedRegex("^(cpu|cuda(:[0-9]{1,3})?)$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex DevicePattern();

    // A single-value option always has exactly one token when its parser runs (a missing value is reported first).
    private static string Token(ArgumentResult result) => result.Tokens.Count == 0 ? string.Empty : result.Tokens[^1].Value;
}
