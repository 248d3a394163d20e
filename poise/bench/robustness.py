"""The missing-sensor tables of a bench whose preset sets ``robust`` (``--preset robust``): every run was also
evaluated with each of the 15 non-empty modality subsets present (``poise robust``; columns ``robust_*`` of
``results.csv``). Three tables and a plot: the mean and worst subset per variant with the price paid at full
modality (paired with joint training, seed by seed), the error per subset, and which sensor's loss hurts most."""

from __future__ import annotations

import numpy as np

from poise.bench.presets import ALL, SHORT, Preset
from poise.bench.stats import diff_text, fmt, mean_sd, paired, select
from poise.robust import subsets

WHERE = dict(subset="all")


def _label(subset) -> str:
    return "all" if len(subset) == len(ALL) else "+".join(subset)


def _short(subset) -> str:
    return "all" if len(subset) == len(ALL) else "+".join(SHORT[m] for m in subset)


def summary_table(rows, preset: Preset, fusion: str) -> str:
    lines = ["| variant | all four | mean over the 15 subsets | worst subset | worst (mm) | each sensor lost w.p. 0.3 "
             "| all four vs baseline | mean over subsets vs baseline |", "|---" * 8 + "|"]
    for v in preset.variants:
        sel = select(rows, variant=v.label, fusion=fusion, **WHERE)
        if not sel or "robust_mean_mm" not in sel[0]:
            continue
        worst = sorted({r["robust_worst"] for r in sel})
        against = {} if v.label == "baseline" else dict(variant="baseline", fusion=fusion, **WHERE)
        cost = [diff_text(paired(rows, key, dict(variant=v.label, fusion=fusion, **WHERE), against))
                if against else "–" for key in ("test_mpjpe_mm", "robust_mean_mm")]
        lines.append(f"| {v.label} | {fmt(r['test_mpjpe_mm'] for r in sel)} | {fmt(r['robust_mean_mm'] for r in sel)} | "
                     f"{', '.join(w.replace('wifi-csi', 'wifi') for w in worst)} | {fmt(r['robust_worst_mm'] for r in sel)} | "
                     f"{fmt(r['robust_drop_mm'] for r in sel)} | {cost[0]} | {cost[1]} |")
    return "\n".join(lines)


def subset_table(rows, preset: Preset, fusion: str) -> str:
    shown = [v.label for v in preset.variants if select(rows, variant=v.label, fusion=fusion, **WHERE)]
    lines = ["| present | " + " | ".join(shown) + " |", "|---" * (1 + len(shown)) + "|"]
    for subset in subsets(ALL):
        key = f"robust_{_label(subset)}_mm"
        cells = [fmt(r[key] for r in select(rows, variant=v, fusion=fusion, **WHERE) if key in r) for v in shown]
        lines.append(f"| {_short(subset)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def loss_table(rows, preset: Preset, fusion: str) -> str:
    """MPJPE with one sensor missing minus with all four, per variant: which loss hurts most."""
    lines = ["| variant | " + " | ".join(f"without {SHORT[m]}" for m in ALL) + " | hurts most |", "|---" * (2 + len(ALL)) + "|"]
    for v in preset.variants:
        sel = [r for r in select(rows, variant=v.label, fusion=fusion, **WHERE) if "robust_all_mm" in r]
        if not sel:
            continue
        rises = {m: [r[f"robust_{_label(tuple(x for x in ALL if x != m))}_mm"] - r["robust_all_mm"] for r in sel] for m in ALL}
        worst = max(ALL, key=lambda m: np.mean(rises[m]))
        lines.append(f"| {v.label} | " + " | ".join(fmt(rises[m]) for m in ALL) + f" | {SHORT[worst]} |")
    return "\n".join(lines)


def robust_sections(rows, preset: Preset) -> list[str]:
    """The Markdown of the missing-sensor sections (empty unless the preset evaluated its runs over subsets)."""
    if not preset.robust:
        return []
    fusion = preset.fusions[0]
    return ["## Missing sensors: the 15 modality subsets at test time (DMRNet / MMANet protocol)", "",
            f"{fusion} fusion. Last-epoch test MPJPE (mm), mean ± std over seeds; 'vs baseline' is the paired "
            "difference with joint training (negative = better), with its 95 % t-interval.", "",
            summary_table(rows, preset, fusion), "", "### Per subset (R = RGB, L = LiDAR, M = mmWave, W = WiFi)", "",
            subset_table(rows, preset, fusion), "", "### Which sensor's loss hurts most (MPJPE without it minus with "
            "all four, mm)", "", loss_table(rows, preset, fusion), ""]


def plot_robust(rows, preset: Preset, out, save_figure, paths: list) -> None:
    """MPJPE per subset, one line per variant (mean over seeds)."""
    if not preset.robust:
        return
    from poise.plots import plt

    fusion = preset.fusions[0]
    order = subsets(ALL)
    fig, ax = plt.subplots(figsize=(9, 4))
    for v in preset.variants:
        sel = [r for r in select(rows, variant=v.label, fusion=fusion, **WHERE) if "robust_all_mm" in r]
        if sel:
            means = [mean_sd(r[f"robust_{_label(s)}_mm"] for r in sel)[0] for s in order]
            ax.plot(range(len(order)), means, marker="o", ms=3, label=v.label)
    ax.set_xticks(range(len(order)), [_short(s) for s in order], rotation=45, ha="right")
    ax.set_xlabel("modalities present at test time")
    ax.set_ylabel("test MPJPE (mm)")
    ax.set_title(f"missing sensors ({fusion}), mean over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, out / "robust.png", paths)
