using Microsoft.Extensions.Logging;
using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Tests.Data;

namespace UniAD.Core.Tests.Detection;

/// <summary>Issue 26: an untiled model that stretches an image far out of its aspect ratio says so in its log.</summary>
public sealed class StretchWarningTests
{
    [Fact]
    public void An_image_stretched_beyond_the_stated_ratio_is_logged_and_one_within_it_is_not()
    {
        var logger = new TestLogger();
        using var factory = new TestLoggerFactory(logger);
        using var detector = SyntheticData.TinyBuilder().WithLogging(factory).Build(); // 64 x 64 input, untiled
        detector.Score(TestImages.Pattern(200, 16, 1), "strip.png");    // 12.5 : 1
        detector.Score(TestImages.Pattern(100, 40, 2), "wide.png");     // 2.5 : 1, within 4
        var warnings = logger.Entries.Where(e => e.Level == LogLevel.Warning && e.Message.Contains("stretched", StringComparison.Ordinal)).ToList();
        var warning = Assert.Single(warnings);
        Assert.Contains("'strip.png' (200 x 16) is stretched to the model's 64 x 64 input: its aspect ratio differs by a factor of 12.5, more than 4", warning.Message);
        Assert.Equal(4.0, ImageScorer.MaxUntiledStretch);
    }
}
