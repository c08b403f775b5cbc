using UniAD.Core.TorchSupport;
using System.Globalization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace UniAD.Core.Training;

/// <summary>AdamW hyper-parameters; defaults are the reference's (lr 1e-4, betas 0.9 / 0.999, eps 1e-8, weight decay 1e-4).</summary>
public sealed record AdamWOptions
{
    /// <summary>Learning rate.</summary>
    public double LearningRate { get; init; } = 1e-4;

    /// <summary>First-moment decay.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>Second-moment decay.</summary>
    public double Beta2 { get; init; } = 0.999;

    /// <summary>Denominator epsilon.</summary>
    public double Epsilon { get; init; } = 1e-8;

    /// <summary>Decoupled weight decay.</summary>
    public double WeightDecay { get; init; } = 1e-4;

    /// <summary>Throws an exception naming the first impossible value.</summary>
    /// <exception cref="ArgumentException">A value is out of range.</exception>
    public void Validate()
    {
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate))
        {
            throw new ArgumentException($"{nameof(LearningRate)} = {LearningRate} must be positive and finite.");
        }

        if (!(Beta1 >= 0 && Beta1 < 1) || !(Beta2 >= 0 && Beta2 < 1))
        {
            throw new ArgumentException($"Betas must lie in [0, 1); got {Beta1} and {Beta2}.");
        }

        if (!(Epsilon > 0) || !(WeightDecay >= 0))
        {
            throw new ArgumentException($"{nameof(Epsilon)} = {Epsilon} must be positive and {nameof(WeightDecay)} = {WeightDecay} non-negative.");
        }
    }
}

/// <summary>
/// AdamW (decoupled weight decay) over named parameters, with PyTorch's update rule, and a state that
/// can be saved as named tensors and restored, so training resumes exactly where it stopped.
/// </summary>
public sealed class AdamW : IDisposable
{
    private readonly (string Name, Parameter Parameter)[] parameters;
    private readonly Dictionary<string, (Tensor ExpAvg, Tensor ExpAvgSq, long Step)> state = new(StringComparer.Ordinal);

    /// <summary>Creates the optimizer for the parameters that require gradients.</summary>
    /// <exception cref="ArgumentException">Invalid options.</exception>
    public AdamW(IEnumerable<(string Name, Parameter Parameter)> parameters, AdamWOptions options)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        LearningRate = options.LearningRate;
        this.parameters = parameters.Where(p => p.Parameter.requires_grad).ToArray();
    }

    /// <summary>The options the optimizer was created with.</summary>
    public AdamWOptions Options { get; }

    /// <summary>The current learning rate (a schedule changes it).</summary>
    public double LearningRate { get; set; }

    /// <summary>The optimised parameters.</summary>
    public IEnumerable<Parameter> Parameters => parameters.Select(p => p.Parameter);

    /// <summary>Clears every gradient.</summary>
    public void ZeroGrad()
    {
        foreach (var (_, p) in parameters)
        {
            p.grad?.zero_();
        }
    }

    /// <summary>One update of every parameter that has a gradient.</summary>
    public void Step()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        double lr = LearningRate, b1 = Options.Beta1, b2 = Options.Beta2;
        foreach (var (name, p) in parameters)
        {
            var grad = p.grad;
            if (grad is null)
            {
                continue;
            }

            if (!state.TryGetValue(name, out var s))
            {
                s = (zeros_like(p).DetachFromDisposeScope(), zeros_like(p).DetachFromDisposeScope(), 0);
            }

            s.Step++;
            state[name] = s;
            p.TimesInPlace(1 - (lr * Options.WeightDecay));
            s.ExpAvg.TimesInPlace(b1).PlusScaledInPlace(grad, 1 - b1);
            s.ExpAvgSq.TimesInPlace(b2).AddcmulInPlace(grad, grad, 1 - b2);
            double correction1 = 1 - Math.Pow(b1, s.Step);
            double correction2Sqrt = Math.Sqrt(1 - Math.Pow(b2, s.Step));
            var denominator = s.ExpAvgSq.sqrt().DividedBy(correction2Sqrt).PlusScalarInPlace(Options.Epsilon);
            p.AddcdivInPlace(s.ExpAvg, denominator, -lr / correction1);
        }
    }

    /// <summary>The state as named tensors (<c>exp_avg.NAME</c>, <c>exp_avg_sq.NAME</c>, <c>step.NAME</c>), new tensors owned by the caller.</summary>
    public Dictionary<string, Tensor> StateTensors()
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, s) in state)
        {
            result["exp_avg." + name] = s.ExpAvg.detach().clone().DetachFromDisposeScope();
            result["exp_avg_sq." + name] = s.ExpAvgSq.detach().clone().DetachFromDisposeScope();
            result["step." + name] = tensor(s.Step, device: CPU).DetachFromDisposeScope();
        }

        return result;
    }

    /// <summary>Restores a state saved by <see cref="StateTensors"/> (tensors are copied to each parameter's device).</summary>
    /// <exception cref="InvalidDataException">The state names a parameter the optimizer does not have, or has a wrong shape.</exception>
    public void LoadState(IReadOnlyDictionary<string, Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        using var scope = NewDisposeScope();
        var byName = parameters.ToDictionary(p => p.Name, p => p.Parameter, StringComparer.Ordinal);
        ClearState();
        foreach (var (key, value) in tensors.Where(kv => kv.Key.StartsWith("step.", StringComparison.Ordinal)))
        {
            var name = key["step.".Length..];
            if (!byName.TryGetValue(name, out var p) || !tensors.TryGetValue("exp_avg." + name, out var avg) || !tensors.TryGetValue("exp_avg_sq." + name, out var avgSq))
            {
                throw new InvalidDataException($"Optimizer state for '{name}' is incomplete or names no optimised parameter.");
            }

            if (!avg.shape.SequenceEqual(p.shape) || !avgSq.shape.SequenceEqual(p.shape))
            {
                throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture, $"Optimizer state for '{name}' has shape [{string.Join(", ", avg.shape)}], the parameter [{string.Join(", ", p.shape)}]."));
            }

            state[name] = (avg.to(p.dtype, p.device).clone().DetachFromDisposeScope(), avgSq.to(p.dtype, p.device).clone().DetachFromDisposeScope(), value.item<long>());
        }
    }

    /// <inheritdoc />
    public void Dispose() => ClearState();

    private void ClearState()
    {
        foreach (var s in state.Values)
        {
            s.ExpAvg.Dispose();
            s.ExpAvgSq.Dispose();
        }

        state.Clear();
    }
}
