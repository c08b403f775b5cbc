using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using static TorchSharp.torch;

namespace UniAD.Core.Detection;

/// <summary>
/// The training feature cache of a detector: the frozen backbone's features computed once (on the detector's device) and
/// kept in memory or on disk, keyed by a fingerprint of the backbone's configuration and weights.
/// </summary>
internal static class DetectorFeatureCache
{
    /// <summary>A feature cache of the detector's backbone (on its device), keyed by the backbone's fingerprint, with the options' folder and bad-input policy.</summary>
    public static FeatureCache Create(AnomalyDetector detector, TrainingOptions options) => new(
        images =>
        {
            using var scope = NewDisposeScope();
            return detector.Model.ExtractFeatures(images.to(detector.Device)).cpu().MoveToOuterDisposeScope();
        },
        BackboneFingerprint(detector),
        new FeatureCacheOptions { Directory = options.FeatureCacheDirectory, Preprocess = detector.Preprocess, OnBadInput = options.OnBadInput },
        detector.LoggerFactory.CreateLogger<FeatureCache>());

    private static string BackboneFingerprint(AnomalyDetector detector)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var (name, tensor) in detector.Model.Backbone.state_dict().OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes(name));
            using var cpu = tensor.detach().cpu().contiguous();
            hash.AppendData(cpu.bytes);
        }

        var weights = Convert.ToHexString(hash.GetHashAndReset())[..16];
        return $"{detector.Options.Backbone}|{string.Join(',', detector.Options.BackboneLayers)}|stride{detector.Options.NeckStride}|{detector.Options.InputSize}|{weights}";
    }
}
