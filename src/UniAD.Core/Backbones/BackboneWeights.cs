using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using UniAD.Core.Weights;
using static TorchSharp.torch;

namespace UniAD.Core.Backbones;

/// <summary>The outcome of loading backbone weights.</summary>
/// <param name="Source">The file (or description) the weights came from.</param>
/// <param name="Prefix">The key prefix that was stripped (<c>module.</c>, <c>backbone.</c>, <c>module.backbone.</c>) or empty.</param>
/// <param name="Loaded">Number of tensors copied into the extractor.</param>
/// <param name="Ignored">Keys, as named in the file, that were skipped: parts of the complete model that are not computed (later blocks, head, classifier) and keys outside the prefix (e.g. a whole model's reconstruction weights).</param>
public sealed record BackboneLoadReport(string Source, string Prefix, int Loaded, IReadOnlyList<string> Ignored);

/// <summary>Loads pretrained weights into a <see cref="FeatureExtractor"/> and says where official files come from.</summary>
public static class BackboneWeights
{
    /// <summary>Where users get the official weight files (no download happens in this library).</summary>
    public const string WhereToGetWeights =
        "EfficientNet: the EfficientNet-PyTorch project's ImageNet files (efficientnet-b0-355c32eb.pth ... efficientnet-b4-6ed6700e.pth ..., " +
        "published with that project's releases on GitHub); ResNet: torchvision's ImageNet files (resnet18-f37072fd.pth, resnet34-b627a593.pth, " +
        "resnet50-0676ba61.pth, resnet101-63fe2227.pth, wide_resnet50_2-95faca4d.pth, from PyTorch's model download area). " +
        "Download one with a browser or PyTorch and pass its path. mlnet-resnet18 needs no download: its ImageNet weights come with the NuGet package " +
        MlNetBackbone.PackageId + " (add " + MlNetBackbone.PackageReference + " to the application).";

    private static readonly string[] Prefixes = { "module.backbone.", "backbone.", "module.", string.Empty };

    /// <summary>
    /// Reads a <c>.pth</c> (bare state dict or a dict with <c>state_dict</c>), <c>.safetensors</c> or <c>.onnx</c> file
    /// and loads it. An ONNX ResNet is mapped onto torchvision's keys by its data flow
    /// (<see cref="OnnxResNetImport"/>); for <c>mlnet-resnet18</c> the mean image comes from the package's
    /// preprocessing graph beside it (<see cref="MlNetBackbone.PreprocessingFileFor"/>).
    /// </summary>
    /// <exception cref="FileNotFoundException">The file (or, for <c>mlnet-resnet18</c>, its preprocessing graph) does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a readable checkpoint, or an ONNX graph that is not a plain ResNet.</exception>
    /// <exception cref="StateDictMismatchException">The weights do not fit the extractor (missing or wrongly shaped keys, or another architecture).</exception>
    public static BackboneLoadReport Load(FeatureExtractor extractor, string path, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(extractor);
        if (path is not null && path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
        {
            using var imported = OnnxResNetImport.Import(path);
            if (extractor is ResNetFeatureExtractor { Variant: ResNetVariant.MlNetResNet18 })
            {
                imported.Weights.Add("mean_image", OnnxResNetImport.ReadCntkMeanImage(MlNetBackbone.PreprocessingFileFor(path)));
            }

            logger?.LogInformation("{Source}: a ResNet of basic blocks {Blocks} found by following the ONNX graph.", path, string.Join("-", imported.BlocksPerLayer));
            return Load(extractor, imported.Weights, path, logger);
        }

        using var weights = StateDict.Read(path!);
        return Load(extractor, weights, path!, logger);
    }

    /// <summary>Loads weights from a name → tensor map; keys may carry <c>module.</c> and/or <c>backbone.</c> prefixes.</summary>
    /// <exception cref="StateDictMismatchException">The weights do not fit the extractor.</exception>
    public static BackboneLoadReport Load(FeatureExtractor extractor, IReadOnlyDictionary<string, Tensor> weights, string source, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(extractor);
        ArgumentNullException.ThrowIfNull(weights);
        logger ??= NullLogger.Instance;
        var own = extractor.state_dict().Keys.ToHashSet(StringComparer.Ordinal);

        // The prefix under which most of the extractor's keys are found.
        string prefix = Prefixes
            .OrderByDescending(p => weights.Keys.Count(k => k.StartsWith(p, StringComparison.Ordinal) && own.Contains(k[p.Length..])))
            .ThenBy(p => Array.IndexOf(Prefixes, p))
            .First();
        var stripped = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var outside = new List<string>();
        foreach (var (key, tensor) in weights)
        {
            if (key.StartsWith(prefix, StringComparison.Ordinal))
            {
                stripped[key[prefix.Length..]] = tensor;
            }
            else
            {
                outside.Add(key);
            }
        }

        if (own.Count > 0 && !stripped.Keys.Any(own.Contains))
        {
            throw new StateDictMismatchException(
                $"{extractor.ModelName} (none of the {weights.Count} keys match: a checkpoint of another architecture?)",
                source,
                own.OrderBy(k => k, StringComparer.Ordinal).ToList(),
                weights.Keys.ToList(),
                Array.Empty<string>());
        }

        var report = StateDict.Load(
            extractor,
            stripped,
            ignoreUnexpected: extractor.IsUncomputedKey,
            allowMissing: k => k.EndsWith(".num_batches_tracked", StringComparison.Ordinal));
        extractor.MarkLoaded();
        var ignored = report.Ignored.Select(k => prefix + k).Concat(outside).ToList(); // as named in the file
        logger.LogInformation("Loaded {Count} tensors of {Model} from {Source} (prefix '{Prefix}'); skipped {Ignored} keys of parts not computed or outside the backbone.", report.Loaded.Count, extractor.ModelName, source, prefix, ignored.Count);
        return new BackboneLoadReport(source, prefix, report.Loaded.Count, ignored);
    }

    /// <summary>
    /// Re-draws a random extractor's weights from <paramref name="seed"/> with PyTorch's default layer
    /// initialisation (weights and their biases U(−1/√fan_in, 1/√fan_in); BatchNorm left at 1 and 0), so that
    /// random backbones (demos, tests) are reproducible.
    /// </summary>
    public static void InitializeRandom(FeatureExtractor extractor, long seed)
    {
        ArgumentNullException.ThrowIfNull(extractor);
        using var generator = new TorchSharp.torch.Generator(unchecked((ulong)seed));
        using var noGrad = no_grad();
        var parameters = extractor.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in parameters.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            Tensor? weight = p.dim() > 1 ? p
                : name.EndsWith(".bias", StringComparison.Ordinal) && parameters.TryGetValue(name[..^5] + ".weight", out var w) && w.dim() > 1 ? w
                : null;
            if (weight is not null)
            {
                double bound = 1.0 / Math.Sqrt(weight.numel() / weight.shape[0]);
                p.uniform_(-bound, bound, generator);
            }
        }
    }

    /// <summary>Logs a warning when the extractor still has random weights. Returns true when it warned.</summary>
    public static bool WarnIfRandom(FeatureExtractor extractor, ILogger? logger)
    {
        ArgumentNullException.ThrowIfNull(extractor);
        if (!extractor.IsRandom)
        {
            return false;
        }

        (logger ?? NullLogger.Instance).LogWarning(
            "The {Model} backbone has RANDOM weights: anomaly scores on real images will be meaningless. {Where}",
            extractor.ModelName,
            WhereToGetWeights);
        return true;
    }
}
