using System.Xml.Linq;
using UniAD.Core.Data;
using UniAD.Core.Tests.Build;

namespace UniAD.Core.Tests.Primitives;

/// <summary>Parallel loops fail with the body's own exception, and the decoder names the SkiaSharp version its native library must match.</summary>
public sealed class ParallelLoopsTests
{
    [Fact]
    public void A_failing_body_throws_its_own_exception_not_an_AggregateException()
    {
        var ex = Assert.Throws<DllNotFoundException>(() => ParallelLoops.For(8, i =>
        {
            if (i == 5)
            {
                throw new DllNotFoundException("libSkiaSharp");
            }
        }));
        Assert.Equal("libSkiaSharp", ex.Message);

        int done = 0;
        ParallelLoops.For(100, _ => Interlocked.Increment(ref done));
        Assert.Equal(100, done);

        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => ParallelLoops.For(4, new ParallelOptions { CancellationToken = cancelled.Token }, _ => { }));
    }

    [Fact]
    public void The_decoder_knows_the_SkiaSharp_version_the_native_library_must_match()
    {
        string expected = XDocument.Load(Path.Combine(DocBlocks.RepositoryRoot(), "Directory.Packages.props"))
            .Descendants("PackageVersion").Single(e => (string?)e.Attribute("Include") == "SkiaSharp").Attribute("Version")!.Value;
        Assert.Equal(expected, ImageDecoder.SkiaSharpVersion);
    }
}
