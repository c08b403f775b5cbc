using UniAD.Core.Data;
using UniAD.Core.Detection;

namespace Consumer.Inspection;

/// <summary>What the line does with a part.</summary>
public enum Decision
{
    /// <summary>The part goes on.</summary>
    Pass,

    /// <summary>The part is scrapped.</summary>
    Reject,

    /// <summary>A person looks at it: the score is close to the threshold, or the model has no threshold yet.</summary>
    Review,

    /// <summary>The camera's file could not be read; the part is photographed again.</summary>
    Retake,
}

/// <summary>The outcome of one part: the decision, and the score when there is one.</summary>
public sealed record Outcome(Decision Decision, double? Score, string Reason);

/// <summary>
/// The consumer's own inspection code (the thing its unit tests are about): a reject gate in front of any UniAD scorer.
/// It depends on <see cref="IImageScorer"/> only, so it runs on the TorchSharp detector or on an exported ONNX file alike.
/// </summary>
public sealed class RejectGate(IImageScorer scorer, double reviewBand = 0.05)
{
    /// <summary>Decides about the photograph of one part.</summary>
    public async Task<Outcome> InspectAsync(string photograph, CancellationToken cancellationToken = default)
    {
        AnomalyResult result;
        try
        {
            result = await scorer.ScoreAsync(photograph, cancellationToken: cancellationToken);
        }
        catch (Exception e) when (e is FileNotFoundException or ImageFileException)
        {
            return new Outcome(Decision.Retake, null, e.Message);
        }

        return Decide(result);
    }

    /// <summary>Decides about a decoded photograph.</summary>
    public Outcome Inspect(RgbImage photograph) => Decide(scorer.Score(photograph));

    private Outcome Decide(AnomalyResult result)
    {
        if (result.IsAnomalous is null || result.NormalizedScore is not { } normalized)
        {
            return new Outcome(Decision.Review, result.Score, "the model is not calibrated");
        }

        // NormalizedScore maps the score to [0, 1] with the threshold at 0.5.
        if (Math.Abs(normalized - 0.5) < reviewBand)
        {
            return new Outcome(Decision.Review, result.Score, "close to the threshold");
        }

        return result.IsAnomalous.Value
            ? new Outcome(Decision.Reject, result.Score, "anomalous")
            : new Outcome(Decision.Pass, result.Score, "normal");
    }
}
