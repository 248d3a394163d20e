"""The continual bench's tables and findings: 001 Table 2 and Table 4 analogues, what NIS sees and names, the
noise per corrupted modality, the task x task matrices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from poise.bench.continual.presets import (ABLATION_ROWS, GENERIC_FISHER_ROW, LIKE_FOR_LIKE_LABEL,
                                           PAPER_TABLE2_P1_RAW20, Preset)
from poise.bench.continual.runs import stream_keys, ablation_label
from poise.bench.stats import diff_text, fmt, noise_clause, paired, select
from poise.continual.nis import NONE
from poise.data import layout


def stream_label(stream) -> str:
    s = stream_keys(stream)
    return f"{s['protocol']} {s['noise']} {s['ratio']:.0%}" + (f" {s['noisy_modality']}" if s["noisy_modality"] else "")


def _cell(sel, key: str = "avg_mpjpe_mm", pa: str = "avg_pa_mpjpe_mm") -> str:
    return f"{fmt(r[key] for r in sel)} / {fmt(r[pa] for r in sel)}" if sel else "-"


def table_methods(preset: Preset) -> tuple:
    """The rows of the Table 2 analogue: the preset's methods, then ours with the baselines' EWC."""
    return (*preset.recipes, *((LIKE_FOR_LIKE_LABEL,) if preset.like_for_like else ()))


def stream_table(rows, preset: Preset, cell) -> list[str]:
    """A table of ``cell(runs)`` per method (row) and stream (column)."""
    lines = ["| method | " + " | ".join(stream_label(s) for s in preset.streams) + " |",
             "|---" * (1 + len(preset.streams)) + "|"]
    for method in table_methods(preset):
        cells = [cell(select(rows, variant=method, **stream_keys(s))) for s in preset.streams]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def table2(rows, preset: Preset) -> str:
    return "\n".join([
        *stream_table(rows, preset, _cell),
        "", "Mean forgetting (mm; MPJPE after the last task minus right after learning the task, averaged "
        "over the earlier tasks; positive = forgot):", "",
        *stream_table(rows, preset, lambda sel: fmt(r["mean_forgetting_mm"] for r in sel)),
        "", "Mean forgetting in PA-MPJPE (mm; the articulation alone: Procrustes alignment removes where the "
        "body stands and its scale, which every task teaches alike):", "",
        *stream_table(rows, preset, lambda sel: fmt(r["mean_pa_forgetting_mm"] for r in sel
                                                    if "mean_pa_forgetting_mm" in r))])


def table4(rows, preset: Preset) -> str:
    on = stream_keys(preset.streams[0])
    mark = {True: "✓", False: ""}
    lines = ["| a-EWC | re-learning | NIS | run | avg-MPJPE / avg-PA-MPJPE | forgetting |", "|---|---|---|---|---|---|"]
    for (a_ewc, relearn, nis), method, ablate in ABLATION_ROWS:
        sel = select(rows, variant=ablation_label(method, ablate), **on)
        lines.append(f"| {mark[a_ewc]} | {mark[relearn]} | {mark[nis]} | `{ablation_label(method, ablate)}` | "
                     f"{_cell(sel)} | {fmt(r['mean_forgetting_mm'] for r in sel)} |")
    sel = select(rows, variant=ablation_label(*GENERIC_FISHER_ROW), **on)
    lines.append(f"| generic EWC | ✓ | ✓ | `{ablation_label(*GENERIC_FISHER_ROW)}` | {_cell(sel)} | "
                 f"{fmt(r['mean_forgetting_mm'] for r in sel)} |")
    return "\n".join(lines)


def nis_table(rows, preset: Preset) -> str:
    lines = ["| stream | split | noisy modality named | clean precision | clean recall | corrupted removed |",
             "|---|---|---|---|---|---|"]
    for stream in (*preset.streams, *preset.diagnostics):
        sel = select(rows, variant="ours", **stream_keys(stream))
        for prefix, label in (("nis", "NIS's GMM split (gradient-stop)"), ("plain", "GMM split without gradient-stop")):
            part = [r for r in sel if f"{prefix}_named" in r]
            if part:
                lines.append(f"| {stream_label(stream)} | {label} | {fmt((r[f'{prefix}_named'] for r in part), 2)} | "
                             + " | ".join(fmt((r[f"{prefix}_{k}"] for r in part), 3)
                                          for k in ("clean_precision", "clean_recall", "noisy_recall")) + " |")
        part = [r for r in select(rows, variant="dividemix", **stream_keys(stream)) if "division_noisy_recall" in r]
        if part:
            lines.append(f"| {stream_label(stream)} | DivideMix's co-divide (last epoch) | - | "
                         + " | ".join(fmt((r[f"division_{k}"] for r in part), 3)
                                      for k in ("clean_precision", "clean_recall", "noisy_recall")) + " |")
    return "\n".join(lines)


def naming_confusion(rows, modalities=layout.MODALITIES) -> str:
    """Corrupted modality (rows; "none": a task of a clean stream) against what NIS named (columns, "none"
    included), counted over every task of every run with NIS (seeds x tasks x streams); the false-alarm rate on
    clean tasks and the share named right on noisy ones."""
    pairs = [tuple(p) for r in rows for p in r.get("naming", [])]
    if not pairs:
        return ""
    answers = (*modalities, NONE)
    truths = [m for m in answers if any(t == m for t, _ in pairs)]
    lines = ["| corrupted \\ named | " + " | ".join(answers) + " | tasks | answered right |",
             "|---" * (len(answers) + 3) + "|"]
    for truth in truths:
        counts = [sum(1 for t, n in pairs if t == truth and n == m) for m in answers]
        total = sum(counts)
        lines.append(f"| {truth} | " + " | ".join(str(c) for c in counts) +
                     f" | {total} | {counts[answers.index(truth)] / total:.0%} |")
    clean = [n for t, n in pairs if t == NONE]
    noisy = [(t, n) for t, n in pairs if t != NONE]
    lines.append("")
    if clean:
        alarms = sum(n != NONE for n in clean)
        lines.append(f"False alarms (a modality named on a clean task): {alarms} of {len(clean)} clean tasks "
                     f"({alarms / len(clean):.0%}).")
    if noisy:
        lines.append(f"Named right in {np.mean([t == n for t, n in noisy]):.0%} of {len(noisy)} noisy tasks (chance "
                     f"among the modalities: {1 / len(modalities):.0%}); answered none in "
                     f"{np.mean([n == NONE for _, n in noisy]):.0%}.")
    return "\n".join(lines)


def noise_table(rows) -> str:
    """What the corruption does to the probe's per-sample losses, per noise kind and corrupted modality, over
    every noisy task NIS ran on: the mean loss of corrupted over clean samples and the AUC between them, before
    and after the probe; how often NIS named the modality; the split's clean precision and noisy recall; for
    unaligned kinds, how far the source frames' poses are from the true ones."""
    tasks = [t for r in rows for t in r.get("nis_tasks", []) if t["truth"] != NONE]
    if not tasks:
        return ""
    lines = ["| noise | corrupted | tasks | loss ratio before → after probe | AUC before → after | named right | "
             "GMM split: clean precision | GMM split: corrupted removed | corrupted left out of training | "
             "source pose MPJPE / root-relative (median, mm) |", "|---|---|---|---|---|---|---|---|---|---|"]
    groups = sorted({(t["kind"], t["truth"]) for t in tasks}, key=lambda g: (g[0], layout.MODALITIES.index(g[1])))
    for kind, modality in groups:
        sel = [t for t in tasks if (t["kind"], t["truth"]) == (kind, modality)]

        def pair(key):
            return f"{fmt((t[f'{key}_before'] for t in sel if f'{key}_before' in t), 2)} → " \
                   f"{fmt((t[f'{key}_after'] for t in sel if f'{key}_after' in t), 2)}"

        source = [t for t in sel if "source_mpjpe_mm" in t]
        lines.append(f"| {kind} | {modality} | {len(sel)} | {pair('loss_ratio')} | {pair('auc')} | "
                     f"{np.mean([t['named'] == modality for t in sel]):.0%} | "
                     f"{fmt((t['gmm_quality']['clean_precision'] for t in sel), 3)} | "
                     f"{fmt((t['gmm_quality']['noisy_recall'] for t in sel), 2)} | "
                     f"{fmt((t['quality']['noisy_recall'] for t in sel), 2)} | "
                     + (f"{np.median([t['source_mpjpe_mm'] for t in source]):.0f} / "
                        f"{np.median([t['source_root_relative_mm'] for t in source]):.0f}" if source else "-") + " |")
    return "\n".join(lines)


def threshold_table(thresholds: dict, modalities=layout.MODALITIES) -> str:
    """The naming thresholds each seed's runs used (``naming_thresholds``)."""
    unset = "fewer than 2 clean drops of it under the other seeds' control runs: NIS names it on any drop"
    if not any(thresholds.values()):
        return f"No thresholds: every modality had {unset}."
    lines = ["| seed | " + " | ".join(modalities) + " |", "|---" * (len(modalities) + 1) + "|"]
    for seed, t in thresholds.items():
        lines.append(f"| {seed} | " + " | ".join(f"{t[m]:.3f}" if m in t else "-" for m in modalities) + " |")
    if any(m not in t for t in thresholds.values() for m in modalities):
        lines.append(f"\n-: no threshold, {unset}.")
    return "\n".join(lines)


def matrices(sel) -> list:
    """The task x task MPJPE matrix of each selected run, from its results.json."""
    return [json.loads((Path(r["run"]) / "results.json").read_text())["mpjpe_matrix_mm"] for r in sel]


def matrix_tables(rows, preset: Preset) -> str:
    """The mean task x task MPJPE matrix of each method on the first stream (row i: after task i)."""
    on = stream_keys(preset.streams[0])
    out = []
    for method in preset.recipes:
        sel = select(rows, variant=method, **on)
        if not sel:
            continue
        mats = matrices(sel)
        n = len(mats[0])
        lines = [f"**{method}** (mean over {len(mats)} seed{'s' if len(mats) != 1 else ''})", "",
                 "| after \\ on | " + " | ".join(f"task {j}" for j in range(n)) + " |", "|---" * (n + 1) + "|"]
        for i in range(n):
            cells = [f"{np.mean([m[i][j] for m in mats]):.1f}" if j <= i else "" for j in range(n)]
            lines.append(f"| task {i} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def findings(rows, preset: Preset) -> list[str]:
    out = []
    for stream in preset.streams:
        on = stream_keys(stream)
        for ours in ("ours", *((LIKE_FOR_LIKE_LABEL,) if preset.like_for_like else ())):
            for method in preset.recipes:
                if method == "ours":
                    continue
                d = paired(rows, "avg_mpjpe_mm", dict(variant=ours, **on), dict(variant=method, **on))
                if d:
                    word = "better" if np.mean(d) < 0 else "worse"
                    out.append(f"{stream_label(stream)}: {ours} - {method} = {diff_text(d)} avg-MPJPE, {word}"
                               f"{noise_clause(d)}.")
        d = paired(rows, "avg_mpjpe_mm", dict(variant="ours", **on), dict(variant=LIKE_FOR_LIKE_LABEL, **on))
        if d:
            out.append(f"{stream_label(stream)}: ours with a-EWC - ours with online EWC = {diff_text(d)} avg-MPJPE"
                       f"{noise_clause(d)}.")
    if preset.ablation:
        on = stream_keys(preset.streams[0])
        for _, method, ablate in (*ABLATION_ROWS, (None, *GENERIC_FISHER_ROW)):
            label = ablation_label(method, ablate)
            if label in ("ours", "naive"):
                continue
            d = paired(rows, "avg_mpjpe_mm", dict(variant="ours", **on), dict(variant=label, **on))
            if d:
                word = "helps" if np.mean(d) < 0 else "hurts"
                out.append(f"{stream_label(preset.streams[0])}: ours - {label} = {diff_text(d)} avg-MPJPE: putting "
                           f"back what {label} switches off {word}{noise_clause(d)}.")
    stream = preset.streams[0]
    if stream == ("P1", "raw", 0.2):
        paper = ", ".join(f"{m} {v:.2f}" for m, v in PAPER_TABLE2_P1_RAW20.items())
        out.append(f"For scale, 001 Table 2 on the real MM-Fi (P1, raw 20 %, 7 tasks, avg-MPJPE in mm): {paper}; ours "
                   f"beats fine-tuning there by 27.8 mm.")
    return out
