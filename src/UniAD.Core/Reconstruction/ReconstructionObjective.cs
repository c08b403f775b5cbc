using System.Globalization;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace UniAD.Core.Reconstruction;

/// <summary>What the reconstruction is trained to minimise, and so which anomaly map it gives (<see cref="ReconstructionOptions.Objective"/>).</summary>
public enum ReconstructionObjective
{
    /// <summary>The paper's: mean squared error over every feature; the map is the Euclidean error per position (<see cref="AnomalyMap.Compute"/>).</summary>
    Mse,

    /// <summary>
    /// Global cosine distance with hard-point mining (<c>shared/methods/FAST_OBJECTIVE.md</c>): each sample's whole feature
    /// map is one vector, the loss is 1 − cos between target and reconstruction, and the gradient at the best-reconstructed
    /// points is scaled down (<see cref="HardMiningOptions"/>); the map is the cosine distance per position
    /// (<see cref="AnomalyMap.CosineDistance"/>).
    /// </summary>
    GlobalCosine,
}

/// <summary>
/// Hard-point mining of <see cref="ReconstructionObjective.GlobalCosine"/>: the fraction of the batch's positions with the
/// smallest per-position cosine distance (the easy ones) whose gradient is multiplied by <see cref="Factor"/>; the fraction
/// rises linearly from 0 to <see cref="MaxFraction"/> over the first <see cref="RampSteps"/> optimiser steps.
/// </summary>
public sealed record HardMiningOptions
{
    /// <summary>The fraction of easy positions at the end of the ramp (default 0.9).</summary>
    public double MaxFraction { get; init; } = 0.9;

    /// <summary>The gradient factor of the easy positions (default 0.1; 0 drops them).</summary>
    public double Factor { get; init; } = 0.1;

    /// <summary>Optimiser steps of the linear ramp (default 1,000).</summary>
    public int RampSteps { get; init; } = 1000;

    /// <summary>The easy fraction at optimiser step <paramref name="step"/> (0-based).</summary>
    public double FractionAt(long step) => RampSteps <= 0 ? MaxFraction : MaxFraction * Math.Min(1.0, Math.Max(0, step) / (double)RampSteps);

    /// <summary>Checks every value.</summary>
    /// <exception cref="ArgumentException">A value is out of range (named in the message).</exception>
    public void Validate()
    {
        if (!(MaxFraction >= 0 && MaxFraction < 1))
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"HardMining.MaxFraction = {MaxFraction} must lie in [0, 1)."));
        }

        if (!(Factor >= 0 && Factor <= 1))
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"HardMining.Factor = {Factor} must lie in [0, 1]."));
        }

        if (RampSteps < 0)
        {
            throw new ArgumentException($"HardMining.RampSteps = {RampSteps} must not be negative.");
        }
    }
}

/// <summary>The training losses of the objectives (<see cref="ReconstructionObjective"/>).</summary>
public static class ReconstructionLoss
{
    /// <summary>The loss of <paramref name="options"/>' objective at optimiser step <paramref name="step"/> (the mining ramp's clock).</summary>
    public static Tensor Of(ReconstructionOptions options, Tensor featureRec, Tensor featureAlign, long step)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Objective switch
        {
            ReconstructionObjective.Mse => AnomalyMap.Loss(featureRec, featureAlign),
            ReconstructionObjective.GlobalCosine => GlobalCosine(featureRec, featureAlign, options.HardMining.FractionAt(step), options.HardMining.Factor),
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Objective, "Unknown objective."),
        };
    }

    /// <summary>The objective's loss without hard-point mining (its value does not depend on the step): the validation and held-out loss.</summary>
    public static Tensor Plain(ReconstructionOptions options, Tensor featureRec, Tensor featureAlign)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Objective == ReconstructionObjective.GlobalCosine ? GlobalCosine(featureRec, featureAlign) : AnomalyMap.Loss(featureRec, featureAlign);
    }

    /// <summary>
    /// The mean over the batch of 1 − cos(target, reconstruction), each sample's B x C x h x w map flattened to one vector;
    /// the gradient reaching the reconstruction at the <paramref name="easyFraction"/> of the batch's positions with the
    /// smallest per-position cosine distance is multiplied by <paramref name="easyFactor"/> (the value is unchanged).
    /// The target gets no gradient.
    /// </summary>
    /// <exception cref="ArgumentException">The tensors differ in shape or are not 4-D, or a fraction or factor is out of range.</exception>
    public static Tensor GlobalCosine(Tensor featureRec, Tensor featureAlign, double easyFraction = 0, double easyFactor = 1)
    {
        if (featureRec.dim() != 4 || !featureRec.shape.SequenceEqual(featureAlign.shape))
        {
            throw new ArgumentException($"Reconstructed and aligned features must both be B x C x h x w of the same shape; got [{string.Join(", ", featureRec.shape)}] and [{string.Join(", ", featureAlign.shape)}].");
        }

        if (!(easyFraction >= 0 && easyFraction < 1) || !(easyFactor >= 0 && easyFactor <= 1))
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"The easy fraction must lie in [0, 1) and the factor in [0, 1]; got {easyFraction} and {easyFactor}."));
        }

        using var scope = NewDisposeScope();
        var target = featureAlign.detach();
        var rec = featureRec;
        long points = featureRec.shape[0] * featureRec.shape[2] * featureRec.shape[3];
        int easy = (int)Math.Floor(easyFraction * points);
        if (easy > 0 && easyFactor < 1)
        {
            Tensor mask;
            using (no_grad())
            {
                var distance = 1 - F.cosine_similarity(target, featureRec.detach(), dim: 1); // B x h x w
                var threshold = distance.flatten().kthvalue(easy, 0, false).values; // the easy-th smallest distance
                mask = (distance <= threshold).unsqueeze(1); // B x 1 x h x w
            }

            // The same values; the gradient through the easy positions scaled by the factor.
            var detached = featureRec.detach();
            var scaled = detached + (easyFactor * (featureRec - detached));
            rec = where(mask, scaled, featureRec);
        }

        long b = featureRec.shape[0];
        var cosine = F.cosine_similarity(target.reshape(b, -1), rec.reshape(b, -1), dim: 1);
        return (1 - cosine).mean().MoveToOuterDisposeScope();
    }
}
