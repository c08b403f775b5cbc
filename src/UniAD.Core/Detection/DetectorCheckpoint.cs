using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
using TorchSharp;
using UniAD.Core.Training;
using UniAD.Core.Weights;
using static TorchSharp.torch;

namespace UniAD.Core.Detection;

/// <summary>
/// The detector's file format: ONE safetensors file holding the weights (<c>model.*</c>: backbone and
/// reconstruction, under the reference's names), optionally the optimizer state (<c>optimizer.*</c>, for
/// resuming), and in its metadata the JSON description: format version, <see cref="DetectorOptions"/>,
/// <see cref="Calibration"/> and training progress. Written atomically; readable by any safetensors reader.
/// </summary>
public static class DetectorCheckpoint
{
    /// <summary>The format identifier stored under the metadata key <c>uniad.format</c>.</summary>
    public const string Format = "UniAD.Core.Detector";

    /// <summary>The current format version.</summary>
    public const int Version = 1;

    private const string ModelPrefix = "model.";

    /// <summary>The metadata key of the model family (<see cref="ModelFamilies"/>); files without it are UniAD.</summary>
    public const string FamilyKey = "uniad.family";
    private const string OptimizerPrefix = "optimizer.";

    /// <summary>JSON settings of the metadata (enums as names).</summary>
    internal static readonly JsonSerializerOptions Json = new()
    {
        Converters = { new JsonStringEnumConverter() },
        WriteIndented = false,
    };

    /// <summary>What a checkpoint says about itself.</summary>
    /// <param name="Format">Always <see cref="DetectorCheckpoint.Format"/>.</param>
    /// <param name="Version">Format version.</param>
    /// <param name="Library">The UniAD.Core version that wrote it.</param>
    /// <param name="Options">The detector's configuration.</param>
    /// <param name="Calibration">Thresholds and normalisation, or null.</param>
    /// <param name="Epoch">Epochs trained.</param>
    /// <param name="LearningRate">Learning rate at the time of writing (for resuming).</param>
    /// <param name="HasOptimizerState">Whether the file holds the optimizer state.</param>
    public sealed record Info(string Format, int Version, string Library, DetectorOptions Options, Calibration? Calibration, int Epoch, double LearningRate, bool HasOptimizerState)
    {
        /// <summary>The learning-rate schedule's total steps planned for a time budget (reused on resume), or null.</summary>
        public long? ScheduleTotalSteps { get; init; }

        /// <summary>Per-class reference maps (<see cref="AnomalyDetector.ReferenceMaps"/>) without their values (tensors <c>reference.N</c>), or null.</summary>
        public IReadOnlyList<ReferenceInfo>? References { get; init; }
    }

    /// <summary>A stored reference map: its class, grid, epsilon and image count; the values are the tensor <c>reference.{Index}</c>.</summary>
    /// <param name="Index">Number of the tensor.</param>
    /// <param name="ClassName">The class.</param>
    /// <param name="Height">Grid rows.</param>
    /// <param name="Width">Grid columns.</param>
    /// <param name="Epsilon">Added before dividing.</param>
    /// <param name="Images">Normal images averaged.</param>
    public sealed record ReferenceInfo(int Index, string ClassName, int Height, int Width, double Epsilon, int Images);

    private const string ReferencePrefix = "reference.";

    /// <summary>Reads only the description of a checkpoint.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a UniAD.Core detector checkpoint, or of a newer format version.</exception>
    public static Info ReadInfo(string path) => Parse(SafetensorsFile.ReadMetadata(path), path);

    /// <summary>
    /// Replaces the calibration stored in a checkpoint and keeps everything else, optimizer state included, so a
    /// training checkpoint calibrated in place can still be resumed (<see cref="AnomalyDetector.Save"/> writes a
    /// scoring file without optimizer state). Written atomically to <paramref name="outputPath"/> (default: in place).
    /// </summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a detector checkpoint, or the calibration is impossible.</exception>
    public static void WriteCalibration(string path, Calibration calibration, string? outputPath = null)
    {
        ArgumentNullException.ThrowIfNull(calibration);
        if (calibration.Problem() is { } problem)
        {
            throw new InvalidDataException($"Cannot store an impossible calibration in '{path}': {problem}.");
        }

        var (tensors, metadata) = SafetensorsFile.Read(path);
        using (tensors)
        {
            var info = Parse(metadata, path) with { Calibration = calibration, Version = Version, Library = LibraryVersion() };
            var updated = new Dictionary<string, string>(metadata, StringComparer.Ordinal) { ["uniad.info"] = JsonSerializer.Serialize(info, Json) };
            SafetensorsFile.Write(outputPath ?? path, tensors, updated);
        }
    }

    internal static void Save(AnomalyDetector detector, string path, AdamW? optimizer)
    {
        TorchSupport.Finiteness.RequireFinite(detector.AnomalyModel, $"save '{path}'");
        var references = detector.ReferenceMaps?.Classes.Values.OrderBy(r => r.ClassName, StringComparer.Ordinal).ToList();
        var info = new Info(Format, Version, LibraryVersion(), detector.Options, detector.Calibration, detector.EpochsTrained, optimizer?.LearningRate ?? 0, optimizer is not null)
        {
            ScheduleTotalSteps = optimizer is null ? null : detector.ScheduleTotalSteps,
            References = references?.Select((r, i) => new ReferenceInfo(i, r.ClassName, r.Height, r.Width, r.Epsilon, r.Images)).ToList(),
        };
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var referenceTensors = references?.Select(r => tensor(r.Values.ToArray(), new long[] { r.Height, r.Width }, device: CPU)).ToList() ?? new List<Tensor>();
        for (int i = 0; i < referenceTensors.Count; i++)
        {
            tensors[ReferencePrefix + i.ToString(System.Globalization.CultureInfo.InvariantCulture)] = referenceTensors[i];
        }

        foreach (var (key, value) in detector.AnomalyModel.State())
        {
            tensors[ModelPrefix + key] = value;
        }

        var state = optimizer?.StateTensors() ?? new Dictionary<string, Tensor>();
        try
        {
            foreach (var (key, value) in state)
            {
                tensors[OptimizerPrefix + key] = value;
            }

            SafetensorsFile.Write(path, tensors, new Dictionary<string, string> { ["uniad.format"] = Format, [FamilyKey] = detector.Family, ["uniad.info"] = JsonSerializer.Serialize(info, Json) });
        }
        finally
        {
            foreach (var t in state.Values.Concat(referenceTensors))
            {
                t.Dispose();
            }
        }
    }

    internal static AnomalyDetector Load(string path, string? device, ILoggerFactory? loggerFactory)
    {
        Native.TorchRuntime.EnsureLoaded();
        var (tensors, metadata) = SafetensorsFile.Read(path);
        using (tensors)
        {
            var info = Parse(metadata, path);
            AnomalyDetector detector;
            try
            {
                detector = AnomalyDetectorBuilder.Create(info.Options, weightsPath: null, device ?? "cpu", loggerFactory, warnIfRandom: false, info.Calibration, info.Epoch);
            }
            catch (ArgumentException ex) when (ex is not StateDictMismatchException && !(device is not null && ex.ParamName == "name"))
            {
                throw new InvalidDataException($"'{path}' describes a detector that cannot be built: {ex.Message}", ex);
            }

            try
            {
                LoadModel(detector, tensors, path);
                if (TorchSupport.Finiteness.FirstNonFinite(detector.AnomalyModel.State()) is { } poisoned)
                {
                    throw new InvalidDataException($"'{path}' holds NaN or infinite weights ('{poisoned}'): it comes from a training run that diverged; train again with a lower learning rate.");
                }

                detector.RestoreReferenceMaps(ReadReferences(info, tensors, path));
                detector.SourcePath = Path.GetFullPath(path);
                return detector;
            }
            catch
            {
                detector.Dispose();
                throw;
            }
        }
    }

    /// <summary>
    /// The body of <see cref="AnomalyDetector.ImportReference"/>: the authors' <c>ckpt.pth.tar</c> and config read by
    /// <see cref="Models.ReferenceCheckpoint"/> into a new, uncalibrated detector on <paramref name="device"/> (the CPU by default).
    /// </summary>
    internal static AnomalyDetector ImportReference(string checkpointPath, string configPath, string? device, ILoggerFactory? loggerFactory)
    {
        var model = Models.ReferenceCheckpoint.Load(checkpointPath, configPath, loggerFactory?.CreateLogger("UniAD.Core.Models.ReferenceCheckpoint"));
        try
        {
            var o = model.Reconstruction.Options;
            var options = new DetectorOptions
            {
                Backbone = model.Backbone.ModelName,
                BackboneLayers = model.Backbone.Outputs.Select(x => x.Layer).ToArray(),
                NeckStride = model.Neck.OutputStride,
                InputSize = model.InputSize,
                Reconstruction = o,
            };
            var target = device is null ? CPU : TorchSupport.TorchDevices.Parse(device);
            model.to(target);
            return new AnomalyDetector(options, model, target, loggerFactory, calibration: null, epochsTrained: 0);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Restores weights, optimizer state and epoch into a detector being trained; returns the epoch.</summary>
    internal static int Resume(AnomalyDetector detector, string path, AdamW optimizer)
    {
        var (tensors, metadata) = SafetensorsFile.Read(path);
        using (tensors)
        {
            var info = Parse(metadata, path);
            var mine = JsonSerializer.Serialize(detector.Options, Json);
            var theirs = JsonSerializer.Serialize(info.Options, Json);
            if (mine != theirs)
            {
                throw new InvalidDataException($"Cannot resume from '{path}': it was written for another configuration ({theirs}), this detector has {mine}.");
            }

            if (!info.HasOptimizerState)
            {
                throw new InvalidDataException($"Cannot resume from '{path}': it holds no optimizer state (only training writes resumable checkpoints).");
            }

            LoadModel(detector, tensors, path);
            optimizer.LoadState(tensors.Where(kv => kv.Key.StartsWith(OptimizerPrefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[OptimizerPrefix.Length..], kv => kv.Value));
            detector.ScheduleTotalSteps = info.ScheduleTotalSteps;
            return info.Epoch;
        }
    }

    private static ReferenceMaps? ReadReferences(Info info, TensorDictionary tensors, string path)
    {
        if (info.References is not { Count: > 0 } references)
        {
            return null;
        }

        var maps = new List<ClassReferenceMap>();
        foreach (var r in references)
        {
            var key = ReferencePrefix + r.Index.ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (!tensors.TryGetValue(key, out var t) || t.dtype != ScalarType.Float32 || t.dim() != 2 || t.shape[0] != r.Height || t.shape[1] != r.Width)
            {
                throw new InvalidDataException($"'{path}': the reference map of class '{r.ClassName}' ({key}, {r.Height} x {r.Width} float32) is missing or of another shape.");
            }

            maps.Add(new ClassReferenceMap(r.ClassName, r.Height, r.Width, t.contiguous().data<float>().ToArray(), r.Epsilon, r.Images));
        }

        try
        {
            return new ReferenceMaps(maps);
        }
        catch (ArgumentException ex)
        {
            throw new InvalidDataException($"'{path}' holds impossible reference maps: {ex.Message}", ex);
        }
    }

    private static void LoadModel(AnomalyDetector detector, TensorDictionary tensors, string path)
    {
        var model = tensors.Where(kv => kv.Key.StartsWith(ModelPrefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[ModelPrefix.Length..], kv => kv.Value);
        try
        {
            detector.AnomalyModel.LoadState(model);
        }
        catch (StateDictMismatchException ex)
        {
            throw new InvalidDataException($"The weights in '{path}' do not fit the configuration it describes: {ex.Message}", ex);
        }
    }

    private static Info Parse(IReadOnlyDictionary<string, string> metadata, string path)
    {
        if (!metadata.TryGetValue("uniad.format", out var format) || format != Format || !metadata.TryGetValue("uniad.info", out var json))
        {
            throw new InvalidDataException($"'{path}' is not a UniAD.Core detector checkpoint (no '{Format}' metadata). For the authors' checkpoints use AnomalyDetector.ImportReference.");
        }

        Info? info;
        try
        {
            info = JsonSerializer.Deserialize<Info>(json, Json);
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"'{path}' has an unreadable detector description: {ex.Message}", ex);
        }

        if (info is null || info.Options is null)
        {
            throw new InvalidDataException($"'{path}' has an empty detector description.");
        }

        // The family: the file's key and its options agree; a file written before families existed is UniAD.
        string family = ModelFamilies.Parse(metadata.TryGetValue(FamilyKey, out var key) ? key : null, path);
        string optionsFamily = ModelFamilies.Parse(info.Options.Family, path);
        if (family != optionsFamily || (family == ModelFamilies.MemoryBank && info.Options.MemoryBank is null))
        {
            throw new InvalidDataException($"'{path}' is inconsistent: its metadata says family '{family}', its options '{optionsFamily}'{(info.Options.MemoryBank is null && family == ModelFamilies.MemoryBank ? " without memory-bank settings" : string.Empty)}.");
        }

        if (info.Version <= 0)
        {
            throw new InvalidDataException($"'{path}' claims checkpoint format version {info.Version}; versions start at 1.");
        }

        if (info.Calibration is { } c && c.Problem() is { } problem)
        {
            throw new InvalidDataException($"'{path}' holds an impossible calibration: {problem}.");
        }

        if (info.Epoch < 0)
        {
            throw new InvalidDataException($"'{path}' claims {info.Epoch} epochs trained.");
        }

        if (info.Version > Version)
        {
            throw new InvalidDataException($"'{path}' uses checkpoint format {info.Version}; this UniAD.Core ({LibraryVersion()}) reads up to {Version}.");
        }

        return info;
    }

    private static string LibraryVersion() =>
        typeof(DetectorCheckpoint).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";
}
