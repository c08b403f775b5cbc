using UniAD.Core.Detection;
using UniAD.Core.Training;

namespace UniAD.Core.Tests.Detection;

public sealed class TrainingPresetTests
{
    [Fact]
    public void Paper_is_the_reference_recipe_and_the_default()
    {
        var paper = TrainingPreset.Paper();
        Assert.Equal(new TrainingOptions(), paper);
        Assert.Equal(new StepLRSchedule { StepSize = 800, Gamma = 0.1 }, paper.Schedule);
        Assert.Equal(1000, paper.Epochs);
        Assert.Equal(64, paper.BatchSize);
        Assert.Equal(1e-4, paper.Optimizer.LearningRate);
        Assert.Null(paper.TimeBudget);
    }

    [Fact]
    public void Cpu_budget_uses_batch_8_warmup_cosine_and_the_budget()
    {
        var cpu = TrainingPreset.CpuBudget(TimeSpan.FromMinutes(30));
        cpu.Validate();
        Assert.Equal(TimeSpan.FromMinutes(30), cpu.TimeBudget);
        Assert.Equal(8, cpu.BatchSize);
        Assert.Equal(1e-3, cpu.Optimizer.LearningRate);
        Assert.Equal(1e-4, cpu.Optimizer.WeightDecay);
        Assert.Equal(0.1, cpu.ClipGradNorm);
        Assert.Equal(new WarmupCosineSchedule { WarmupFraction = 0.05, FinalFraction = 0.01 }, cpu.Schedule);
        Assert.Equal(10_000, cpu.Epochs);
        Assert.Throws<ArgumentOutOfRangeException>(() => TrainingPreset.CpuBudget(TimeSpan.Zero));
    }

    [Fact]
    public void Cpu_detector_is_layers_1_to_3_at_224_with_a_7x7_mask_on_14x14_tokens()
    {
        Assert.Equal("mlnet-resnet18", DetectorPreset.CpuBackbone);
        using var detector = DetectorPreset.CpuBudget("resnet18").Build();
        var o = detector.Options;
        Assert.Equal("resnet18", o.Backbone);
        Assert.Equal(new[] { 1, 2, 3 }, o.BackboneLayers);
        Assert.Equal(new GridSize(256, 256), o.InputSize);
        Assert.Equal(64 + 128 + 256, o.Reconstruction.InputChannels);
        Assert.Equal(new GridSize(16, 16), o.Reconstruction.FeatureSize);
        Assert.Equal(new GridSize(7, 7), o.Reconstruction.NeighborSize);
        Assert.Equal(128, o.Reconstruction.HiddenDim);
        Assert.Equal(2, o.Reconstruction.NumEncoderLayers);
        Assert.Equal(2, o.Reconstruction.NumDecoderLayers);
        Assert.Equal(20, o.Reconstruction.FeatureJitter!.Scale);
        Assert.Equal(0.0, o.Reconstruction.Dropout);
        Assert.Equal(0.1, new UniAD.Core.Reconstruction.ReconstructionOptions().Dropout); // the paper's, kept for DetectorPreset.Paper()
        Assert.Equal(UniAD.Core.Metrics.ImageScoreKind.PooledMax, o.ScoreKind);
        Assert.Equal(64, o.ScorePoolSize);

        // Tiles of 256 every 192 pixels with a 32-pixel margin, every image 448 wide first:
        // a 500 x 1250 part becomes 448 x 1120 in 2 x 6 tiles.
        var tiling = o.Tiling!;
        Assert.Equal(448, tiling.ResizeWidth);
        Assert.Equal(new GridSize(192, 192), tiling.Stride);
        Assert.Equal(32, tiling.Margin);
        Assert.Equal(12, tiling.GridFor(new GridSize(1250, 500), o.InputSize).Count);
    }

    [Theory]
    [InlineData("90s", 90)]
    [InlineData("30m", 1800)]
    [InlineData("1h30m", 5400)]
    [InlineData("1H0m30S", 3630)]
    [InlineData("2h", 7200)]
    [InlineData("45", 2700)]
    [InlineData(" 5m ", 300)]
    public void Budgets_parse(string text, double seconds)
    {
        Assert.Equal(TimeSpan.FromSeconds(seconds), TrainingPreset.ParseBudget(text));
    }

    [Theory]
    [InlineData("")]
    [InlineData("0m")]
    [InlineData("30x")]
    [InlineData("m")]
    [InlineData("30m1h")]
    [InlineData("1m1m")]
    [InlineData("1.5h")]
    [InlineData("-5")]
    [InlineData("800h")]
    [InlineData("10000000000s")]
    public void Bad_budgets_are_rejected_with_the_text(string text)
    {
        Assert.Contains($"'{text}'", Assert.Throws<FormatException>(() => TrainingPreset.ParseBudget(text)).Message);
    }

    [Fact]
    public void Stopping_options_are_validated_with_the_value()
    {
        Assert.Contains("HeldOutNormal", Assert.Throws<ArgumentException>(() => new TrainingOptions { EarlyStopping = new() }.Validate()).Message);
        var heldOut = new UniAD.Core.Data.ImageSource("h", Array.Empty<UniAD.Core.Data.ImageSample>());
        Assert.Contains("Patience = 0", Assert.Throws<ArgumentException>(() => new TrainingOptions { HeldOutNormal = heldOut, EarlyStopping = new() { Patience = 0 } }.Validate()).Message);
        Assert.Contains("MinDelta = -1", Assert.Throws<ArgumentException>(() => new TrainingOptions { HeldOutNormal = heldOut, EarlyStopping = new() { MinDelta = -1 } }.Validate()).Message);
        Assert.Contains("TimeBudget = -00:01:00", Assert.Throws<ArgumentException>(() => new TrainingOptions { TimeBudget = TimeSpan.FromMinutes(-1) }.Validate()).Message);
        Assert.Contains("HeldOutEvery = 0", Assert.Throws<ArgumentException>(() => new TrainingOptions { HeldOutEvery = 0 }.Validate()).Message);
        Assert.Contains("WarmupFraction = 1.5", Assert.Throws<ArgumentException>(() => new TrainingOptions { Schedule = new WarmupCosineSchedule { WarmupFraction = 1.5 } }.Validate()).Message);
    }

    [Fact]
    public void Memory_bank_preset_is_layers_2_and_3_tiled_at_256_with_one_bank_and_the_top_1_percent_mean()
    {
        using var detector = DetectorPreset.MemoryBank("resnet18").Build();
        var o = detector.Options;
        Assert.Equal(ModelFamilies.MemoryBank, o.Family);
        Assert.Equal(new[] { 2, 3 }, o.BackboneLayers);
        Assert.Equal(new GridSize(256, 256), o.InputSize);
        Assert.Equal(DetectorPreset.MemoryBankWidth, o.Tiling!.ResizeWidth);
        Assert.Equal(UniAD.Core.Metrics.ImageScoreKind.TopMean, o.ScoreKind); // measured on both real sets at 256 and 448 wide: docs/benchmarks.md
        Assert.Equal(0.01, o.MemoryBank!.CoresetRatio);
        Assert.False(o.MemoryBank.PerClassBanks); // the unified setting: no class needed at test time
    }
}
