#!/usr/bin/env python3
"""Plots the test curves that `bench --only real` prints (the "test-curve" table of each log) as one PNG.

usage: plot_curves.py OUT.png TITLE LABEL=LOG [LABEL=LOG ...] [-- TITLE LABEL=LOG ...]
Each group after "--" is another panel. A TITLE that starts with "[epoch]" plots against epochs instead of minutes
(for runs made on machines of different speed). Needs matplotlib (Debian: apt-get install python3-matplotlib).
"""
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curve(path):
    rows, inside = [], False
    for line in open(path, encoding="utf-8"):
        if line.startswith("test-curve"):
            inside, rows = True, []
            continue
        if inside:
            m = re.match(r"\|\s*(\d+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", line)
            if m:
                rows.append(tuple(float(v) for v in m.groups()))
            elif rows:
                inside = False
    if not rows:
        sys.exit(f"{path}: no test-curve table")
    return rows


def main(argv):
    out, groups, group = argv[0], [], []
    for a in argv[1:]:
        if a == "--":
            groups.append(group)
            group = []
        else:
            group.append(a)
    groups.append(group)
    fig, axes = plt.subplots(1, len(groups), figsize=(6.4 * len(groups), 4.4), squeeze=False)
    for ax, (title, *series) in zip(axes[0], groups):
        by_epoch = title.startswith("[epoch]")
        title = title.removeprefix("[epoch]").strip()
        for i, item in enumerate(series):
            label, path = item.split("=", 1)
            rows = curve(path)
            minutes = [r[0] if by_epoch else r[1] for r in rows]
            colour = f"C{i}"
            ax.plot(minutes, [r[2] for r in rows], "-o", color=colour, label=f"{label}: image AUROC")
            ax.plot(minutes, [r[3] for r in rows], "--s", color=colour, label=f"{label}: pixel AUROC")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch" if by_epoch else "minutes of training (2 CPU cores, feature extraction included)")
        ax.set_ylabel("mean AUROC on the test curve's subset")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1:])
