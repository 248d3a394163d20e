"""The continual bench's report: ``report.md``, ``results.csv`` / ``nis.csv`` and the 001 Fig. 3 and Fig. 5
analogues."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poise.bench.continual.presets import Preset
from poise.bench.continual.runs import THRESHOLD_SDS, THRESHOLDS, stream_keys
from poise.bench.continual.tables import (matrices, stream_label, findings, matrix_tables, naming_confusion,
                                          nis_table, noise_table, table2, table4, threshold_table)
from poise.bench.plots import save_figure
from poise.bench.report import write_csv
from poise.bench.stats import select


def plot_fig5(rows, preset: Preset, out: Path) -> Path:
    """001 Fig. 5 on the first stream: (a) each task's MPJPE after the last task, (b) right after learning it."""
    from poise.plots import plt

    on = stream_keys(preset.streams[0])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    n = 0
    for k, method in enumerate(preset.recipes):
        sel = select(rows, variant=method, **on)
        if not sel:
            continue
        mats = matrices(sel)
        n = len(mats[0])
        last = np.array([m[-1] for m in mats])
        diag = np.array([[m[i][i] for i in range(n)] for m in mats])
        shift = (k - (len(preset.recipes) - 1) / 2) * 0.05  # keep the error bars apart
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
    fig.suptitle(f"{stream_label(preset.streams[0])}, mean ± std over seeds", fontsize=10)
    paths: list = []
    save_figure(fig, out / "fig5.png", paths)
    return paths[0]


def plot_fig3(rows, preset: Preset, out: Path) -> Path | None:
    """001 Fig. 3: per-sample losses after the NIS fit, with and without gradient-stop, corrupted samples apart.
    Losses are min-max normalised per task (as the GMM sees them) and pooled over the noisy tasks of one seed."""
    from poise.plots import plt

    sel = [r for r in select(rows, variant="ours", **stream_keys(preset.streams[0])) if "plain_named" in r]
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
    fig.suptitle(f"NIS fit losses, {stream_label(preset.streams[0])}, seed {sel[0]['seed']}, every noisy task",
                 fontsize=10)
    paths: list = []
    save_figure(fig, out / "fig3.png", paths)
    return paths[0]



def write_tables(rows, out: Path) -> None:
    """results.csv (one row per run) and nis.csv (one row per task NIS ran on; ``gmm_*``: the GMM's split against
    the recorded corruption, made or not; ``trained_*``: the samples the task trained on, all of them where NIS
    named no modality)."""
    write_csv(out / "results.csv", [{k: v for k, v in r.items() if k not in ("nis_tasks", "naming")} for r in rows])
    tasks = [{"run": r["run"], "variant": r["variant"], "seed": r["seed"], "task": t["task"], "noise": t["kind"],
              "corrupted": t["truth"], "named": t["named"], "separated": t["separated"],
              **{f"drop_{m}": d for m, d in t["drops"].items()},
              **{k: v for k, v in t.items() if k.startswith(("loss_ratio", "auc", "source_"))},
              **{f"{split}_{k}": v for split, q in (("gmm", t["gmm_quality"]), ("trained", t["quality"]))
                 for k, v in (q or {}).items() if k in ("clean_precision", "noisy_recall")}}
             for r in rows for t in r.get("nis_tasks", [])]
    if tasks:
        write_csv(out / "nis.csv", tasks)


def report(rows, preset: Preset, name: str, out: Path, command: str, seconds: float, data: str,
           thresholds: dict | None = None) -> str:
    write_tables(rows, out)
    plots = [p for p in (plot_fig5(rows, preset, out), plot_fig3(rows, preset, out)) if p is not None]
    settings = ", ".join(f"{k}={v}" for k, v in preset.config.items())
    ours = [r for r in rows if r["variant"] == "ours"]
    md = [f"# poise continual-bench: preset `{name}`", "", f"Command: `{command}`", "",
          f"Preset: {preset.about}. Data: {data}.", "",
          f"{len(rows)} runs, seeds {list(preset.seeds)}; {settings}. avg-MPJPE / avg-PA-MPJPE (001 Eq. 13: the "
          f"mean over the tasks seen, after the last task) in mm, mean ± std over seeds. Wall time of this "
          f"invocation {seconds / 60:.1f} min (runs already finished are read back); {sum(r['seconds'] for r in rows) / 60:.1f} "
          f"min summed over runs.", "",
          "## Methods x streams (001 Table 2 analogue)", "",
          "`ours` uses 001's adaptive EWC (Eq. 8-9, 11); `ewc`, `coteaching` and `dividemix` use online EWC (Fishers "
          "summed over the tasks); `ours-ewc_online` is ours with the baselines' EWC, the like-for-like "
          "comparison.", "", table2(rows, preset), ""]
    if preset.ablation:
        md += [f"## Ablation on {stream_label(preset.streams[0])} (001 Table 4 analogue)", "", table4(rows, preset), ""]
    md += ["## What NIS sees and does", "",
           "NIS names a modality when its Shapley-Pearson score on the new task's frames (after the probe, as the "
           "learner sees them) is lower than on held-back clean frames of the first task by more than a threshold; "
           "else it answers `none` and trains on the whole task. The thresholds are measured on the clean control "
           "stream (NIS measuring only there: nothing named or split): per modality, the mean + "
           f"{THRESHOLD_SDS:g} sd of its drops on clean tasks under the other seeds, so a seed's false alarms are "
           "not counted on the drops that set its thresholds (the same tasks under other seeds, though: an "
           f"optimistic rate). Each seed's thresholds are kept in `{THRESHOLDS}` once set.", "",
           threshold_table(thresholds or {}), "",
           "### Which modality NIS names", "",
           "Every task NIS ran on, over seeds and streams (ours): the corrupted modality (row; `none`: a task of the "
           "clean control stream) against NIS's answer (column; named on a clean task = a false alarm).", "",
           naming_confusion(ours), "",
           "### The noise, per corrupted modality", "",
           "Per noisy task of ours (every stream), pooled over seeds: the mean per-sample loss of corrupted over clean "
           "samples and the AUC separating them, on the model at the task's start (before) and after NIS's probe "
           "(after, what the split is made on); the GMM split's clean precision and corrupted removed (noisy "
           "recall), and the share of corrupted samples left out of training (0 where NIS answered none and "
           "trained on every sample). Unaligned noise: the median MPJPE (and pelvis-aligned "
           "MPJPE) between the source frame's pose and the true one.", "",
           noise_table(ours), "",
           "### The split against the recorded corruption", "",
           "Per noisy task, averaged over the tasks of a run, then mean ± std over seeds. Named: the share of noisy "
           "tasks whose modality NIS named. The GMM's split on the probe's losses, whether or not NIS used it: "
           "clean precision (the share of kept samples that were not corrupted), clean recall, corrupted removed.", "",
           nis_table(rows, preset), "",
           f"## Task x task MPJPE on {stream_label(preset.streams[0])} (row: after task i; column: test frames of "
           f"task j)", "", matrix_tables(rows, preset), "",
           "## Findings", "", *[f"- {line}" for line in findings(rows, preset)], "",
           "## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    text = "\n".join(md)
    (out / "report.md").write_text(text)
    return text
