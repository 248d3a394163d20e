"""The bench's mechanism tables: what each method acts on, per modality.

- the number a modulating method acts on, as its class declares it (``Method.statistic``: OGM-GE's, AGM's and
  ARL's coefficients, ARM's feature gains, LSI's information shares, DGL's unimodal errors), for every
  variant whose method declares one;
- 000's mechanism, from the numbers AWC records (``awc_*`` in its metrics): who gets its penalty (each
  encoder's Fisher, its share of the penalty, how often it was superior), its force ratio, and how far each
  encoder moved against the paired run of the same seed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from poise.bench.presets import ALL, SHORT, Preset
from poise.bench.runs import run_history
from poise.bench.stats import fmt, select


def tables(rows, preset: Preset) -> list[tuple[str, str]]:
    """(title, Markdown table) of each mechanism table; a table is empty when no run recorded its numbers."""
    return [("Who gets AWC's penalty", awc_table(rows, preset)),
            ("Whom AWC holds back: force ratio over the window, displacement against the pair",
             awc_force_table(rows, preset)),
            ("What each modulating method acts on, per modality", coefficients_table(rows, preset))]


def awc_table(rows, preset: Preset) -> str:
    """Who gets AWC's penalty: each encoder's Fisher sum (at the end of epoch 0), its mean share of the penalty
    over the window, and the share of the window's epochs in which it was superior."""
    lines = ["| variant | fusion | " + " | ".join(f"{SHORT[m]} Fisher" for m in ALL) + " | "
             + " | ".join(f"{SHORT[m]} share" for m in ALL) + " | "
             + " | ".join(f"{SHORT[m]} superior" for m in ALL) + " |", "|---" * (2 + 3 * len(ALL)) + "|"]
    for v in preset.variants:
        for fusion in preset.fusions_of(v):
            sel = [r for r in select(rows, variant=v.label, fusion=fusion, subset="all") if "awc_share_rgb" in r]
            if sel:
                lines.append(f"| {v.label} | {fusion} | "
                             + " | ".join(fmt((r[f"awc_fisher_{m}"] for r in sel), 3) for m in ALL) + " | "
                             + " | ".join(f"{np.mean([r[f'awc_share_{m}'] for r in sel]):.0%}" for m in ALL) + " | "
                             + " | ".join(f"{np.mean([r[f'awc_superior_{m}'] for r in sel]):.0%}" for m in ALL) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def held_back(rows, row, variant, modality: str) -> float:
    """How far ``row``'s encoder of ``modality`` moved, against its pair of the same seed (the variant's
    ``against``: joint training for ``awc``, float32 AWC for ``awc_bf16``): the mean over the penalised epochs of
    drift (this run) / drift (pair) at the same epoch; nan when either run did not record drift (runs trained
    before it was recorded, including generator v4's calibrations)."""
    pair = select(rows, variant=variant.against, fusion=row["fusion"], subset=row["subset"], seed=row["seed"])
    if not pair:
        return math.nan
    mine, theirs = run_history(row), {h["epoch"]: h for h in run_history(pair[0])}
    key = f"drift_{modality}"
    ratios = [h[key] / theirs[h["epoch"]][key] for h in mine if h.get("awc_active") and key in h
              and key in theirs.get(h["epoch"], {}) and theirs[h["epoch"]][key] > 0]
    return float(np.mean(ratios)) if ratios else math.nan


def awc_force_table(rows, preset: Preset) -> str:
    """Whom AWC holds back: each encoder's force ratio (||grad penalty|| / ||grad loss|| on its parameters, mean
    over the window's steps) and its displacement since epoch 0 against the paired run of the same seed."""
    lines = ["| variant | fusion | " + " | ".join(f"{SHORT[m]} force" for m in ALL) + " | "
             + " | ".join(f"{SHORT[m]} moved (x pair)" for m in ALL) + " |", "|---" * (2 + 2 * len(ALL)) + "|"]
    for v in preset.variants:
        for fusion in preset.fusions_of(v):
            sel = [r for r in select(rows, variant=v.label, fusion=fusion, subset="all") if "awc_force_rgb" in r]
            if sel:
                moved = [[held_back(rows, r, v, m) for r in sel] for m in ALL]
                lines.append(f"| {v.label} | {fusion} | "
                             + " | ".join(f"{np.mean([r[f'awc_force_{m}'] for r in sel]):.1%}" for m in ALL) + " | "
                             + " | ".join(fmt([y for y in x if not math.isnan(y)], 2) for x in moved) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def coefficients_table(rows, preset: Preset) -> str:
    """The per-modality number each modulating method acts on, as its class declares it (``Method.statistic``:
    OGM-GE's and AGM's mean coefficients, ARL's k, ARM's gains, LSI's information shares, DGL's unimodal
    errors), from the bench's rows (``runs.summary``)."""
    from poise import methods

    lines = ["| variant | fusion | statistic | " + " | ".join(SHORT[m] for m in ALL) + " |", "|---" * (3 + len(ALL)) + "|"]
    for v in preset.variants:
        statistic = methods.get(v.method, **v.params).statistic
        for fusion in preset.fusions_of(v) if statistic else ():
            sel = select(rows, variant=v.label, fusion=fusion, subset="all")
            if sel and f"{statistic.key}_rgb" in sel[0]:
                lines.append(f"| {v.label} | {fusion} | {statistic.what} | " + " | ".join(
                    fmt((r[f"{statistic.key}_{m}"] for r in sel), statistic.digits) for m in ALL) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def plot_awc_shares(rows, preset: Preset, out: Path, save_figure, paths: list) -> None:
    """The share of AWC's penalty per modality in each penalised epoch, stacked, of the first seed's ``awc`` and
    ``awc_norm`` variants."""
    from poise.plots import plt

    first = preset.seeds[0]
    awc = [v.label for v in preset.variants if v.method == "awc" and v.label in ("awc", "awc_norm")]
    awc = [v for v in awc if select(rows, variant=v, fusion=preset.fusions[0], subset="all", seed=first)]
    if awc:
        fig, axes = plt.subplots(1, len(awc), figsize=(4 * len(awc), 3), squeeze=False, sharey=True)
        for ax, label in zip(axes[0], awc):
            history = run_history(select(rows, variant=label, fusion=preset.fusions[0], subset="all", seed=first)[0])
            window = [h for h in history if h.get("awc_active")]
            bottom = np.zeros(len(window))
            for m in ALL:
                share = np.array([h[f"awc_share_{m}"] for h in window])
                ax.bar([h["epoch"] for h in window], share, bottom=bottom, label=m)
                bottom += share
            ax.set_title(f"{label}: share of the penalty per epoch", fontsize=9)
            ax.set_xlabel("epoch")
        axes[0][0].set_ylabel("share of L_AWC")
        axes[0][-1].legend(fontsize=7)
        save_figure(fig, out / "awc_shares.png", paths)
