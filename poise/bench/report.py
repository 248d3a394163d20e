"""The bench's report: Markdown tables, findings computed seed by seed, and plots.

- Methods x fusion (001 Table 1 analogue): each variant's last-epoch test MPJPE / PA-MPJPE, mean +- std over
  seeds (sample std, n - 1); and each variant against the row it is paired with (the baseline trained with
  the same optimiser), paired seed by seed with a 95 % t-interval.
- Modality subsets, joint training (001 Table 3 analogue); the weak modalities' collapse (unimodal-output
  std against the ground truth's, Shapley scores).
- Convergence: how much each run's validation MPJPE still moved over its last 20 % of epochs.
- Mechanisms: who gets AWC's penalty (each encoder's Fisher, its share of the penalty, how often it was
  superior), and the per-modality number each modulating method acts on (OGM-GE's, AGM's and ARL's
  coefficients, ARM's feature gains, LSI's information shares, DGL's unimodal errors).
- Ablation tables next to the paper's numbers.
The last epoch is reported, never the best one: picking the best epoch on the test split would be selecting
on the test set.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from poise.bench.presets import ALL, BASELINE, SHORT, SINGLES, Preset
from poise.bench.robustness import plot_robust, robust_sections
from poise.bench.runs import data_text, subset_name
from poise.bench.stats import (diff_text, fmt, half_width, mean_sd, noise_clause, paired, seeds_for, select,
                               t_half_width, verdict)

PAPER_ALL_VS_RL = ("paper 000 reports +0.94 mm (53.87 vs 52.93), paper 001 Table 3 reports -0.12 mm "
                   "(52.72 vs 52.84)")


def _cell(values, digits: int = 1) -> str:
    return fmt(values, digits) if values else "–"


def methods_table(rows, preset: Preset) -> str:
    head = "| variant | optimiser | " + " | ".join(f"{f} MPJPE | {f} PA-MPJPE" for f in preset.fusions) + " |"
    lines = [head, "|---" * (2 + 2 * len(preset.fusions)) + "|"]
    for v in preset.variants:
        cells = []
        for fusion in preset.fusions:
            sel = select(rows, variant=v.label, fusion=fusion, subset="all")
            cells += [_cell([r["test_mpjpe_mm"] for r in sel]), _cell([r["test_pa_mpjpe_mm"] for r in sel])]
        lines.append(f"| {v.label} | {optimiser_of(v)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def optimiser_of(variant) -> str:
    """The optimiser and its learning rate, e.g. ``sgd 0.1``."""
    from poise import methods, optim
    from poise.config import TrainConfig

    spec = optim.resolve(TrainConfig(**variant.train), methods.get(variant.method, **variant.params))
    return f"{spec['optimizer']} {spec['lr']:g}"


DECIDED_MM = 1.5  # the 95 % half-width a comparison should be decided to (issue 26)


def noise_floor(rows, preset: Preset) -> str:
    """The A/A noise floor: the reference row (joint training) against itself under other seeds, whose paired
    difference has sqrt(2) x its between-seed std (the two runs share nothing). A variant paired with it at the
    same seed shares the seed's initialisation and data order, so its own noise can be lower: this is the
    conservative floor, and the seeds it needs for a 95 % interval of +-DECIDED_MM."""
    reference = next((v for v in preset.variants if v.against is None), None)
    sel = select(rows, variant=reference.label, fusion=preset.fusions[0], subset="all") if reference else []
    if len(sel) < 2:
        return ""
    n = len(sel)
    lines = [f"Joint training (`{reference.label}`, {preset.fusions[0]}) against itself under other seeds, estimated "
             f"from its {n} seeds: a paired difference between two variants is decided to the half-width below "
             f"at {n} seeds, and to ±{DECIDED_MM} mm only with the seeds in the last column.", "",
             f"| metric | between-seed std | A/A paired std (√2 ×) | 95 % half-width, {n} seeds | seeds for ±{DECIDED_MM} mm |",
             "|---|---|---|---|---|"]
    for key, name in (("test_mpjpe_mm", "MPJPE"), ("test_rootrel_mpjpe_mm", "root-relative MPJPE"),
                      ("test_pa_mpjpe_mm", "PA-MPJPE")):
        values = [r[key] for r in sel if key in r and not math.isnan(r[key])]
        if len(values) < 2:
            continue
        between = mean_sd(values)[1]
        paired_sd = between * math.sqrt(2)
        need = seeds_for(paired_sd, DECIDED_MM)
        lines.append(f"| {name} | {between:.2f} mm | {paired_sd:.2f} mm | ±{t_half_width(paired_sd, n):.2f} mm | "
                     f"{need if need else '> 1000'} |")
    return "\n".join(lines)


def differences(rows, label: str, against: str, fusion: str) -> list:
    return paired(rows, "test_mpjpe_mm", dict(variant=label, fusion=fusion, subset="all"),
                  dict(variant=against, fusion=fusion, subset="all"))


def differences_table(rows, preset: Preset) -> str:
    lines = ["| variant | against | " + " | ".join(preset.fusions) + " |", "|---" * (2 + len(preset.fusions)) + "|"]
    for v in preset.variants:
        if v.against is None:
            continue
        cells = []
        for fusion in preset.fusions:
            d = differences(rows, v.label, v.against, fusion)
            if not d:
                cells.append("–")
                continue
            mean, sd = mean_sd(d)
            half = half_width(d)
            spread = "" if math.isnan(sd) else f" ± {sd:.1f} (95 % ± {half:.1f}, {verdict(d)})"
            cells.append(f"{mean:+.1f}{spread}")
        lines.append(f"| {v.label} | {v.against} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def subsets_table(rows, preset: Preset) -> str:
    fusion = preset.fusions[0]
    lines = ["| modalities | MPJPE | PA-MPJPE |", "|---|---|---|"]
    for subset in preset.subsets:
        sel = select(rows, variant="baseline", fusion=fusion, subset=subset_name(subset))
        label = " + ".join(SHORT[m] for m in subset) if tuple(subset) != ALL else "R + L + M + W (all)"
        lines.append(f"| {label} | {_cell([r['test_mpjpe_mm'] for r in sel])} | "
                     f"{_cell([r['test_pa_mpjpe_mm'] for r in sel])} |")
    return "\n".join(lines)


def collapse_table(rows, preset: Preset) -> str:
    lines = ["| fusion | " + " | ".join(f"{m} std (mm)" for m in ALL) + " | ground truth std (mm) | "
             + " | ".join(f"{m} Shapley" for m in ALL) + " |", "|---" * (2 + 2 * len(ALL)) + "|"]
    for fusion in preset.fusions:
        sel = select(rows, variant="baseline", fusion=fusion, subset="all")
        if sel:
            lines.append(f"| {fusion} | " + " | ".join(fmt(r[f"unimodal_std_mm_{m}"] for r in sel) for m in ALL)
                         + f" | {fmt(r['gt_std_mm'] for r in sel)} | "
                         + " | ".join(fmt((r[f"shapley_{m}"] for r in sel), 2) for m in ALL) + " |")
    return "\n".join(lines)


def convergence_table(rows, preset: Preset) -> str:
    """Validation MPJPE change over the last 20 % of epochs (a converged run moves less than ~1 mm), and the
    last epoch's train / validation / test MPJPE, per variant and fusion."""
    lines = ["| variant | fusion | val change, last 20 % of epochs (mm) | train MPJPE | val MPJPE | test MPJPE |",
             "|---|---|---|---|---|---|"]
    for v in preset.variants:
        for fusion in preset.fusions_of(v):
            sel = [r for r in select(rows, variant=v.label, fusion=fusion, subset="all") if "val_change_mm" in r]
            if sel:
                lines.append(f"| {v.label} | {fusion} | {fmt(r['val_change_mm'] for r in sel)} | "
                             f"{fmt(r['train_mpjpe_mm'] for r in sel)} | {fmt(r['val_mpjpe_mm'] for r in sel)} | "
                             f"{fmt(r['test_mpjpe_mm'] for r in sel)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


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
    mine, theirs = _history(row), {h["epoch"]: h for h in _history(pair[0])}
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


# the per-modality number each method acts on, as ``runs.summary`` keeps it: (key, what it is)
METHOD_STATISTICS = {"ogm_ge": ("ogm_ge_k", "mean gradient coefficient k"), "agm": ("agm_k", "mean gradient coefficient k"),
                     "arl": ("arl_k", "mean coefficient k (gradients x (1 + k))"),
                     "arm": ("arm_gain", "feature gain at the end"),
                     "lsi": ("lsi_share", "information share at the end (1/4 = equal)"),
                     "dgl": ("dgl_uni_mm", "unimodal training MPJPE (mm) in the last epoch")}


def coefficients_table(rows, preset: Preset) -> str:
    """The per-modality number each modulating method acts on (OGM-GE's and AGM's mean coefficients, ARL's k,
    ARM's gains, LSI's information shares, DGL's unimodal errors)."""
    lines = ["| variant | fusion | statistic | " + " | ".join(SHORT[m] for m in ALL) + " |", "|---" * (3 + len(ALL)) + "|"]
    for v in preset.variants:
        key, what = METHOD_STATISTICS.get(v.method, (None, ""))
        for fusion in preset.fusions_of(v) if key else ():
            sel = select(rows, variant=v.label, fusion=fusion, subset="all")
            if sel and f"{key}_rgb" in sel[0]:
                lines.append(f"| {v.label} | {fusion} | {what} | "
                             + " | ".join(fmt((r[f"{key}_{m}"] for r in sel), 1 if key == "dgl_uni_mm" else 2)
                                          for m in ALL) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def ablation_pair(preset: Preset, label: str) -> str | None:
    """The run an ablation row is meant to beat: the variant's ``against`` (OGM-GE under SGD: joint training
    under SGD), else the Adam baseline if the preset has one (so a reference row shows its own gap)."""
    has_baseline = any(v.label == BASELINE.label for v in preset.variants)
    return preset.variant(label).against or (BASELINE.label if has_baseline and label != BASELINE.label else None)


def ablation_table(rows, ablation, preset: Preset) -> str:
    """One ablation's rows, each paired with the run it is meant to beat (``ablation_pair``)."""
    fusion = preset.fusions[0]
    lines = ["| variant | setting | MPJPE | PA-MPJPE | against | difference (paired) | paper |",
             "|---|---|---|---|---|---|---|"]
    for label in ablation.rows:
        sel = select(rows, variant=label, fusion=fusion, subset="all")
        against = ablation_pair(preset, label)
        d = differences(rows, label, against, fusion) if against else []
        vs = f"{np.mean(d):+.1f} (95 % ± {half_width(d):.1f}, {verdict(d)})" if len(d) > 1 else "–"
        paper = ablation.paper.get(label)
        lines.append(f"| {label} | {_settings(sel)} | {_cell([r['test_mpjpe_mm'] for r in sel])} | "
                     f"{_cell([r['test_pa_mpjpe_mm'] for r in sel])} | {against or '–'} | {vs} | "
                     f"{'' if paper is None else f'{paper:.2f}'} |")
    return "\n".join(lines)


SETTINGS = {"awc": ("alpha_s", "alpha_i", "window", "profit", "normalise"), "relearn": ("relearn_epoch",)}


def _settings(sel) -> str:
    """What an ablation row sets: the optimiser and the parameters its table varies, with AWC's window K and
    re-learning's r in epochs as the methods resolve them (0 / unset: 40 % of the run)."""
    path = Path(sel[0]["run"]) / "method.json" if sel else None
    if path is None or not path.is_file():
        return ""
    from poise import methods

    saved, epochs = json.loads(path.read_text()), int(sel[0]["epochs"])
    params = dict(saved["params"])
    if saved["name"] == "awc":
        params["window"] = f"{methods.get('awc', **saved['params']).window_for(epochs)} of {epochs}"
    if saved["name"] == "relearn":
        params["relearn_epoch"] = f"{methods.get('relearn', **saved['params']).epoch_for(epochs)} of {epochs}"
    optimizer = saved.get("optimizer") or {}
    return ", ".join([*([f"{optimizer['optimizer']} {optimizer['lr']:g}"] if optimizer else []),
                      *(f"{k}={params[k]:g}" if isinstance(params[k], float) else f"{k}={params[k]}"
                        for k in SETTINGS.get(saved["name"], ()) if k in params)])


def findings(rows, preset: Preset) -> list[str]:
    """Plain statements from the numbers; each says what it compares, by how much, and whether it beats noise."""
    out = []
    fusion = preset.fusions[0]
    base = dict(variant="baseline", fusion=fusion)
    rl = subset_name(("rgb", "lidar"))
    d = paired(rows, "test_mpjpe_mm", dict(subset="all", **base), dict(subset=rl, **base))
    if d:
        mean = float(np.mean(d))
        word = "loses to" if mean > 0 else "beats" if mean < 0 else "ties with"
        out.append(f"Four-modality joint training ({fusion}) {word} RGB + LiDAR: MPJPE difference "
                   f"all - (R + L) = {diff_text(d)}{noise_clause(d)}; {PAPER_ALL_VS_RL}.")
    if all(s in preset.subsets for s in SINGLES):  # "best single modality" needs all four
        means = {m: [r["test_mpjpe_mm"] for r in select(rows, subset=subset_name((m,)), **base)] for m in ALL}
        if all(means.values()):
            best = min(means, key=lambda m: np.mean(means[m]))
            d = paired(rows, "test_mpjpe_mm", dict(subset="all", **base), dict(subset=subset_name((best,)), **base))
            if d:
                out.append(f"Against its best single modality ({best}) the four-modality model differs by "
                           f"{diff_text(d)}{noise_clause(d)}.")
    sel = select(rows, subset="all", **base)
    if sel:
        gt = np.mean([r["gt_std_mm"] for r in sel])
        parts = [f"{m} {np.mean([r[f'unimodal_std_mm_{m}'] for r in sel]):.1f} mm "
                 f"({np.mean([r[f'unimodal_std_mm_{m}'] for r in sel]) / gt:.0%})" for m in ALL]
        out.append(f"Unimodal-output std in joint training ({fusion}), against the ground truth's {gt:.1f} mm: "
                   + ", ".join(parts) + ". A collapsed modality's share is near 0 %.")
    for fusion_ in preset.fusions:
        for v in preset.variants:
            if v.against is None:
                continue
            d = differences(rows, v.label, v.against, fusion_)
            if d:
                clause = noise_clause(d)
                mean = float(np.mean(d))
                within = clause.startswith("; within")  # "worse; within seed noise" would contradict itself
                word = "no different" if within or mean == 0 else "better" if mean < 0 else "worse"
                out.append(f"{v.label} vs {v.against} ({fusion_}): {diff_text(d)} MPJPE, {word}{clause}.")
    return out


def write_csv(path: Path, rows) -> None:
    """``rows`` (dicts) as a CSV: the first row's keys in order, then every other key any row has, sorted."""
    keys = list(rows[0]) + sorted({k for r in rows for k in r} - set(rows[0]))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(rows)


def report(rows, preset: Preset, name: str, out: Path, command: str, seconds: float, data: str) -> str:
    """Write ``results.csv``, the plots and ``report.md`` into ``out``; return the Markdown."""
    write_csv(out / "results.csv", rows)
    plots = plot_bench(rows, preset, out)
    settings = ", ".join(f"{k}={v}" for k, v in preset.train.items())
    md = [f"# poise bench: preset `{name}`", "",
          f"Command: `{command}`", "",
          f"Preset: {preset.about}. Data: {data}. {data_text(rows)}", "",
          f"{len(rows)} runs, epochs {_epochs_text(preset)}, seeds {list(preset.seeds)}; {settings}. Last-epoch test "
          f"MPJPE / PA-MPJPE in mm, mean ± std over seeds. Wall time of this invocation {seconds / 60:.1f} min "
          f"(runs already finished are read back, not retrained); training time "
          f"{sum(r['seconds'] for r in rows) / 60:.1f} min summed over runs.", "",
          *(["## Noise floor (A/A)", "", floor, ""] if (floor := noise_floor(rows, preset)) else []),
          "## Variants", "", *[f"- `{v.label}`: {v.about or v.method}" + (f" (method `{v.method}`, {v.params})"
                                                                           if v.params else "") for v in preset.variants],
          "", "## Methods x fusion (001 Table 1 analogue)", "", methods_table(rows, preset), ""]
    if any(v.against for v in preset.variants):
        md += ["## Each variant against its pair (MPJPE difference, mm; negative = better)", "",
               differences_table(rows, preset), ""]
    if preset.subsets:
        md += [f"## Modality subsets, joint training, {preset.fusions[0]} fusion (001 Table 3 analogue)", "",
               subsets_table(rows, preset), "",
               "## Weak-modality collapse: unimodal-output std and Shapley-Pearson scores, joint training", "",
               collapse_table(rows, preset), ""]
    md += robust_sections(rows, preset)
    for ablation in preset.ablations:
        md += [f"## Ablation: {ablation.title}", "", ablation_table(rows, ablation, preset), "",
               *([ablation.note, ""] if ablation.note else [])]
    for title, table in (("Who gets AWC's penalty", awc_table(rows, preset)),
                         ("Whom AWC holds back: force ratio over the window, displacement against the pair",
                          awc_force_table(rows, preset)),
                         ("What each modulating method acts on, per modality", coefficients_table(rows, preset)),
                         ("Convergence", convergence_table(rows, preset))):
        if table:
            md += [f"## {title}", "", table, ""]
    md += ["## Findings", "", *[f"- {line}" for line in findings(rows, preset)], "",
           "## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    text = "\n".join(md)
    (out / "report.md").write_text(text)
    return text


# ----------------------------------------------------------------------------------------------------------------
# plots


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
        stats = [mean_sd(r["test_mpjpe_mm"] for r in select(rows, variant="baseline", fusion=preset.fusions[0],
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
        history = _history(select(rows, variant=label, fusion=preset.fusions[0], subset="all", seed=first)[0])
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
                history = _history(r)
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

    awc = [v.label for v in preset.variants if v.method == "awc" and v.label in ("awc", "awc_norm")]
    awc = [v for v in awc if select(rows, variant=v, fusion=preset.fusions[0], subset="all", seed=first)]
    if awc:
        fig, axes = plt.subplots(1, len(awc), figsize=(4 * len(awc), 3), squeeze=False, sharey=True)
        for ax, label in zip(axes[0], awc):
            history = _history(select(rows, variant=label, fusion=preset.fusions[0], subset="all", seed=first)[0])
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
    if preset.ablations:
        plot_ablations(rows, preset, out, paths)
    plot_robust(rows, preset, out, save_figure, paths)
    return paths


def plot_ablations(rows, preset: Preset, out: Path, paths: list) -> None:
    """One panel per ablation table: each row's paired difference from the run it is meant to beat, its 95 %
    t-interval and the seeds, and the paper's difference from its baseline where the paper gives one."""
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


def _epochs_text(preset: Preset) -> str:
    if isinstance(preset.epochs, dict):
        return ", ".join(f"{preset.epochs_of(f)} at {f}" for f in preset.fusions)
    return str(preset.epochs)


def _history(row) -> list:
    return json.loads((Path(row["run"]) / "metrics.json").read_text())


def save_figure(fig, path: Path, paths: list) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    from poise.plots import plt

    plt.close(fig)
    paths.append(path)
