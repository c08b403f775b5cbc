using TorchSharp;
using UniAD.Core.Attention;
using UniAD.Core.Backbones;
using UniAD.Core.Detection;
using UniAD.Core.Reconstruction;
using UniAD.Core.TorchSupport;
using UniAD.Core.Training;
using UniAD.Core.Weights;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.TorchSupport;

/// <summary>
/// The CUDA path checked without a GPU: libtorch's <c>meta</c> device (shapes and dtypes, no data) stands in for a second
/// device where it works in TorchSharp 0.107 (moving modules, linear algebra, pooling, interpolation, softmax, losses; not
/// convolution, normalisation layers, <c>where</c>, <c>item</c>), and rejects CPU/meta mixes as CUDA does. What these
/// tests cannot show (kernels, numbers, speed on a GPU) is what <c>GpuSmokeTests</c> checks on a machine with CUDA.
/// </summary>
public sealed class DeviceTests
{
    private static readonly Device Meta = new("meta");

    public static TheoryData<string> Backbones => new() { "efficientnet-b0", "efficientnet-b4", "resnet18", "wide_resnet50_2" };

    [Theory]
    [MemberData(nameof(Backbones))]
    public void Every_parameter_and_buffer_of_a_backbone_moves_to_another_device(string model)
    {
        using var extractor = Backbone.Create(model, new[] { 1, 2, 3 });
        extractor.to(Meta);
        AllOn(extractor, DeviceType.META, model);
    }

    [Fact]
    public void The_mlnet_backbone_and_the_paper_network_move_whole()
    {
        using (var mlnet = Backbone.Create(MlNetBackbone.ModelName, new[] { 1, 2, 3 }, MlNetBackbone.FindModelFile()))
        {
            mlnet.to(Meta);
            AllOn(mlnet, DeviceType.META, MlNetBackbone.ModelName);
        }

        using var paper = new UniADReconstruction(new ReconstructionOptions());
        paper.to(Meta);
        AllOn(paper, DeviceType.META, "the paper's reconstruction");

        // A forward on the other device uses only that device's tensors: features on the CPU are refused, as CUDA would.
        paper.eval();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Assert.ThrowsAny<Exception>(() => paper.forward(zeros(1, 272, 14, 14, device: CPU)));
    }

    [Fact]
    public void Folded_batch_norm_weights_follow_a_move()
    {
        // TorchSharp's to() replaces the parameters (the path CPU-only tests never take); the folded cache must follow.
        using var extractor = Backbone.Create("efficientnet-b0", new[] { 1 });
        extractor.to(Meta);
        var folded = extractor.named_modules().Select(m => m.module).OfType<MBConvBlock>().First();
        AllOn(folded, DeviceType.META, "block 0");
    }

    [Fact]
    public void Device_keyed_helpers_make_their_tensors_on_the_device_asked_for()
    {
        using var scope = NewDisposeScope();
        var mask = NeighborMask.GetCached(new GridSize(14, 14), new GridSize(7, 7), Meta);
        Assert.Equal(DeviceType.META, mask.device_type);
        Assert.Equal(new long[] { 196, 196 }, mask.shape);
        Assert.Equal(DeviceType.CPU, NeighborMask.GetCached(new GridSize(14, 14), new GridSize(7, 7), CPU).device_type);

        foreach (var type in new[] { PositionEmbeddingType.Learned, PositionEmbeddingType.Sine })
        {
            using var embedding = PositionEmbedding.Create(type, new GridSize(14, 14), 256);
            embedding.to(Meta);
            Assert.Equal(DeviceType.META, embedding.forward(Meta).device_type);
        }

        using var neck = new MfcnNeck(new[] { 24, 32 }, new[] { 4, 8 });
        var align = neck.forward(new[] { zeros(2, 24, 56, 56, device: Meta), zeros(2, 32, 28, 28, device: Meta) });
        Assert.Equal(DeviceType.META, align.device_type);
        Assert.Equal(new long[] { 2, 56, 14, 14 }, align.shape);

        var references = new ReferenceMaps(new[] { new ClassReferenceMap("a", 2, 2, new float[] { 1, 2, 3, 4 }, 1e-3, 3) });
        var normalized = references.Normalize(ones(2, 8, 8, device: Meta), new[] { "a", "a" });
        Assert.Equal(DeviceType.META, normalized.device_type);
        Assert.Equal(new long[] { 2, 8, 8 }, normalized.shape);
        references.ClearCache();
    }

    [Fact]
    public void AdamW_keeps_its_state_on_the_parameters_device()
    {
        using var scope = NewDisposeScope();
        var weight = new TorchSharp.Modules.Parameter(zeros(4, 3, device: Meta));
        weight.grad = ones(4, 3, device: Meta);
        using var optimizer = new AdamW(new[] { ("w", weight) }, new AdamWOptions());
        optimizer.Step();
        Assert.All(optimizer.StateTensors().Where(kv => !kv.Key.StartsWith("step.", StringComparison.Ordinal)), kv => Assert.Equal(DeviceType.META, kv.Value.device_type));
        Assert.Equal(DeviceType.META, weight.device_type);
    }

    [Fact]
    public void Device_names_are_parsed_and_checked()
    {
        Assert.Equal(DeviceType.CPU, TorchDevices.Parse(" CPU ").type);
        Assert.Contains("cuda:N", Assert.Throws<ArgumentException>(() => TorchDevices.Parse("gpu")).Message);
        Assert.Contains("non-negative integer", Assert.Throws<ArgumentException>(() => TorchDevices.Parse("cuda:x")).Message);
        Assert.Contains("non-negative integer", Assert.Throws<ArgumentException>(() => TorchDevices.Parse("cuda:-1")).Message);
        if (!cuda.is_available())
        {
            Assert.Contains("TorchSharp-cuda", Assert.Throws<InvalidOperationException>(() => TorchDevices.Parse("cuda:0")).Message);
        }

        var outOfRange = Assert.Throws<InvalidOperationException>(() => TorchDevices.CheckIndex("cuda:2", 2, 2));
        Assert.Contains("CUDA device 2 does not exist", outOfRange.Message);
        Assert.Contains("cuda:0 to cuda:1", outOfRange.Message);
        TorchDevices.CheckIndex("cuda:1", 1, 2);
        Assert.True(TorchDevices.Same(new Device("cuda"), new Device("cuda:0")));
        Assert.False(TorchDevices.Same(new Device("cuda:1"), new Device("cuda:0")));
        Assert.False(TorchDevices.Same(CPU, Meta));
        TorchDevices.Synchronize(CPU); // a no-op off CUDA
    }

    private static void AllOn(nn.Module module, DeviceType type, string what)
    {
        var parameters = module.named_parameters().ToList();
        var buffers = module.named_buffers().ToList();
        Assert.NotEmpty(parameters);
        Assert.All(parameters, p => Assert.True(p.parameter.device_type == type, $"{what}: parameter {p.name} is on {p.parameter.device}"));
        Assert.All(buffers, b => Assert.True(b.buffer.device_type == type, $"{what}: buffer {b.name} is on {b.buffer.device}"));
    }
}

/// <summary>
/// Code that must work in an application that made a GPU its default device (<c>torch.set_default_device</c>): reading
/// checkpoints and drawing dropout masks create their tensors on the CPU explicitly, since they fill or read them through
/// <c>.bytes</c>, which non-CPU memory refuses. A non-CPU default is process-wide, so this class runs alone.
/// </summary>
[Collection(DefaultDeviceCollection.Name)]
public sealed class DefaultDeviceTests
{
    [Fact]
    public void Checkpoints_and_dropout_masks_stay_on_the_cpu_under_another_default_device()
    {
        var path = Path.Combine(Path.GetTempPath(), $"uniad-default-device-{Guid.NewGuid():N}.safetensors");
        try
        {
            using (var source = zeros(2, 3, device: CPU).add_(1.5f))
            {
                StateDict.SaveSafetensors(new Dictionary<string, Tensor> { ["w"] = source }, path);
            }

            set_default_device(new Device("meta"));
            try
            {
                Assert.Equal(DeviceType.META, zeros(1).device_type); // the default really is another device
                using var read = StateDict.ReadSafetensors(path);
                Assert.Equal(DeviceType.CPU, read["w"].device_type);
                Assert.Equal(1.5f, read["w"][1, 2].item<float>());
                using var mask = new DropoutRandom(7).Mask(new long[] { 4, 5 }, 0.5);
                Assert.Equal(DeviceType.CPU, mask.device_type);
                Assert.InRange(mask.sum().item<float>(), 0f, 40f);
            }
            finally
            {
                set_default_device(CPU);
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}

/// <summary>Tests that change process-wide torch state run in this collection, never in parallel with others.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class DefaultDeviceCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "process-wide torch state";
}
