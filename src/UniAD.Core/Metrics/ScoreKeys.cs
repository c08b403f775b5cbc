namespace UniAD.Core.Metrics;

/// <summary>
/// Maps float scores to unsigned keys whose unsigned order is the scores' numeric order, so that scores can be
/// radix-sorted as integers and tied scores are tied keys. −0 and +0 map to the same key (they are equal scores).
/// </summary>
internal static class ScoreKeys
{
    private const uint SignBit = 0x8000_0000u;

    public static uint ToKey(float score)
    {
        // Adding +0 turns −0 into +0 and leaves every other value unchanged.
        uint bits = BitConverter.SingleToUInt32Bits(score + 0f);
        return (bits & SignBit) != 0 ? ~bits : bits | SignBit;
    }

    public static float ToScore(uint key)
    {
        uint bits = (key & SignBit) != 0 ? key & ~SignBit : ~key;
        return BitConverter.UInt32BitsToSingle(bits);
    }
}
