using UniAD.Core.TorchSupport;
using UniAD.Core.Backbones;
using UniAD.Core.Tests.Detection;
using static TorchSharp.torch;

namespace UniAD.Core.Tests.TorchSupport;

/// <summary>
/// TorchSharp frees the native scalars of expressions such as <c>a + b</c> in their finalizers, which can run
/// while libtorch still uses them. Training and scoring must survive garbage collections at any moment.
/// </summary>
public sealed class ScalarSafeTests(SyntheticData data) : IClassFixture<SyntheticData>
{
    [Fact]
    public void Helpers_compute_what_the_operators_compute()
    {
        using var scope = NewDisposeScope();
        var a = tensor(new[] { 1f, -2f, 3.5f });
        var b = tensor(new[] { 0.5f, 4f, -1f });
        Assert.Equal(new[] { 1.5f, 2f, 2.5f }, a.Plus(b).data<float>().ToArray());
        Assert.Equal(new[] { 2f, -1f, 4.5f }, a.PlusScalar(1).data<float>().ToArray());
        Assert.Equal(new[] { -3f, 6f, -10.5f }, a.Times(-3).data<float>().ToArray());
        Assert.Equal(new[] { 0.5f, -1f, 1.75f }, a.DividedBy(2).data<float>().ToArray());
        var c = a.clone();
        c.PlusInPlace(b).TimesInPlace(2).PlusScalarInPlace(1).PlusScaledInPlace(b, -1);
        Assert.Equal(new[] { 3.5f, 1f, 7f }, c.data<float>().ToArray());
        var d = a.clone();
        d.AddcmulInPlace(a, b, 2).AddcdivInPlace(a, b, 0.5);
        Assert.Equal(new[] { 3f, -18.25f, -5.25f }, d.data<float>().ToArray());
    }

    [Fact]
    public void Training_and_scoring_survive_garbage_collections_at_any_moment()
    {
        using var stop = new CancellationTokenSource();
        var collector = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
        }) { IsBackground = true };
        collector.Start();
        try
        {
            using var detector = SyntheticData.TinyBuilder().Build();
            var result = detector.Train(data.Train, SyntheticData.Quick(40));
            Assert.Equal(40, result.EpochsCompleted);
            var paths = data.Test.Samples.Select(s => s.ImagePath).ToList();
            for (int i = 0; i < 10; i++)
            {
                Assert.All(detector.ScoreBatch(paths, batchSize: 2), s => Assert.True(double.IsFinite(s.Score)));
            }

            using var efficientNet = EfficientNetFeatureExtractor.FromLayers("efficientnet-b0", new[] { 1, 2, 3 });
            using var images = randn(2, 3, 64, 64);
            for (int i = 0; i < 20; i++)
            {
                using var scope = NewDisposeScope();
                Assert.Equal(3, efficientNet.forward(images).Length);
            }
        }
        finally
        {
            stop.Cancel();
            collector.Join();
        }
    }
}
