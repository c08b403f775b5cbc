using Microsoft.Extensions.Logging;

namespace UniAD.Core.Backbones;

/// <summary>Creates feature extractors by the reference's model names.</summary>
public static class Backbone
{
    /// <summary>Every model name <see cref="Create"/> accepts.</summary>
    public static IReadOnlyList<string> ModelNames { get; } = Enumerable.Range(0, 8).Select(i => $"efficientnet-b{i}")
        .Concat(new[] { "resnet18", "resnet34", "resnet50", "resnet101", "wide_resnet50_2", MlNetBackbone.ModelName }).ToArray();

    /// <summary>
    /// Builds a frozen extractor for <paramref name="modelName"/> (<c>efficientnet-b0</c>..<c>b7</c>, <c>resnet18</c>,
    /// <c>resnet34</c>, <c>resnet50</c>, <c>resnet101</c>, <c>wide_resnet50_2</c>, <c>mlnet-resnet18</c>) returning the
    /// given output layers (1..5 for EfficientNet, 1..4 for ResNet), and loads <paramref name="weightsPath"/> when
    /// given; otherwise warns through <paramref name="logger"/> that the weights are random.
    /// <paramref name="pixelMean"/> and <paramref name="pixelStd"/> say how the images are normalised (default
    /// ImageNet's); a backbone with its own input convention (<c>mlnet-resnet18</c>) converts from them.
    /// </summary>
    /// <exception cref="ArgumentException">Unknown model name or impossible layers.</exception>
    public static FeatureExtractor Create(string modelName, IReadOnlyList<int> layers, string? weightsPath = null, ILogger? logger = null, IReadOnlyList<double>? pixelMean = null, IReadOnlyList<double>? pixelStd = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelName);
        FeatureExtractor extractor = modelName.Trim().StartsWith("efficientnet", StringComparison.OrdinalIgnoreCase)
            ? EfficientNetFeatureExtractor.FromLayers(modelName, layers)
            : ResNetFeatureExtractor.FromLayers(ResNetFeatureExtractor.ParseVariant(modelName), layers, pixelMean, pixelStd);
        try
        {
            if (weightsPath is not null)
            {
                BackboneWeights.Load(extractor, weightsPath, logger);
            }
            else
            {
                BackboneWeights.WarnIfRandom(extractor, logger);
            }

            return extractor;
        }
        catch
        {
            extractor.Dispose();
            throw;
        }
    }
}
