using SkiaSharp;

namespace UniAD.Hosting.Tests;

/// <summary>The decoded-memory budget: costs from headers, reservations given back once, by disposal or by the finaliser.</summary>
public sealed class DecodedMemoryBudgetTests
{
    private const long MiB = 1024 * 1024;

    [Fact]
    public void An_image_costs_its_pixels_times_the_stated_bytes_plus_its_encoded_bytes()
    {
        using var bitmap = new SKBitmap(new SKImageInfo(300, 200, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 6);
        var png = data.ToArray();
        Assert.Equal((300L * 200 * DecodedMemoryBudget.BytesPerPixel) + png.Length, DecodedMemoryBudget.Cost(png));
        Assert.Equal(5, DecodedMemoryBudget.Cost(new byte[] { 1, 2, 3, 4, 5 })); // no readable header: its bytes only
    }

    [Fact]
    public void Reservations_fit_or_are_refused_and_are_given_back_once()
    {
        var budget = new DecodedMemoryBudget(100 * MiB);
        Assert.True(budget.TryReserve(60 * MiB, out var first));
        Assert.False(budget.TryReserve(50 * MiB, out var refused));
        Assert.Null(refused);
        Assert.True(budget.TryReserve(40 * MiB, out var second));
        Assert.Equal(0, budget.Available);
        second!.Dispose();
        second.Dispose(); // idempotent
        Assert.Equal(40 * MiB, budget.Available);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DecodedMemoryBudget(DecodedMemoryBudget.MinimumBytes - 1));
        GC.KeepAlive(first);
    }

    [Fact]
    public void An_undisposed_reservation_is_given_back_when_finalised()
    {
        var budget = new DecodedMemoryBudget(100 * MiB);
        Reserve(budget, 10 * MiB);
        for (int i = 0; i < 20 && budget.Used > 0; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        Assert.Equal(0, budget.Used);
    }

    [Fact]
    public async Task A_large_reservation_is_returned_after_a_collection_and_an_emptied_budget_compacts()
    {
        var budget = new DecodedMemoryBudget(1024 * MiB);
        Assert.True(budget.TryReserve(300 * MiB, out var large));
        large!.Dispose();
        await Wait.Until(() => budget.Used == 0, "the large reservation to come back after its collection");
        await Wait.Until(() => budget.Compactions == 1, "the compaction of the emptied budget (its peak passed 256 MiB)");
    }

    private static void Reserve(DecodedMemoryBudget budget, long bytes) => Assert.True(budget.TryReserve(bytes, out _));
}
