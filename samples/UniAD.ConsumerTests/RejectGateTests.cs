using Consumer.Inspection;
using NSubstitute;
using NSubstitute.ExceptionExtensions;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Testing;
using Xunit;

namespace Consumer.Tests;

/// <summary>The consumer's reject gate with a FAKED scorer: the test chooses what the model says.</summary>
public sealed class RejectGateWithAFakeTests
{
    private static AnomalyResult Result(double normalized, bool? anomalous) =>
        new("part.png", Score: normalized * 2, NormalizedScore: anomalous is null ? null : normalized, IsAnomalous: anomalous, new AnomalyMapData(1, 1, new[] { 0f }), Mask: null);

    [Theory]
    [InlineData(0.2, false, Decision.Pass)]
    [InlineData(0.9, true, Decision.Reject)]
    [InlineData(0.52, true, Decision.Review)]
    [InlineData(0.48, false, Decision.Review)]
    public async Task The_gate_follows_the_verdict_and_sends_borderline_parts_to_review(double normalized, bool anomalous, Decision expected)
    {
        var scorer = Substitute.For<IImageScorer>();
        scorer.ScoreAsync("part.png", Arg.Any<string?>(), Arg.Any<CancellationToken>()).Returns(Result(normalized, anomalous));

        var outcome = await new RejectGate(scorer).InspectAsync("part.png");

        Assert.Equal(expected, outcome.Decision);
        Assert.Equal(normalized * 2, outcome.Score);
    }

    [Fact]
    public async Task An_uncalibrated_model_sends_every_part_to_review()
    {
        var scorer = Substitute.For<IImageScorer>();
        scorer.ScoreAsync(Arg.Any<string>(), Arg.Any<string?>(), Arg.Any<CancellationToken>()).Returns(Result(0.9, anomalous: null));

        Assert.Equal(Decision.Review, (await new RejectGate(scorer).InspectAsync("part.png")).Decision);
    }

    [Fact]
    public async Task An_unreadable_photograph_is_taken_again()
    {
        var scorer = Substitute.For<IImageScorer>();
        scorer.ScoreAsync("broken.png", Arg.Any<string?>(), Arg.Any<CancellationToken>()).ThrowsAsync(new ImageFileException("broken.png", "not a PNG"));

        var outcome = await new RejectGate(scorer).InspectAsync("broken.png");

        Assert.Equal(Decision.Retake, outcome.Decision);
        Assert.Null(outcome.Score);
    }
}

/// <summary>The consumer's reject gate in front of the library's tiny REAL detector: no weights, data or GPU.</summary>
public sealed class RejectGateWithTheTinyDetectorTests : IClassFixture<RejectGateWithTheTinyDetectorTests.TinyDetector>
{
    private readonly TinyDetector tiny;

    public RejectGateWithTheTinyDetectorTests(TinyDetector tiny) => this.tiny = tiny;

    /// <summary>One tiny detector for the class's tests (it takes a few seconds to build).</summary>
    public sealed class TinyDetector : IDisposable
    {
        public AnomalyDetector Detector { get; } = TestDetectors.Tiny(seed: 1);

        public void Dispose() => Detector.Dispose();
    }

    [Fact]
    public void A_normal_part_passes_and_a_defective_one_is_rejected()
    {
        var gate = new RejectGate(tiny.Detector, reviewBand: 0);

        Assert.Equal(Decision.Pass, gate.Inspect(TestDetectors.NormalImage(seed: 5)).Decision);
        Assert.Equal(Decision.Reject, gate.Inspect(TestDetectors.DefectiveImage(seed: 5).Image).Decision);
    }

    [Fact]
    public async Task A_saved_and_reloaded_detector_decides_the_same_on_files()
    {
        string folder = Directory.CreateTempSubdirectory("consumer-").FullName;
        try
        {
            string model = Path.Combine(folder, "model.safetensors");
            tiny.Detector.Save(model);
            using var loaded = AnomalyDetector.Load(model);
            string photograph = Path.Combine(folder, "part.png");
            TestDetectors.WritePng(photograph, TestDetectors.DefectiveImage(seed: 2).Image);

            var before = await new RejectGate(tiny.Detector, reviewBand: 0).InspectAsync(photograph);
            var after = await new RejectGate(loaded, reviewBand: 0).InspectAsync(photograph);

            Assert.Equal(Decision.Reject, before.Decision);
            Assert.Equal(before, after);
            Assert.Equal(Decision.Retake, (await new RejectGate(loaded).InspectAsync(Path.Combine(folder, "missing.png"))).Decision);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
