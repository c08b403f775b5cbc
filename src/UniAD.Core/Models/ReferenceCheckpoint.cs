using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using UniAD.Core.Backbones;
using UniAD.Core.Reconstruction;
using UniAD.Core.Weights;

namespace UniAD.Core.Models;

/// <summary>
/// Imports models of the authors' trainer: its <c>net</c> description (backbone, MFCN neck, UniAD
/// reconstruction) and its checkpoints (<c>ckpt.pth.tar</c>: <c>{"epoch", "arch", "state_dict", "best_metric", ...}</c>
/// with keys <c>module.backbone.*</c> and <c>module.reconstruction.*</c>).
/// </summary>
public static class ReferenceCheckpoint
{
    /// <summary>
    /// Builds a model, with random weights, from the reference's network description: either a whole
    /// config object with a <c>net</c> list, or the <c>net</c> list itself.
    /// </summary>
    /// <exception cref="FormatException">The description lacks a part or has an unsupported type or value.</exception>
    public static UniADModel Build(JsonElement config)
    {
        var net = config.ValueKind == JsonValueKind.Object && config.TryGetProperty("net", out var n) ? n : config;
        if (net.ValueKind != JsonValueKind.Array)
        {
            throw new FormatException($"Expected the reference's 'net' list (or an object holding it), got {net.ValueKind}.");
        }

        var backboneCfg = Part(net, "backbone");
        var neckCfg = Part(net, "neck");
        var reconCfg = Part(net, "reconstruction");

        string type = backboneCfg.TryGetProperty("type", out var t) ? t.GetString() ?? string.Empty : string.Empty;
        string model = type[(type.LastIndexOf('.') + 1)..].Replace('_', '-');
        var kwargs = backboneCfg.TryGetProperty("kwargs", out var k) ? k : default;
        FeatureExtractor backbone;
        if (model.StartsWith("efficientnet-", StringComparison.Ordinal))
        {
            backbone = EfficientNetFeatureExtractor.FromBlocks(model, Ints(kwargs, "outblocks"), OptionalInts(kwargs, "outstrides"));
        }
        else if (model.StartsWith("resnet", StringComparison.Ordinal) || model.StartsWith("wide-resnet", StringComparison.Ordinal))
        {
            backbone = ResNetFeatureExtractor.FromLayers(ResNetFeatureExtractor.ParseVariant(model.Replace('-', '_')), Ints(kwargs, "outlayers"));
        }
        else
        {
            throw new FormatException($"Unsupported backbone type '{type}'.");
        }

        try
        {
            var neckKwargs = neckCfg.GetProperty("kwargs");
            var outStrides = Ints(neckKwargs, "outstrides");
            if (outStrides.Length != 1)
            {
                throw new FormatException($"The MFCN neck has exactly one output stride; got [{string.Join(", ", outStrides)}].");
            }

            var neck = new MfcnNeck(backbone.Channels, backbone.Strides, outStrides[0]);
            if (OptionalInts(neckKwargs, "outplanes") is { } planes && (planes.Length != 1 || planes[0] != neck.OutputChannels))
            {
                throw new FormatException($"The neck's outplanes [{string.Join(", ", planes)}] differ from the backbone's {neck.OutputChannels} channels.");
            }

            var options = ReconstructionOptions.FromReferenceConfig(reconCfg.GetProperty("kwargs")) with
            {
                InputChannels = neck.OutputChannels,
                InputStride = neck.OutputStride,
            };
            return new UniADModel(backbone, neck, new UniADReconstruction(options));
        }
        catch
        {
            backbone.Dispose();
            throw;
        }
    }

    /// <summary>Loads a reference checkpoint into a model built from <paramref name="configPath"/> (a JSON file with the <c>net</c> list).</summary>
    /// <exception cref="FileNotFoundException">A file does not exist.</exception>
    /// <exception cref="InvalidDataException">The checkpoint is not readable.</exception>
    /// <exception cref="FormatException">The configuration is not a reference network description.</exception>
    /// <exception cref="StateDictMismatchException">The checkpoint does not fit the described network.</exception>
    public static UniADModel Load(string checkpointPath, string configPath, ILogger? logger = null)
    {
        Native.TorchRuntime.EnsureLoaded();
        ArgumentException.ThrowIfNullOrEmpty(configPath);
        if (!File.Exists(configPath))
        {
            throw new FileNotFoundException($"Reference configuration '{configPath}' does not exist.", configPath);
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(configPath));
        }
        catch (JsonException ex)
        {
            throw new FormatException($"'{configPath}' is not valid JSON: {ex.Message}", ex);
        }

        using (doc)
        {
            return Load(checkpointPath, doc.RootElement, logger);
        }
    }

    /// <summary>Loads a reference checkpoint into a model built from the network description <paramref name="config"/>.</summary>
    /// <exception cref="FileNotFoundException">The checkpoint does not exist.</exception>
    /// <exception cref="InvalidDataException">The checkpoint is not readable.</exception>
    /// <exception cref="FormatException">The configuration is not a reference network description.</exception>
    /// <exception cref="StateDictMismatchException">The checkpoint does not fit the described network.</exception>
    public static UniADModel Load(string checkpointPath, JsonElement config, ILogger? logger = null)
    {
        logger ??= NullLogger.Instance;
        using var weights = StateDict.ReadPyTorch(checkpointPath);
        var model = Build(config);
        try
        {
            BackboneWeights.Load(model.Backbone, weights, checkpointPath, logger);
            string prefix = weights.Keys.Any(key => key.StartsWith("module.reconstruction.", StringComparison.Ordinal)) ? "module.reconstruction." : "reconstruction.";
            var reconstruction = weights.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value);
            if (reconstruction.Count == 0)
            {
                throw new StateDictMismatchException("the reconstruction", checkpointPath, model.Reconstruction.state_dict().Keys.ToList(), Array.Empty<string>(), Array.Empty<string>());
            }

            StateDict.Load(model.Reconstruction, reconstruction);
            logger.LogInformation("Loaded reference checkpoint {Path}: {Backbone}, {Tensors} reconstruction tensors.", checkpointPath, model.Backbone.ModelName, reconstruction.Count);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private static JsonElement Part(JsonElement net, string name)
    {
        foreach (var part in net.EnumerateArray())
        {
            if (part.ValueKind == JsonValueKind.Object && part.TryGetProperty("name", out var n) && n.GetString() == name)
            {
                return part;
            }
        }

        throw new FormatException($"The reference network description has no '{name}' part.");
    }

    private static int[] Ints(JsonElement obj, string name) =>
        OptionalInts(obj, name) ?? throw new FormatException($"The reference configuration lacks '{name}'.");

    private static int[]? OptionalInts(JsonElement obj, string name)
    {
        if (obj.ValueKind != JsonValueKind.Object || !obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return v.ValueKind == JsonValueKind.Array && v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number)
            ? v.EnumerateArray().Select(e => e.GetInt32()).ToArray()
            : throw new FormatException($"'{name}' must be a list of integers, got {v}.");
    }
}
