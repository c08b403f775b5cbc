using System.CommandLine;
using System.Globalization;
using UniAD.Core.Data;

namespace UniAD.Cli;

/// <summary>
/// The data sources of the command line: <c>mvtec:ROOT[:class,class]</c>, <c>meta:FILE@IMAGE_ROOT</c>,
/// <c>cifar10:ROOT[:0,1,2,3,4]</c> and <c>folder:ROOT</c>.
/// </summary>
internal static class DataSources
{
    public const string HelpName = "SOURCE";

    public const string Description = "mvtec:ROOT[:class,class], meta:FILE@IMAGE_ROOT, cifar10:ROOT[:0,1,2,3,4] or folder:ROOT";

    /// <summary>--missing-masks error|image-level (MVTec sources).</summary>
    public static Option<MissingMaskPolicy?> MissingMasksOption() => CliOptions.Choice(
        "--missing-masks",
        "An MVTec defect type without ground_truth: an error (default), or counted for image metrics only. Folder and meta sources always accept image-level labels.",
        ("error", MissingMaskPolicy.Throw),
        ("image-level", MissingMaskPolicy.ImageLevelOnly));

    /// <summary>
    /// Opens one split of a source: MVTec's train or test folders, CIFAR-10's protocol split; a meta file is both;
    /// the training split of a folder source is a seeded 80 % of its normal images, its test split all of it.
    /// </summary>
    /// <exception cref="UsageException">The text is not a source.</exception>
    public static IImageSource Open(string spec, DatasetSplit split, MissingMaskPolicy missingMasks, BadInputPolicy onBadInput = BadInputPolicy.Throw)
    {
        int colon = spec.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0)
        {
            throw new UsageException($"data source '{spec}' needs a kind: {Description}.");
        }

        string kind = spec[..colon], rest = spec[(colon + 1)..];
        switch (kind)
        {
            case "mvtec":
            {
                var (root, list) = SplitList(rest);
                var options = new MvtecOptions { Classes = list, MissingMasks = missingMasks, OnBadInput = onBadInput };
                return MvtecAd.Open(root, split, options);
            }

            case "meta":
            {
                var at = rest.LastIndexOf('@');
                if (at <= 0)
                {
                    throw new UsageException($"meta sources are meta:FILE@IMAGE_ROOT, got '{spec}'.");
                }

                return MetaFile.Open(rest[..at], rest[(at + 1)..], new MetaFileOptions { OnBadInput = onBadInput });
            }

            case "cifar10":
            {
                var (root, list) = SplitList(rest);
                var normal = list?.Select(c => int.TryParse(c, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i) ? i : throw new UsageException($"cifar10 classes are numbers 0-9 separated by commas, got '{c}'.")).ToArray()
                    ?? Cifar10.ReferenceSplits[0].ToArray();
                var options = new Cifar10Options { NormalClasses = normal, OnBadInput = onBadInput };
                var protocol = Directory.Exists(Path.Combine(root, "train")) ? Cifar10.FromJpegFolder(root, options) : Cifar10.FromBinaryBatches(root, options);
                return split == DatasetSplit.Train ? protocol.Train : protocol.Test;
            }

            case "folder":
            {
                var source = ImageFolder.Open(rest, new ImageFolderOptions { OnBadInput = onBadInput });
                return split == DatasetSplit.Train ? ImageFolder.SplitNormal(source, 0.8, 133).Train : source;
            }

            default:
                throw new UsageException($"unknown data kind '{kind}' in '{spec}': {Description}.");
        }
    }

    private static (string Root, IReadOnlyList<string>? List) SplitList(string text)
    {
        // ROOT[:a,b,c]; a Windows drive letter (C:\...) is part of the root.
        int colon = text.LastIndexOf(':');
        return colon > 1 && text[(colon + 1)..].Length > 0 && !text[(colon + 1)..].Contains(Path.DirectorySeparatorChar, StringComparison.Ordinal)
            ? (text[..colon], text[(colon + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            : (text, null);
    }
}
