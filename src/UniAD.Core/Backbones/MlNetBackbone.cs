using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Backbones;

/// <summary>
/// ML.NET's pretrained ImageNet ResNet-18, the backbone <c>mlnet-resnet18</c>: the ONNX file that the NuGet
/// package <c>Microsoft.ML.DnnImageFeaturizer.ResNet18</c> (MIT) ships, so a machine with nothing but NuGet
/// has real ImageNet features. Its graph is torchvision's ResNet-18 with three basic blocks in layer4
/// (layers 1..4 at strides 4, 8, 16, 32; 64, 128, 256, 512 channels), and it computes on CNTK's input
/// convention: channels B, G, R, values 0..255, minus a per-pixel 3 x 224 x 224 mean image (the package's
/// preprocessing graph). The backbone applies that convention itself: the detector keeps feeding normalised
/// RGB images.
/// </summary>
/// <remarks>
/// The package's build props copy its models into the application's output folder as
/// <c>DnnImageModels/ResNet18Onnx/ResNet18.onnx</c> and <c>DnnImageModels/ResNetPrepOnnx/ResNetPreprocess.onnx</c>;
/// <see cref="FindModelFile()"/> looks there. The library does not reference the 60 MB package: the
/// application does (<see cref="PackageReference"/>).
/// </remarks>
public static class MlNetBackbone
{
    /// <summary>The backbone's name in <see cref="Backbone.Create"/>, the builder and the CLI.</summary>
    public const string ModelName = "mlnet-resnet18";

    /// <summary>The NuGet package that ships the weights.</summary>
    public const string PackageId = "Microsoft.ML.DnnImageFeaturizer.ResNet18";

    /// <summary>The package version whose files were checked against the reference tensors.</summary>
    public const string PackageVersion = "0.23.1";

    /// <summary>The line an application adds to its project file to get the weights.</summary>
    public const string PackageReference = "<PackageReference Include=\"" + PackageId + "\" Version=\"" + PackageVersion + "\" />";

    /// <summary>The network's file, relative to the application's folder.</summary>
    public static readonly string RelativeModelPath = Path.Combine("DnnImageModels", "ResNet18Onnx", "ResNet18.onnx");

    /// <summary>The preprocessing graph (holding the mean image), relative to the application's folder.</summary>
    public static readonly string RelativePreprocessingPath = Path.Combine("DnnImageModels", "ResNetPrepOnnx", "ResNetPreprocess.onnx");

    /// <summary>The side of the package's mean image.</summary>
    public const int MeanImageSize = 224;

    /// <summary>Input sides must be multiples of this (the network's total stride).</summary>
    public const int SizeMultiple = 32;

    /// <summary>
    /// The network's ONNX file in the application's folder (<see cref="AppContext.BaseDirectory"/>, then the
    /// current directory).
    /// </summary>
    /// <exception cref="FileNotFoundException">Not found: the message names the PackageReference to add.</exception>
    public static string FindModelFile() => FindModelFile(new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() });

    /// <summary>The network's ONNX file under the first of <paramref name="folders"/> that has it.</summary>
    internal static string FindModelFile(IEnumerable<string> folders)
    {
        var candidates = folders
            .Select(d => Path.GetFullPath(Path.Combine(d, RelativeModelPath)))
            .Distinct(StringComparer.Ordinal)
            .ToArray();
        return candidates.FirstOrDefault(File.Exists) ?? throw new FileNotFoundException(
            $"The {ModelName} backbone's weights were not found (looked for {string.Join(" and ", candidates.Select(c => $"'{c}'"))}). " +
            $"They come from the NuGet package {PackageId}: add {PackageReference} to the application's project " +
            "(its build props copy DnnImageModels/ into the output folder), or pass the path of ResNet18.onnx as the backbone weights.",
            candidates[0]);
    }

    /// <summary>
    /// The preprocessing graph that belongs to <paramref name="modelPath"/>: the package's layout
    /// (<c>.../ResNet18Onnx/ResNet18.onnx</c> beside <c>.../ResNetPrepOnnx/ResNetPreprocess.onnx</c>), or
    /// <c>ResNetPreprocess.onnx</c> in the same folder.
    /// </summary>
    /// <exception cref="FileNotFoundException">Neither exists.</exception>
    public static string PreprocessingFileFor(string modelPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        var folder = Path.GetDirectoryName(Path.GetFullPath(modelPath))!;
        var candidates = new[]
        {
            Path.Combine(Path.GetDirectoryName(folder) ?? folder, "ResNetPrepOnnx", "ResNetPreprocess.onnx"),
            Path.Combine(folder, "ResNetPreprocess.onnx"),
        };
        return candidates.FirstOrDefault(File.Exists) ?? throw new FileNotFoundException(
            $"The {ModelName} backbone needs the mean image of the package's preprocessing graph; looked for {string.Join(" and ", candidates.Select(c => $"'{c}'"))}. " +
            $"Both files come from the NuGet package {PackageId} ({PackageReference}).",
            candidates[0]);
    }

    /// <summary>Refuses input sides that are not positive multiples of 32.</summary>
    /// <exception cref="ArgumentException">A side is not a positive multiple of 32.</exception>
    public static void CheckInputSize(long height, long width)
    {
        if (height <= 0 || width <= 0 || height % SizeMultiple != 0 || width % SizeMultiple != 0)
        {
            throw new ArgumentException(
                $"{ModelName} needs an input whose sides are multiples of {SizeMultiple}; got {height} x {width}. " +
                $"Its CNTK graph pads stride-2 layers on the top and left only, which matches torchvision's symmetric padding only at such sizes (e.g. 224, 256, 288).");
        }
    }

    /// <summary>
    /// The mean image at an input size (the documented rule): the package's 224 x 224 image as it is at
    /// 224 x 224; at any other size it is resized like an image, bilinearly with half-pixel centres
    /// (<c>align_corners = false</c>), antialiased when shrinking, so every pixel keeps the mean of the
    /// part of the picture it covers. <paramref name="meanImage"/> is 1 x 3 x h x w.
    /// </summary>
    /// <exception cref="ArgumentException">A side is not a positive multiple of 32.</exception>
    public static Tensor MeanImageAt(Tensor meanImage, long height, long width)
    {
        ArgumentNullException.ThrowIfNull(meanImage);
        CheckInputSize(height, width);
        if (meanImage.shape[2] == height && meanImage.shape[3] == width)
        {
            return meanImage.alias();
        }

        bool shrinks = height < meanImage.shape[2] || width < meanImage.shape[3];
        return F.interpolate(meanImage, new[] { height, width }, mode: InterpolationMode.Bilinear, align_corners: false, antialias: shrinks);
    }
}
