"""``poise continual-bench``: paper 001's continual comparison on our data, over seeds.

- Table 2 analogue: avg-MPJPE / avg-PA-MPJPE after the last task (001 Eq. 13) of every method on every stream
  (protocol x noise kind x ratio), mean +- std over seeds, and the mean forgetting.
- Table 4 analogue: the parts of ours (adaptive EWC, re-learning, NIS) on and off, on the preset's first stream,
  with 001's six rows (no part = naive fine-tuning; "no a-EWC" = no EWC at all) and one more: ours with the
  generic instead of the adaptive Fisher.
- NIS quality, measured against the recorded corrupted samples: how often the noisy modality was named, the
  clean set's precision and recall, the share of corrupted samples removed; with and without gradient-stop
  (001 Fig. 3) on the first stream; DivideMix's own split for comparison.
- The task x task MPJPE matrices and 001 Fig. 5: (a) every task's MPJPE after the last task, (b) each task's
  MPJPE right after learning it; Fig. 3: histograms of the per-sample losses after the NIS fit with and
  without gradient-stop, corrupted samples apart.

Every run is an ordinary ``poise continual`` run under ``OUT/runs/NAME``; a finished one is read back and an
interrupted one resumed from its last finished task, so re-running the same command picks up where it stopped.
``--jobs N`` runs N at once in separate processes. Paired differences (same seed) are tested against seed noise
with the 95 % t-interval of ``poise.bench.noise_clause``.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from poise.bench import diff_text, fmt, noise_clause, paired, run_all, save_figure, select, settings_diff
from poise.continual import tasks as task_stream
from poise.continual.config import ContinualConfig
from poise.continual.nis import MODES, name_noisy_modality
from poise.continual.results import forgetting
from poise.data import layout
from poise.errors import PoiseError

# 001 Table 4's rows as (a-EWC, re-learning, NIS) -> the run that has exactly those parts, and one more row
ABLATION_ROWS = (
    ((False, False, False), "naive", ()),
    ((False, True, True), "ours", ("ewc",)),
    ((True, False, False), "ours", ("nis", "relearn")),
    ((True, False, True), "ours", ("relearn",)),
    ((True, True, False), "ours", ("nis",)),
    ((True, True, True), "ours", ()),
)
GENERIC_FISHER_ROW = ("ours", ("adaptive_ewc",))  # a-EWC replaced by EWC with the generic Fisher
PAPER_TABLE2_P1_RAW20 = {"naive": 168.55, "coteaching": 164.00, "dividemix": 156.76, "ours": 140.80}


@dataclass(frozen=True)
class Preset:
    streams: tuple  # (protocol, noise, ratio) each; the first also carries the ablation and Fig. 3
    methods: tuple
    seeds: tuple
    ablation: bool = True  # Table 4 on the first stream
    clean_control: bool = True  # ours on a clean stream too: what NIS names when nothing is corrupted
    config: dict = field(default_factory=dict)  # ContinualConfig overrides shared by every run
    about: str = ""


_SMALL = dict(epochs=5, relearn_epoch=1, train_stride=2)  # re-learn after epoch index 1 (2 of 5)
PRESETS = {
    "small": Preset(
        streams=(("P1", "raw", 0.2),), methods=("naive", "ewc", "coteaching", "dividemix", "ours"), seeds=(0, 1),
        config=dict(_SMALL, tasks=4),
        about="P1 with 20 % raw noise, its first 4 tasks, the five methods, the Table 4 ablation and ours on the "
              "clean stream (about 40 minutes on 2 cores with --jobs 2 and its 2 seeds; 64 min measured for 3)"),
    "paper": Preset(
        streams=tuple((p, n, r) for p in ("P1", "P2") for n in ("raw", "unaligned") for r in (0.2, 0.4)),
        methods=("naive", "ewc", "coteaching", "dividemix", "ours"), seeds=(0, 1, 2), config=dict(_SMALL),
        about="001 Table 2's grid (P1 / P2 x raw / unaligned x 20 / 40 %), whole streams, every method, the "
              "Table 4 ablation, 3 seeds (about 7 hours on 2 cores with --jobs 2, estimated from small's per-task cost)"),
    "tiny": Preset(
        streams=(("P1", "raw", 0.4),), methods=("naive", "ours"), seeds=(0, 1), ablation=False, clean_control=False,
        config=dict(epochs=2, relearn_epoch=0, dim=16, lidar_points=32, mmwave_points=16, train_stride=2,
                    batch_size=32, fisher_frames=64, assess_frames=128, noisy_modality="rgb", tasks=2),
        about="a smoke test on `poise simulate --preset tiny-continual` data (a minute)"),
}


def ablation_label(method: str, ablate) -> str:
    return method + "".join(f"-no_{a}" for a in ablate)


def plan(preset: Preset, data: str, out: Path, on_error: str = "raise") -> list:
    """The ContinualConfigs of a preset, seed-major, without duplicates."""
    cells = [(stream, method, ()) for stream in preset.streams for method in preset.methods]
    if preset.ablation:
        cells += [(preset.streams[0], method, tuple(ablate)) for _, method, ablate in ABLATION_ROWS]
        cells.append((preset.streams[0], *GENERIC_FISHER_ROW))
    if preset.clean_control:
        cells.append(((preset.streams[0][0], "none", preset.streams[0][2]), "ours", ()))
    configs, seen = [], set()
    for seed in preset.seeds:
        for (protocol, noise, ratio), method, ablate in cells:
            first = (protocol, noise, ratio) == preset.streams[0]
            config = ContinualConfig(data=data, protocol=protocol, noise=noise, ratio=ratio, method=method,
                                     ablate=list(ablate), seed=seed, out=str(out / "runs"), on_error=on_error,
                                     compare_gradient_stop=first and method == "ours" and not ablate,
                                     **preset.config)
            if config.run_name not in seen:
                seen.add(config.run_name)
                configs.append(config)
    return configs


def _row(config: ContinualConfig, run_dir: Path) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    records = json.loads((run_dir / "tasks.json").read_text())
    row = {"protocol": config.protocol, "noise": config.noise, "ratio": config.ratio, "method": config.method,
           "variant": ablation_label(config.method, config.ablate), "seed": config.seed,
           "tasks": results["tasks_done"], "avg_mpjpe_mm": results["avg_mpjpe_mm"][-1],
           "avg_pa_mpjpe_mm": results["avg_pa_mpjpe_mm"][-1], "mean_forgetting_mm": results["mean_forgetting_mm"],
           "seconds": sum(r["seconds"] for r in records), "run": str(run_dir)}
    pa = results["pa_mpjpe_matrix_mm"]  # forgetting of the articulation alone (PA-MPJPE aligns position and scale)
    if len(pa) > 1:
        row["mean_pa_forgetting_mm"] = float(np.mean(forgetting(pa)))
    ratios = []
    for path in sorted(run_dir.glob("losses-task*.npz")):  # how far the corruption moves the probe's losses
        with np.load(path) as saved:
            if "nis" in saved and saved["nis.corrupted"].any() and (~saved["nis.corrupted"]).any():
                hit = saved["nis.corrupted"].astype(bool)
                ratios.append(float(saved["nis"][hit].mean() / saved["nis"][~hit].mean()))
    if ratios:
        row["nis_loss_ratio"] = float(np.mean(ratios))
    noisy = [r for r in records if r.get("noise")]
    with_nis = [r for r in noisy if "nis" in r]
    row["naming"] = [[r["noise"]["modality"] if r.get("noise") else "none", r["nis"]["named"]]
                     for r in records if "nis" in r]
    if with_nis:
        row["nis_named"] = float(np.mean([r["nis"]["named"] == r["noise"]["modality"] for r in with_nis]))
        for mode in MODES:  # both naming rules, recomputed from the same recorded scores
            row[f"nis_named_{mode}"] = float(np.mean([
                name_noisy_modality(r["nis"]["scores_before"], r["nis"]["scores_after"], mode=mode)
                == r["noise"]["modality"] for r in with_nis]))
        for key in ("clean_precision", "clean_recall", "noisy_recall"):
            row[f"nis_{key}"] = float(np.nanmean([r["nis"]["quality"][key] for r in with_nis]))
        plain = [(r["nis"]["without_gradient_stop"], r) for r in with_nis if "without_gradient_stop" in r["nis"]]
        if plain:
            row["plain_named"] = float(np.mean([p["named"] == r["noise"]["modality"] for p, r in plain]))
            for key in ("clean_precision", "clean_recall", "noisy_recall"):
                row[f"plain_{key}"] = float(np.nanmean([p["quality"][key] for p, _ in plain]))
    divided = [r["division"] for r in noisy if "division" in r]
    if divided:
        for key in ("clean_precision", "clean_recall", "noisy_recall"):
            row[f"division_{key}"] = float(np.nanmean([d["quality"][key] for d in divided]))
    return row


def run_one(config: ContinualConfig, threads: int = 0, force: bool = False) -> dict:
    """Run (or resume, or read back) one continual configuration; its summary row."""
    import torch

    from poise.continual.runner import CHECKPOINT, resume, run_continual

    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(config.out) / config.run_name
    if not force and (run_dir / CHECKPOINT).is_file():
        existing = ContinualConfig.load(run_dir / "config.yaml")
        if existing != config:
            raise PoiseError(f"{run_dir} holds a continual run with other settings than this bench asks for "
                             f"({settings_diff(existing, config)}); use another --out, or --force to run it again")
        results = run_dir / "results.json"
        done = json.loads(results.read_text())["tasks_done"] if results.is_file() else 0
        if done < (config.tasks or len(task_stream.tasks(config.protocol))):  # a finished run is only read back
            resume(run_dir, progress=False)
    else:
        run_continual(config, progress=False, overwrite=True)
    return _row(config, run_dir)


def execute(configs: list, jobs: int = 1, threads: int = 0, force: bool = False, progress: bool = True) -> list:
    """Every config, ``jobs`` at a time; their rows in order."""
    from poise.continual.runner import load_stream

    for protocol in sorted({c.protocol for c in configs}):  # build the caches here, not in N workers at once
        load_stream(next(c for c in configs if c.protocol == protocol), progress=progress)

    def line(config, row) -> str:
        return (f"{config.run_name}: avg-MPJPE {row['avg_mpjpe_mm']:.1f} / avg-PA {row['avg_pa_mpjpe_mm']:.1f} mm, "
                f"forgetting {row['mean_forgetting_mm']:+.1f} mm ({row['seconds']:.0f} s)")

    return run_all(configs, run_one, line, "continual-bench", jobs, threads, force, progress)


# ----------------------------------------------------------------------------------------------------------------
# tables and findings


def _stream(stream) -> dict:
    protocol, noise, ratio = stream
    return dict(protocol=protocol, noise=noise, ratio=ratio)


def _stream_label(stream) -> str:
    protocol, noise, ratio = stream
    return f"{protocol} {noise} {ratio:.0%}"


def _cell(sel, key: str = "avg_mpjpe_mm", pa: str = "avg_pa_mpjpe_mm") -> str:
    return f"{fmt(r[key] for r in sel)} / {fmt(r[pa] for r in sel)}" if sel else "-"


def table2(rows, preset: Preset) -> str:
    lines = ["| method | " + " | ".join(_stream_label(s) for s in preset.streams) + " |",
             "|---" * (1 + len(preset.streams)) + "|"]
    for method in preset.methods:
        cells = [_cell(select(rows, variant=method, **_stream(s))) for s in preset.streams]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Mean forgetting (mm; MPJPE after the last task minus right after learning the task, averaged "
              "over the earlier tasks; positive = forgot):", "",
              "| method | " + " | ".join(_stream_label(s) for s in preset.streams) + " |",
              "|---" * (1 + len(preset.streams)) + "|"]
    for method in preset.methods:
        cells = [fmt(r["mean_forgetting_mm"] for r in select(rows, variant=method, **_stream(s)))
                 for s in preset.streams]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Mean forgetting in PA-MPJPE (mm; the articulation alone: Procrustes alignment removes where the "
              "body stands and its scale, which every task teaches alike):", "",
              "| method | " + " | ".join(_stream_label(s) for s in preset.streams) + " |",
              "|---" * (1 + len(preset.streams)) + "|"]
    for method in preset.methods:
        cells = [fmt(r["mean_pa_forgetting_mm"] for r in select(rows, variant=method, **_stream(s))
                     if "mean_pa_forgetting_mm" in r) for s in preset.streams]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table4(rows, preset: Preset) -> str:
    on = _stream(preset.streams[0])
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
    lines = ["| stream | split | noisy modality named (as run; by absolute drop; by relative drop) | clean precision | "
             "clean recall | corrupted removed |", "|---|---|---|---|---|---|"]
    for stream in preset.streams:
        sel = select(rows, variant="ours", **_stream(stream))
        for prefix, label in (("nis", "NIS (gradient-stop)"), ("plain", "NIS without gradient-stop")):
            part = [r for r in sel if f"{prefix}_named" in r]
            if part:
                named = fmt((r[f"{prefix}_named"] for r in part), 2)
                if prefix == "nis":
                    named += "".join(f"; {fmt((r[f'nis_named_{m}'] for r in part), 2)}" for m in MODES)
                lines.append(f"| {_stream_label(stream)} | {label} | {named} | "
                             + " | ".join(fmt((r[f"{prefix}_{k}"] for r in part), 3)
                                          for k in ("clean_precision", "clean_recall", "noisy_recall")) + " |")
        ratio = [r["nis_loss_ratio"] for r in sel if "nis_loss_ratio" in r]
        if ratio:
            lines.append(f"| {_stream_label(stream)} | mean loss of corrupted / clean samples after the probe: "
                         f"{fmt(ratio, 2)} | | | | |")
        part = [r for r in select(rows, variant="dividemix", **_stream(stream)) if "division_noisy_recall" in r]
        if part:
            lines.append(f"| {_stream_label(stream)} | DivideMix's co-divide (last epoch) | - | "
                         + " | ".join(fmt((r[f"division_{k}"] for r in part), 3)
                                      for k in ("clean_precision", "clean_recall", "noisy_recall")) + " |")
    return "\n".join(lines)


def naming_confusion(rows, modalities=layout.MODALITIES) -> str:
    """Corrupted modality (rows; "none": a task of a clean stream) against the modality NIS named (columns),
    counted over every task of every run with NIS (seeds x tasks x streams)."""
    pairs = [tuple(p) for r in rows for p in r.get("naming", [])]
    if not pairs:
        return ""
    truths = [m for m in (*modalities, "none") if any(t == m for t, _ in pairs)]
    lines = ["| corrupted \\ named | " + " | ".join(modalities) + " | tasks | named right |",
             "|---" * (len(modalities) + 3) + "|"]
    for truth in truths:
        counts = [sum(1 for t, n in pairs if t == truth and n == m) for m in modalities]
        total = sum(counts)
        right = f"{counts[modalities.index(truth)] / total:.0%}" if truth in modalities and total else "-"
        lines.append(f"| {truth} | " + " | ".join(str(c) for c in counts) + f" | {total} | {right} |")
    noisy = [(t, n) for t, n in pairs if t != "none"]
    if noisy:
        chance = 1 / len(modalities)
        lines += ["", f"Named right in {np.mean([t == n for t, n in noisy]):.0%} of {len(noisy)} noisy tasks "
                      f"(chance: {chance:.0%})."]
    return "\n".join(lines)


def _matrices(sel) -> list:
    """The task x task MPJPE matrix of each selected run, from its results.json."""
    return [json.loads((Path(r["run"]) / "results.json").read_text())["mpjpe_matrix_mm"] for r in sel]


def matrix_tables(rows, preset: Preset) -> str:
    """The mean task x task MPJPE matrix of each method on the first stream (row i: after task i)."""
    on = _stream(preset.streams[0])
    out = []
    for method in preset.methods:
        sel = select(rows, variant=method, **on)
        if not sel:
            continue
        mats = _matrices(sel)
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
        on = _stream(stream)
        for method in preset.methods:
            if method == "ours":
                continue
            d = paired(rows, "avg_mpjpe_mm", dict(variant="ours", **on), dict(variant=method, **on))
            if d:
                word = "better" if np.mean(d) < 0 else "worse"
                out.append(f"{_stream_label(stream)}: ours - {method} = {diff_text(d)} avg-MPJPE, {word}"
                           f"{noise_clause(d)}.")
    if preset.ablation:
        on = _stream(preset.streams[0])
        for _, method, ablate in (*ABLATION_ROWS, (None, *GENERIC_FISHER_ROW)):
            label = ablation_label(method, ablate)
            if label in ("ours", "naive"):
                continue
            d = paired(rows, "avg_mpjpe_mm", dict(variant="ours", **on), dict(variant=label, **on))
            if d:
                word = "helps" if np.mean(d) < 0 else "hurts"
                out.append(f"{_stream_label(preset.streams[0])}: ours - {label} = {diff_text(d)} avg-MPJPE: putting "
                           f"back what {label} switches off {word}{noise_clause(d)}.")
    stream = preset.streams[0]
    if stream == ("P1", "raw", 0.2):
        paper = ", ".join(f"{m} {v:.2f}" for m, v in PAPER_TABLE2_P1_RAW20.items())
        out.append(f"For scale, 001 Table 2 on the real MM-Fi (P1, raw 20 %, 7 tasks, avg-MPJPE in mm): {paper}; ours "
                   f"beats fine-tuning there by 27.8 mm.")
    return out


# ----------------------------------------------------------------------------------------------------------------
# plots


def plot_fig5(rows, preset: Preset, out: Path) -> Path:
    """001 Fig. 5 on the first stream: (a) each task's MPJPE after the last task, (b) right after learning it."""
    from poise.plots import plt

    on = _stream(preset.streams[0])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    n = 0
    for k, method in enumerate(preset.methods):
        sel = select(rows, variant=method, **on)
        if not sel:
            continue
        mats = _matrices(sel)
        n = len(mats[0])
        last = np.array([m[-1] for m in mats])
        diag = np.array([[m[i][i] for i in range(n)] for m in mats])
        shift = (k - (len(preset.methods) - 1) / 2) * 0.05  # keep the error bars apart
        for ax, values in zip(axes, (last, diag)):
            ax.errorbar(np.arange(n) + shift, values.mean(0), yerr=values.std(0, ddof=1) if len(values) > 1 else None,
                        marker="o", capsize=3, label=method)
    axes[0].set_title("(a) MPJPE of each task after the last task")
    axes[1].set_title("(b) MPJPE of task i right after task i")
    for ax in axes:
        ax.set_xticks(range(n))
        ax.set_xlabel("task")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test MPJPE (mm)")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"{_stream_label(preset.streams[0])}, mean ± std over seeds", fontsize=10)
    paths: list = []
    save_figure(fig, out / "fig5.png", paths)
    return paths[0]


def plot_fig3(rows, preset: Preset, out: Path) -> Path | None:
    """001 Fig. 3: per-sample losses after the NIS fit, with and without gradient-stop, corrupted samples apart.
    Losses are min-max normalised per task (as the GMM sees them) and pooled over the noisy tasks of one seed."""
    from poise.plots import plt

    sel = [r for r in select(rows, variant="ours", **_stream(preset.streams[0])) if "plain_named" in r]
    if not sel:
        return None
    run = Path(sel[0]["run"])
    pooled = {"nis": ([], []), "nis.without_gradient_stop": ([], [])}
    for path in sorted(run.glob("losses-task*.npz")):
        with np.load(path) as saved:
            for key, (clean, noisy) in pooled.items():
                losses, corrupted = saved[key], saved[f"{key}.corrupted"].astype(bool)
                span = losses.max() - losses.min()
                norm = (losses - losses.min()) / span if span > 0 else np.zeros_like(losses)
                clean.append(norm[~corrupted])
                noisy.append(norm[corrupted])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    bins = np.linspace(0, 1, 41)
    for ax, (key, title) in zip(axes, (("nis.without_gradient_stop", "without gradient-stop"), ("nis", "with gradient-stop"))):
        clean, noisy = (np.concatenate(x) for x in pooled[key])
        ax.hist(clean, bins=bins, alpha=0.6, label=f"clean ({len(clean)})", density=True)
        ax.hist(noisy, bins=bins, alpha=0.6, label=f"corrupted ({len(noisy)})", density=True)
        ax.set_title(title)
        ax.set_xlabel("per-sample loss, min-max normalised per task")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("density")
    fig.suptitle(f"NIS fit losses, {_stream_label(preset.streams[0])}, seed {sel[0]['seed']}, every noisy task",
                 fontsize=10)
    paths: list = []
    save_figure(fig, out / "fig3.png", paths)
    return paths[0]


# ----------------------------------------------------------------------------------------------------------------
# the report


def report(rows, preset: Preset, name: str, out: Path, command: str, seconds: float, data: str) -> str:
    keys = list(rows[0]) + sorted({k for r in rows for k in r} - set(rows[0]))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(rows)
    plots = [p for p in (plot_fig5(rows, preset, out), plot_fig3(rows, preset, out)) if p is not None]
    settings = ", ".join(f"{k}={v}" for k, v in preset.config.items())
    md = [f"# poise continual-bench: preset `{name}`", "", f"Command: `{command}`", "",
          f"Preset: {preset.about}. Data: {data}.", "",
          f"{len(rows)} runs, seeds {list(preset.seeds)}; {settings}. avg-MPJPE / avg-PA-MPJPE (001 Eq. 13: the "
          f"mean over the tasks seen, after the last task) in mm, mean ± std over seeds. Wall time of this "
          f"invocation {seconds / 60:.1f} min (runs already finished are read back); {sum(r['seconds'] for r in rows) / 60:.1f} "
          f"min summed over runs.", "",
          "## Methods x streams (001 Table 2 analogue)", "", table2(rows, preset), ""]
    if preset.ablation:
        md += [f"## Ablation on {_stream_label(preset.streams[0])} (001 Table 4 analogue)", "", table4(rows, preset), ""]
    md += ["## NIS quality against the recorded corruption", "",
           "Per noisy task, averaged over the tasks of a run, then mean ± std over seeds. Named: the share of "
           "tasks whose noisy modality NIS named correctly, as the runs named it and, recomputed from the same "
           "recorded scores, by the largest absolute and the largest relative drop. Clean precision: "
           "the share of kept samples that were not corrupted. Corrupted removed: noisy recall.", "",
           nis_table(rows, preset), "",
           "### Which modality NIS names", "",
           "Every task NIS ran on, over seeds and streams: the corrupted modality (row; `none`: a task of the "
           "clean control stream, where any name is a false alarm) against the one NIS named (column). Scores "
           "before and after the probe are both measured on the new task's assessment frames.", "",
           naming_confusion([r for r in rows if r["variant"] == "ours"]), "",
           f"## Task x task MPJPE on {_stream_label(preset.streams[0])} (row: after task i; column: test frames of "
           f"task j)", "", matrix_tables(rows, preset), "",
           "## Findings", "", *[f"- {line}" for line in findings(rows, preset)], "",
           "## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    text = "\n".join(md)
    (out / "report.md").write_text(text)
    return text


def continual_bench(preset_name: str, data: str, out, jobs: int = 1, threads: int = 0, seeds=None,
                    force: bool = False, progress: bool = True, command: str = "", on_error: str = "raise") -> str:
    """Run a preset (optionally with other ``seeds``) into ``out``; returns the report's Markdown."""
    if preset_name not in PRESETS:
        raise PoiseError(f"unknown continual-bench preset {preset_name!r}: choose one of {', '.join(PRESETS)}")
    preset = PRESETS[preset_name]
    if seeds:
        preset = replace(preset, seeds=tuple(seeds))
    if not Path(data).is_dir():
        raise FileNotFoundError(f"{data}: no such MM-Fi root; write the synthetic one with "
                                f"`poise simulate --preset continual --out {data}`")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = execute(plan(preset, data, out, on_error), jobs=jobs, threads=threads, force=force, progress=progress)
    return report(rows, preset, preset_name, out, command or f"poise continual-bench --preset {preset_name}",
                  time.perf_counter() - start, f"`{data}`, split S2")
