"""The bench's report: Markdown tables, findings computed seed by seed, and plots.

- Methods x fusion (001 Table 1 analogue): each variant's last-epoch test MPJPE / PA-MPJPE, mean +- std over
  seeds (sample std, n - 1); and each variant against the row it is paired with (the baseline trained with
  the same optimiser), paired seed by seed with a 95 % t-interval.
- Modality subsets, joint training (001 Table 3 analogue); the weak modalities' collapse (unimodal-output
  std against the ground truth's, Shapley scores).
- Convergence: how much each run's validation MPJPE still moved over its last 20 % of epochs.
- Mechanisms (``mechanisms``): the per-modality number each method acts on, as its class declares it, and
  who gets 000's penalty.
- Ablation tables next to the paper's numbers, with the settings each row's method shows (``Method.shown``).
- Plots (``plots``).
No method is named here: what a method adds to the report, its class says (``poise.methods.base``).
The last epoch is reported, never the best one: picking the best epoch on the test split would be selecting
on the test set.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from poise.bench import mechanisms
from poise.bench.presets import ALL, BASELINE, SHORT, SINGLES, Preset
from poise.bench.plots import plot_bench
from poise.bench.robustness import robust_sections
from poise.bench.runs import data_text, subset_name
from poise.bench.stats import (diff_text, fmt, half_width, mean_sd, noise_clause, paired, seeds_for, select,
                               t_half_width, verdict)
from poise.run_dir import csv_text
from poise.runtime import write_atomic

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
        sel = select(rows, variant=BASELINE.label, fusion=fusion, subset=subset_name(subset))
        label = " + ".join(SHORT[m] for m in subset) if tuple(subset) != ALL else "R + L + M + W (all)"
        lines.append(f"| {label} | {_cell([r['test_mpjpe_mm'] for r in sel])} | "
                     f"{_cell([r['test_pa_mpjpe_mm'] for r in sel])} |")
    return "\n".join(lines)


def collapse_table(rows, preset: Preset) -> str:
    lines = ["| fusion | " + " | ".join(f"{m} std (mm)" for m in ALL) + " | ground truth std (mm) | "
             + " | ".join(f"{m} Shapley" for m in ALL) + " |", "|---" * (2 + 2 * len(ALL)) + "|"]
    for fusion in preset.fusions:
        sel = select(rows, variant=BASELINE.label, fusion=fusion, subset="all")
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


def ablation_pair(preset: Preset, label: str) -> str | None:
    """The run an ablation row is meant to beat: the variant's ``against`` (a method under SGD: joint training
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


def _settings(sel) -> str:
    """What an ablation row sets: the optimiser and the parameters its method shows (``Method.shown``), as it
    resolves them for the run's length (``Method.settings``: a default that is a fraction of the run shows as
    epochs), of those the run recorded in its method.json."""
    path = Path(sel[0]["run"]) / "method.json" if sel else None
    if path is None or not path.is_file():
        return ""
    from poise import methods

    saved, epochs = json.loads(path.read_text()), int(sel[0]["epochs"])
    shown = methods.get(saved["name"], **saved["params"]).settings(epochs)
    optimizer = saved.get("optimizer") or {}
    return ", ".join([*([f"{optimizer['optimizer']} {optimizer['lr']:g}"] if optimizer else []),
                      *(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in shown.items() if k in saved["params"])])


def findings(rows, preset: Preset) -> list[str]:
    """Plain statements from the numbers; each says what it compares, by how much, and whether it beats noise."""
    out = []
    fusion = preset.fusions[0]
    base = dict(variant=BASELINE.label, fusion=fusion)
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
    write_atomic(path, csv_text(rows, keys))


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
    for title, table in (*mechanisms.tables(rows, preset), ("Convergence", convergence_table(rows, preset))):
        if table:
            md += [f"## {title}", "", table, ""]
    md += ["## Findings", "", *[f"- {line}" for line in findings(rows, preset)], "",
           "## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    text = "\n".join(md)
    (out / "report.md").write_text(text)
    return text


def _epochs_text(preset: Preset) -> str:
    if isinstance(preset.epochs, dict):
        return ", ".join(f"{preset.epochs_of(f)} at {f}" for f in preset.fusions)
    return str(preset.epochs)
