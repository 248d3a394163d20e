"""The bench's plots: variants x fusion, modality subsets, contributions, curves, AWC's penalty shares
(``mechanisms``), the ablations' paired differences and the missing-sensor bench's (``robustness``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from poise.bench.mechanisms import plot_awc_shares
from poise.bench.presets import ALL, BASELINE, Preset
from poise.bench.robustness import plot_robust
from poise.bench.runs import run_history, subset_name
from poise.bench.stats import half_width, mean_sd, select


def plot_bench(rows, preset: Preset, out: Path) -> list[Path]:
    from poise.plots import column, plt

    paths = []
    labels = [v.label for v in preset.variants]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) * len(preset.fusions) ** 0.5), 3.8))
    width = 0.8 / len(preset.fusions)
    for i, fusion in enumerate(preset.fusions):
        stats = [mean_sd(r["test_mpjpe_mm"] for r in select(rows, variant=v, fusion=fusion, subset="all"))
                 if select(rows, variant=v, fusion=fusion, subset="all") else (math.nan, math.nan) for v in labels]
        ax.bar(np.arange(len(labels)) + i * width, [s[0] for s in stats], width,
               yerr=[0 if math.isnan(s[1]) else s[1] for s in stats], capsize=3, label=fusion)
    ax.set_xticks(np.arange(len(labels)) + width * (len(preset.fusions) - 1) / 2, labels, rotation=30, ha="right")
    ax.set_ylabel("test MPJPE (mm)")
    ax.set_title("variants x fusion, mean ± std over seeds (last epoch)")
    ax.legend()
    save_figure(fig, out / "methods.png", paths)

    if preset.subsets:
        fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(preset.subsets)), 3.5))
        names = [subset_name(s) for s in preset.subsets]
        stats = [mean_sd(r["test_mpjpe_mm"] for r in select(rows, variant=BASELINE.label, fusion=preset.fusions[0],
                                                             subset=n)) for n in names]
        ax.bar(range(len(names)), [s[0] for s in stats], yerr=[0 if math.isnan(s[1]) else s[1] for s in stats],
               capsize=3, color="tab:gray")
        ax.set_xticks(range(len(names)), names, rotation=30)
        ax.set_ylabel("test MPJPE (mm)")
        ax.set_title(f"modality subsets, joint training ({preset.fusions[0]})")
        save_figure(fig, out / "subsets.png", paths)

    first = preset.seeds[0]
    shown = [v for v in labels if select(rows, variant=v, fusion=preset.fusions[0], subset="all", seed=first)]
    columns = min(4, len(shown))
    fig, axes = plt.subplots(math.ceil(len(shown) / columns), columns, figsize=(3.2 * columns, 2.8 * math.ceil(len(shown) / columns)),
                             sharey=True, squeeze=False)
    for ax, label in zip(axes.flat, shown):
        history = run_history(select(rows, variant=label, fusion=preset.fusions[0], subset="all", seed=first)[0])
        for m in ALL:
            ax.plot(*column(history, f"shapley_{m}"), label=m)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    axes[0][0].set_ylabel("Shapley-Pearson score")
    axes[0][-1].legend(fontsize=7)
    save_figure(fig, out / "contributions.png", paths)

    references = [v for v in preset.variants if v.against is None]
    fig, axes = plt.subplots(1, len(preset.fusions), figsize=(3.6 * len(preset.fusions), 3.2), squeeze=False)
    for ax, fusion in zip(axes[0], preset.fusions):
        for colour, v in zip(("tab:blue", "tab:orange", "tab:green"), references):
            for r in select(rows, variant=v.label, fusion=fusion, subset="all"):
                history = run_history(r)
                if any("val_mpjpe_mm" in h for h in history):
                    ax.plot(*column(history, "val_mpjpe_mm"), color=colour, lw=1,
                            label=f"{v.label} val" if r["seed"] == first else None)
                ax.plot(*column(history, "test_mpjpe_mm"), color=colour, lw=1, ls="--",
                        label=f"{v.label} test" if r["seed"] == first else None)
        ax.set_title(f"{fusion}: joint training, every seed", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylim(top=min(ax.get_ylim()[1], 250))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("MPJPE (mm)")
    axes[0][0].legend(fontsize=7)
    save_figure(fig, out / "curves.png", paths)

    plot_awc_shares(rows, preset, out, save_figure, paths)
    if preset.ablations:
        plot_ablations(rows, preset, out, paths)
    plot_robust(rows, preset, out, save_figure, paths)
    return paths


def plot_ablations(rows, preset: Preset, out: Path, paths: list) -> None:
    """One panel per ablation table: each row's paired difference from the run it is meant to beat, its 95 %
    t-interval and the seeds, and the paper's difference from its baseline where the paper gives one."""
    from poise.bench.report import ablation_pair, differences
    from poise.plots import plt

    fusion = preset.fusions[0]
    tables = [(a, [(label, against) for label in a.rows if (against := ablation_pair(preset, label))])
              for a in preset.ablations]
    fig, axes = plt.subplots(len(tables), 1, figsize=(6.4, 1.0 + 0.42 * sum(len(t) + 1 for _, t in tables)),
                             squeeze=False, gridspec_kw=dict(height_ratios=[len(t) + 1 for _, t in tables]))
    for ax, (ablation, pairs) in zip(axes[:, 0], tables):
        for y, (label, against) in enumerate(pairs):
            d = differences(rows, label, against, fusion)
            if d:
                half = half_width(d)
                ax.errorbar(np.mean(d), y, xerr=0 if math.isnan(half) else half, fmt="o", color="tab:blue",
                            capsize=3, label="mean, 95 % interval" if y == 0 else None)
                ax.scatter(d, [y] * len(d), s=10, color="tab:gray", zorder=3, label="seeds" if y == 0 else None)
            if label in ablation.paper and against in ablation.paper:
                ax.scatter(ablation.paper[label] - ablation.paper[against], y, marker="x", color="tab:red",
                           zorder=4, label="paper" if y == 0 else None)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(pairs)), [f"{label} - {against}" for label, against in pairs], fontsize=8)
        ax.set_ylim(len(pairs) - 0.5, -0.5)
        ax.set_title(ablation.title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    axes[-1, 0].set_xlabel(f"test MPJPE difference, mm ({fusion}; negative = better)")
    save_figure(fig, out / "ablations.png", paths)


def save_figure(fig, path: Path, paths: list) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    from poise.plots import plt

    plt.close(fig)
    paths.append(path)
