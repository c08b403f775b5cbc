using UniAD.Core.Data;
using UniAD.Core.Detection;
using UniAD.Core.Tests.Data;

namespace UniAD.Core.Tests.Detection;

/// <summary>Heat maps a reader can read: contrast where the defect is, the predicted mask, labels, ground truth of any size.</summary>
public sealed class HeatmapTests
{
    private const int W = 40, H = 30;

    [Fact]
    public void Weighted_overlay_leaves_normal_pixels_alone_and_colours_the_hot_ones()
    {
        var image = TestImages.Pattern(W, H, 3);
        var result = HotSquare();
        using var overlay = HeatmapRenderer.Overlay(image, result, options: new HeatmapOptions { OutlineMask = false });
        var px = overlay.GetPixelSpan();
        // Cold pixel (map minimum): exactly the image's pixel. Hot pixel (maximum): 60 % jet red (128, 0, 0).
        int cold = Index(2, 2), hot = Index(25, 15);
        Assert.Equal(image.Pixels[cold], px[cold]);
        Assert.Equal(image.Pixels[cold + 1], px[cold + 1]);
        Assert.Equal(image.Pixels[cold + 2], px[cold + 2]);
        Assert.Equal((byte)Math.Round((image.Pixels[hot] * 0.4) + (128 * 0.6)), px[hot]);
        Assert.Equal((byte)Math.Round(image.Pixels[hot + 1] * 0.4), px[hot + 1]);

        // The reference's look blends everywhere.
        using var flat = HeatmapRenderer.Overlay(image, result, options: new HeatmapOptions { WeightByScore = false, Alpha = 0.5, OutlineMask = false });
        Assert.Equal((byte)Math.Round(image.Pixels[cold + 2] * 0.5 + 64), flat.GetPixelSpan()[cold + 2]); // jet(0) = (0, 0, 128)
    }

    [Fact]
    public void Compound_view_has_four_labelled_panels_and_keeps_a_ground_truth_of_another_size()
    {
        var image = TestImages.Pattern(W, H, 4);
        var result = HotSquare() with { Mask = Square(W, H, 20, 10, 10, 10), IsAnomalous = true, NormalizedScore = 0.9 };
        var calibration = new Calibration(CalibrationMethod.F1Max, 0.5, 0, 1, 0.5, 0, 1, 10);
        // Ground truth at twice the resolution: resized, not dropped.
        var truth = Square(2 * W, 2 * H, 40, 20, 20, 20);
        using var view = HeatmapRenderer.Compound(image, truth, result, calibration, new HeatmapOptions(), "widget / crack", (2 * W, 2 * H));
        Assert.Equal(4 * W, view.Width);
        int header = view.Height - H;
        Assert.True(header > 0);
        var px = view.GetPixelSpan();
        int Panel(int panel, int x, int y) => ((((y + header) * 4 * W) + (panel * W) + x) * 4);
        Assert.Equal(255, px[Panel(1, 25, 15)]); // ground truth inside the square
        Assert.Equal(0, px[Panel(1, 5, 5)]);
        Assert.Equal(255, px[Panel(2, 25, 15)]); // predicted mask
        Assert.Equal(0, px[Panel(2, 5, 5)]);
        Assert.Equal(image.Pixels[((5 * W) + 5) * 4], px[Panel(0, 5, 5)]); // the image itself

        // Labels: the header holds drawn text (red: anomalous verdict line), none without labels.
        int lit = 0, red = 0;
        for (int i = 0; i < header * 4 * W; i++)
        {
            lit += px[i * 4] == 255 && px[(i * 4) + 1] == 255 ? 1 : 0;
            red += px[i * 4] == 255 && px[(i * 4) + 1] == 80 ? 1 : 0;
        }

        Assert.True(lit > 50, $"{lit} white header pixels");
        Assert.True(red > 50, $"{red} red header pixels");
        using var plain = HeatmapRenderer.Compound(image, null, result, calibration, new HeatmapOptions { Labels = false });
        Assert.Equal(H, plain.Height);
        Assert.Equal(64, plain.GetPixelSpan()[((5 * 4 * W) + W + 5) * 4]); // no ground truth: grey
        Assert.Throws<ArgumentException>(() => HeatmapRenderer.Compound(image, new byte[7], result, calibration));
    }

    [Fact]
    public void Pixel_font_draws_its_glyphs()
    {
        var pixels = new byte[20 * 10 * 4];
        PixelFont.Draw(pixels, 20, 10, 1, 1, "A", 1, (255, 255, 255));
        int lit = Enumerable.Range(0, 200).Count(i => pixels[i * 4] == 255);
        Assert.Equal(18, lit); // ".###." "#...#" "#...#" "#####" "#...#" "#...#" "#...#"
        Assert.Equal(255, pixels[((1 * 20) + 2) * 4]); // top bar starts at x = 1 + 1
        Assert.Equal(0, pixels[((1 * 20) + 1) * 4]);
        Assert.Equal(17, PixelFont.Measure("abc", 1));
        Assert.Equal(34, PixelFont.Measure("abc", 2));
        var clipped = new byte[4 * 4 * 4];
        PixelFont.Draw(clipped, 4, 4, -2, -3, "W?~", 3, (1, 2, 3)); // clipped, unknown characters as '?': no exception
    }

    private static int Index(int x, int y) => ((y * W) + x) * 4;

    private static AnomalyResult HotSquare()
    {
        var values = new float[W * H];
        for (int y = 10; y < 20; y++)
        {
            for (int x = 20; x < 30; x++)
            {
                values[(y * W) + x] = 1;
            }
        }

        return new AnomalyResult("part.png", 1, null, null, new AnomalyMapData(W, H, values), null);
    }

    private static byte[] Square(int w, int h, int x0, int y0, int sw, int sh)
    {
        var mask = new byte[w * h];
        for (int y = y0; y < y0 + sh; y++)
        {
            for (int x = x0; x < x0 + sw; x++)
            {
                mask[(y * w) + x] = 1;
            }
        }

        return mask;
    }
}
