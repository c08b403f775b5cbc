using System.Text;
using System.Text.Json.Nodes;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Tests.Data;
using UniAD.Core.Weights;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.Detection;

/// <summary>
/// The error contract: every documented failure is an <see cref="InvalidDataException"/>, an <see cref="IOException"/>
/// or an <see cref="ArgumentException"/> (or derives from one), names the value or file, and never escapes as a
/// wrapper, a native error or a crash.
/// </summary>
public sealed class ErrorContractTests(SyntheticData data) : IClassFixture<SyntheticData>
{
    [Fact]
    public void A_bad_file_in_a_batch_is_reported_as_itself_not_wrapped()
    {
        using var temp = new TempFolder();
        using var detector = SyntheticData.TinyBuilder().Build();
        var good = data.Test.Samples.Take(3).Select(s => s.ImagePath).ToList();
        var empty = temp.File("empty.png");
        File.WriteAllBytes(empty, Array.Empty<byte>());
        var truncated = temp.File("truncated.png");
        File.WriteAllBytes(truncated, File.ReadAllBytes(good[0]).AsSpan(0, 60).ToArray());
        var missing = temp.File("missing.png");

        // The first failing file in input order, whatever the decoding threads finish first.
        var paths = new List<string> { good[0], truncated, good[1], empty, missing };
        var batch = Assert.Throws<ImageFileException>(() => detector.ScoreBatch(paths, batchSize: 5));
        Assert.Contains(truncated, batch.Message);
        var lazy = Assert.Throws<FileNotFoundException>(() => detector.ScoreStream(new[] { good[0], good[1], missing }, batchSize: 2).ToList());
        Assert.Contains(missing, lazy.Message);

        // Results of the batches before the failure were already yielded.
        var yielded = new List<AnomalyResult>();
        Assert.Throws<ImageFileException>(() =>
        {
            foreach (var r in detector.ScoreStream(new[] { good[0], good[1], good[2], empty }, batchSize: 2))
            {
                yielded.Add(r);
            }
        });
        Assert.Equal(new[] { good[0], good[1] }, yielded.Select(r => r.Source));
    }

    [Fact]
    public void A_state_dict_mismatch_is_an_argument_exception()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        var wrong = new Dictionary<string, Tensor> { ["nonsense.weight"] = zeros(3) };
        var ex = Assert.Throws<StateDictMismatchException>(() => StateDict.Load(detector.Model, wrong));
        Assert.IsAssignableFrom<ArgumentException>(ex);
        Assert.Contains("nonsense.weight", ex.Message);
    }

    [Theory]
    [InlineData(65536, 65536, 8)]
    [InlineData(8200, 64, 8)]
    [InlineData(1024, 1024, 8)]
    public void Crafted_input_sizes_are_refused_before_allocating(int height, int width, int stride)
    {
        var ex = Assert.Throws<ArgumentException>(() => SyntheticData.TinyBuilder().WithInputSize(height, width).WithNeckStride(stride).Build());
        Assert.Contains($"{height}x{width}", ex.Message);
    }

    [Fact]
    public void Too_many_tokens_in_reconstruction_options_are_refused()
    {
        var options = new UniAD.Core.Reconstruction.ReconstructionOptions { FeatureSize = new GridSize(4096, 4096), InputChannels = 8, InputStride = 8 };
        Assert.Contains("16777216 tokens", Assert.Throws<ArgumentException>(options.Validate).Message);
        Assert.Throws<OverflowException>(() => new GridSize(65536, 65536).Count);
    }

    [Theory]
    [InlineData("inputSize", 65536)]
    [InlineData("version", 0)]
    [InlineData("version", -3)]
    [InlineData("calibrationImages", 0)]
    [InlineData("calibrationMinAboveMax", 1)]
    [InlineData("imageThresholdHuge", 1)]
    [InlineData("pixelThresholdVeryNegative", 1)]
    public void Crafted_checkpoint_metadata_is_refused_at_load(string what, int value)
    {
        using var temp = new TempFolder();
        var path = temp.File("detector.safetensors");
        using (var detector = SyntheticData.TinyBuilder().Build())
        {
            detector.Calibrate(data.Test);
            detector.Save(path);
        }

        var (tensors, metadata) = SafetensorsFile.Read(path);
        using (tensors)
        {
            var info = JsonNode.Parse(metadata["uniad.info"])!.AsObject();
            var calibration = info[Key(info, "Calibration")]!.AsObject();
            switch (what)
            {
                case "inputSize":
                    var size = info[Key(info, "Options")]![Key(info[Key(info, "Options")]!.AsObject(), "InputSize")]!.AsObject();
                    size[Key(size, "Height")] = value;
                    size[Key(size, "Width")] = value;
                    break;
                case "version":
                    info[Key(info, "Version")] = value;
                    break;
                case "calibrationImages":
                    calibration[Key(calibration, "Images")] = value;
                    break;
                case "imageThresholdHuge": // every image would be normal
                    calibration[Key(calibration, "ImageThreshold")] = 1e308;
                    break;
                case "pixelThresholdVeryNegative": // every pixel would be anomalous
                    calibration[Key(calibration, "PixelThreshold")] = -1e30;
                    break;
                default:
                    calibration[Key(calibration, "ImageMin")] = 1e9;
                    break;
            }

            var changed = new Dictionary<string, string>(metadata) { ["uniad.info"] = info.ToJsonString() };
            SafetensorsFile.Write(path, tensors, changed);
        }

        var ex = Assert.Throws<InvalidDataException>(() => AnomalyDetector.Load(path));
        Assert.Contains(path, ex.Message);
        Assert.Contains(what switch
        {
            "inputSize" => "65536x65536",
            "version" => $"version {value}",
            "calibrationImages" => "0 calibration images",
            "imageThresholdHuge" => "image threshold 1E+308 outside the calibration's observed image scores [",
            "pixelThresholdVeryNegative" => "pixel threshold -1E+30 outside the calibration's observed map values [",
            _ => "min 1000000000",
        }, ex.Message);
    }

    [Fact]
    public void A_tensor_shape_whose_size_overflows_is_refused_without_allocating()
    {
        using var temp = new TempFolder();
        var path = temp.File("crafted.safetensors");
        WriteRawSafetensors(path, """{"w":{"dtype":"F32","shape":[1099511627776,1073741824],"data_offsets":[0,4]}}""", 4);
        var ex = Assert.Throws<InvalidDataException>(() => SafetensorsFile.Read(path));
        Assert.Contains("1099511627776", ex.Message);
        Assert.Contains("overflows", ex.Message);

        var huge = temp.File("huge.safetensors");
        WriteRawSafetensors(huge, """{"w":{"dtype":"F32","shape":[1048576,1048576],"data_offsets":[0,4]}}""", 4);
        var tooBig = Assert.Throws<InvalidDataException>(() => SafetensorsFile.Read(huge));
        Assert.Contains("4398046511104 expected", tooBig.Message);
    }

    [Fact]
    public void Non_finite_input_or_weights_are_refused_and_float64_is_converted()
    {
        using var detector = SyntheticData.TinyBuilder().Build();
        using var input = randn(2, 3, 64, 64);
        var reference = detector.ScoreTensor(input);
        using (var doubles = input.to(float64))
        {
            var converted = detector.ScoreTensor(doubles);
            Assert.Equal(reference.Select(r => r.Score), converted.Select(r => r.Score));
        }

        using (var withNan = input.clone())
        {
            withNan[1, 0, 5, 5] = tensor(float.NaN);
            var ex = Assert.Throws<ArgumentException>(() => detector.ScoreTensor(withNan, new[] { "a", "b" }));
            Assert.Contains("Image 1 ('b')", ex.Message);
        }

        using (var withInf = input.clone())
        {
            withInf[0, 2, 0, 0] = tensor(float.PositiveInfinity);
            Assert.Contains("Image 0", Assert.Throws<ArgumentException>(() => detector.ScoreTensor(withInf)).Message);
        }

        using (var integers = input.to(int32))
        {
            Assert.Contains("Int32", Assert.Throws<ArgumentException>(() => detector.ScoreTensor(integers)).Message);
        }

        using (no_grad())
        {
            detector.Model.Reconstruction.parameters().First().fill_(float.NaN);
        }

        var file = data.Test.Samples[0].ImagePath;
        var nanModel = Assert.Throws<InvalidDataException>(() => detector.Score(file));
        Assert.Contains(file, nanModel.Message);
        Assert.Contains("NaN", nanModel.Message);
    }

    [Fact]
    public void Calibration_sanity_is_checked()
    {
        Assert.Null(new Calibration(CalibrationMethod.F1Max, 1, 0, 2, 0.5, 0, 1, 10).Problem());
        Assert.NotNull(new Calibration(CalibrationMethod.F1Max, double.NaN, 0, 2, 0.5, 0, 1, 10).Problem());
        Assert.NotNull(new Calibration(CalibrationMethod.F1Max, 1, 3, 2, 0.5, 0, 1, 10).Problem());
        Assert.NotNull(new Calibration(CalibrationMethod.F1Max, 1, 0, 2, 0.5, 2, 1, 10).Problem());
        Assert.NotNull(new Calibration(CalibrationMethod.F1Max, 1, 0, 2, double.PositiveInfinity, 0, 1, 10).Problem());
        Assert.NotNull(new Calibration((CalibrationMethod)7, 1, 0, 2, 0.5, 0, 1, 10).Problem());
        Assert.Contains("image threshold 3 outside", new Calibration(CalibrationMethod.F1Max, 3, 0, 2, 0.5, 0, 1, 10).Problem());
        Assert.Contains("pixel threshold -0.5 outside", new Calibration(CalibrationMethod.F1Max, 1, 0, 2, -0.5, 0, 1, 10).Problem());
        Assert.Null(new Calibration(CalibrationMethod.F1Max, 2, 0, 2, 0, 0, 1, 10).Problem()); // the range's ends are inside
    }

    /// <summary>The property name as the checkpoint's JSON spells it (camel or Pascal case).</summary>
    private static string Key(JsonObject o, string name) =>
        o.Select(p => p.Key).FirstOrDefault(k => string.Equals(k, name, StringComparison.OrdinalIgnoreCase)) ?? throw new KeyNotFoundException(name);

    private static void WriteRawSafetensors(string path, string header, int dataBytes)
    {
        var json = Encoding.UTF8.GetBytes(header);
        using var f = File.Create(path);
        f.Write(BitConverter.GetBytes((long)json.Length));
        f.Write(json);
        f.Write(new byte[dataBytes]);
    }
}
