using UniAD.Core.Backbones;
using static TorchSharp.torch;

namespace UniAD.Core.Models;

/// <summary>
/// The contract every model family implements (<see cref="UniADModel"/>, <see cref="MemoryBank.MemoryBankModel"/>): normalised
/// images in, one anomaly map per image on the input grid out; its state as named tensors to save and load. The detector
/// (<see cref="Detection.AnomalyDetector"/>) orchestrates any model through it: tiling, reference maps, image scores,
/// calibration, evaluation, checkpoints; the ONNX export emits it through its family's emitter.
/// </summary>
public interface IAnomalyModel
{
    /// <summary>The family key (<see cref="Detection.ModelFamilies"/>), stored in checkpoints and ONNX files.</summary>
    string Family { get; }

    /// <summary>The image size the model takes (every image or tile is resized or cut to it).</summary>
    GridSize InputSize { get; }

    /// <summary>The frozen feature extractor.</summary>
    FeatureExtractor Backbone { get; }

    /// <summary>The model as a TorchSharp module (device moves, train/eval mode).</summary>
    nn.Module Module { get; }

    /// <summary>Anomaly maps of B x 3 x H x W normalised images at <see cref="InputSize"/>: B x H x W on the images' device (no gradients).</summary>
    /// <exception cref="ArgumentException">The images do not have the input size.</exception>
    Tensor Maps(Tensor images);

    /// <summary>
    /// The classes the model needs at scoring time, one per image (a memory bank per class), or null when it needs none
    /// (the default): then <see cref="Maps(Tensor, IReadOnlyList{string})"/> ignores the classes.
    /// </summary>
    IReadOnlyCollection<string>? Classes => null;

    /// <summary>Anomaly maps as <see cref="Maps(Tensor)"/>, for images of known classes (one per image; null where unknown).</summary>
    /// <exception cref="ArgumentException">The images do not have the input size, or the model needs a class (<see cref="Classes"/>) that is missing or unknown.</exception>
    Tensor Maps(Tensor images, IReadOnlyList<string?> classNames) => Maps(images);

    /// <summary>The model's state under stable names (what a checkpoint stores after <c>model.</c>); the tensors belong to the model.</summary>
    IReadOnlyDictionary<string, Tensor> State();

    /// <summary>Restores the state <see cref="State"/> gave (from a checkpoint).</summary>
    /// <exception cref="Weights.StateDictMismatchException">A tensor is missing, unexpected or of another shape.</exception>
    void LoadState(IReadOnlyDictionary<string, Tensor> state);
}
