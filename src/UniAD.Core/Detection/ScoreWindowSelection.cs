namespace UniAD.Core.Detection;

/// <summary>One candidate of <see cref="AnomalyDetector.SelectScoreWindow"/>: a pooled-max window and its validation image AUROC.</summary>
/// <param name="Window">The window, rows x columns in map pixels.</param>
/// <param name="ImageAuroc">The image AUROC of the pooled max over that window: the mean over the classes that hold normal and anomalous images.</param>
public sealed record ScoreWindowCandidate(GridSize Window, double ImageAuroc);

/// <summary>What <see cref="AnomalyDetector.SelectScoreWindow"/> measured and chose.</summary>
/// <param name="Chosen">The window now set on the detector (the best AUROC; the earliest candidate on a tie).</param>
/// <param name="Candidates">Every candidate in the order given, with its AUROC.</param>
/// <param name="Images">Validation images scored.</param>
/// <param name="AnomalousImages">Of them, anomalous.</param>
/// <param name="Classes">The classes whose AUROC entered the mean.</param>
public sealed record ScoreWindowSelection(GridSize Chosen, IReadOnlyList<ScoreWindowCandidate> Candidates, int Images, int AnomalousImages, IReadOnlyList<string> Classes);
