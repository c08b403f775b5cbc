using System.Text.Json;
using UniAD.Core.Data;
using UniAD.Core.Weights;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Parity;

/// <summary>
/// Decoding and preprocessing against the reference pipeline (fixtures/preprocess/*): every tensor of
/// <c>expected.safetensors</c> is recomputed from the image file of the same name (a key ending in
/// <c>_mask</c> is a mask).
/// </summary>
public sealed class PreprocessParityTests(ITestOutputHelper output)
{
    // Tolerance. The resampler reproduces PIL's BILINEAR arithmetic (the same coefficients, the same 22-bit
    // fixed-point rounding, the same 8-bit intermediate image) and the normalisation repeats torchvision's
    // float32 operations, so the measured difference is zero on both images (mean and max). The bound kept
    // here is still below one 8-bit level (1 / 255 / 0.229 = 0.0171 in normalised units): a pixel
    // would have to be one level off, which only another resampler or decoder would do.
    private const double MaxAbsImage = 1e-5;
    private const double MeanAbsImage = 1e-6;

    public static TheoryData<string, string> Cases => Fixtures.Cases("preprocess");

    [Theory]
    [MemberData(nameof(Cases))]
    public void Images_and_masks_match_the_reference_pipeline(string caseName, string source)
    {
        var dir = Fixtures.CaseDirectory("preprocess", caseName, source);
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        var options = PreprocessOptions.FromReferenceConfig(config.RootElement);
        using var expected = StateDict.ReadSafetensors(Path.Combine(dir, "expected.safetensors"));
        Assert.NotEmpty(expected.Keys);
        foreach (var key in expected.Keys)
        {
            using var scope = NewDisposeScope();
            var file = Directory.GetFiles(dir, key + ".*").Single(f => !f.EndsWith(".safetensors", StringComparison.Ordinal));
            var want = expected[key];
            if (key.EndsWith("_mask", StringComparison.Ordinal))
            {
                var mask = ImagePreprocessor.LoadMask(file, options);
                Assert.Equal(want.shape, mask.shape);
                long differing = mask.ne(want).sum().item<long>();
                output.WriteLine($"[{source}] {caseName}/{key}: {differing} of {want.numel()} mask pixels differ, {want.sum().item<float>()} anomalous");
                Assert.Equal(0L, differing);
            }
            else
            {
                var image = ImagePreprocessor.LoadImage(file, options);
                Assert.Equal(want.shape, image.shape);
                var diff = (image.to(float64) - want.to(float64)).abs();
                double mean = diff.mean().item<double>();
                double max = diff.max().item<double>();
                long offPixels = diff.gt(1e-3).sum().item<long>();
                output.WriteLine($"[{source}] {caseName}/{key}: mean |diff| {mean:E3}, max |diff| {max:E3}, {offPixels} of {want.numel()} values off by more than 1e-3");
                Assert.True(mean <= MeanAbsImage, $"{key}: mean |diff| {mean:E3} above {MeanAbsImage:E1}");
                Assert.True(max <= MaxAbsImage, $"{key}: max |diff| {max:E3} above {MaxAbsImage:E1}");
            }
        }
    }
}
