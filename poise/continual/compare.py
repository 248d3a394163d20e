"""``poise continual-bench``: paper 001's continual comparison on our data, over seeds.

- Table 2 analogue: avg-MPJPE / avg-PA-MPJPE after the last task (001 Eq. 13) of every method on every stream
  (protocol x noise kind x ratio), mean +- std over seeds, and the mean forgetting.
- Table 4 analogue: the parts of ours (adaptive EWC, re-learning, NIS) on and off, on the preset's first stream,
  with 001's six rows (no part = naive fine-tuning; "no a-EWC" = no EWC at all) and one more: ours with the
  generic instead of the adaptive Fisher.
- Like-for-like EWC: ours with 001's adaptive EWC and ours with the baselines' online EWC, side by side.
- What NIS sees and does, measured against the recorded corrupted samples: its naming thresholds (set on a
  clean control stream, which runs first: each seed's from the other seeds' clean tasks), the naming confusion
  matrix with a "none" answer and the false-alarm rate, per corrupted modality and noise kind the loss ratio
  and AUC of corrupted against clean samples before and after the probe, the split's precision and recall,
  and for unaligned noise how far the source poses are from the true ones; with and without gradient-stop
  (001 Fig. 3) on the first stream; DivideMix's own split for comparison.
- The task x task MPJPE matrices and 001 Fig. 5: (a) every task's MPJPE after the last task, (b) each task's
  MPJPE right after learning it; Fig. 3: histograms of the per-sample losses after the NIS fit with and
  without gradient-stop, corrupted samples apart.

Every run is an ordinary ``poise continual`` run under ``OUT/runs/NAME``; a finished one is read back (from its
small files alone: config.yaml, tasks.json, results.json, losses-task*.npz) and an interrupted one resumed from
its last finished task, so re-running the same command picks up where it stopped.
``--jobs N`` runs N at once in separate processes. Paired differences (same seed) are tested against seed noise
with the 95 % t-interval of ``poise.bench.noise_clause``.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from poise.bench.report import save_figure, write_csv
from poise.bench.runs import run_all, settings_diff
from poise.bench.stats import diff_text, fmt, noise_clause, paired, select
from poise.continual import tasks as task_stream
from poise.continual.config import SWITCH_DEFAULTS, ContinualConfig, tuned, upgrade
from poise.continual.nis import NONE, name_from_drops
from poise.continual.presets import PRESETS, Preset  # noqa: F401  (part of this module's interface)
from poise.continual.results import forgetting
from poise.data import layout
from poise.errors import PoiseError
from poise.runtime import write_atomic

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


LIKE_FOR_LIKE = ("ours", (), {"ewc": "online"})  # ours with the baselines' EWC (online, Fishers summed over tasks)
LIKE_FOR_LIKE_LABEL = "ours-ewc_online"  # its row (``variant_of``)
THRESHOLD_SDS = 3.0  # a naming threshold: the clean drops' mean + 3 sd (under other seeds)


def ablation_label(recipe: str, ablate) -> str:
    return recipe + "".join(f"-no_{a}" for a in ablate)


def variant_of(config: ContinualConfig) -> str:
    """A run's row label: its recipe, the parts ablated, and any switch set by hand (``ours-ewc_online``)."""
    return ablation_label(config.recipe, config.ablate) + "".join(
        f"-{k}_{v}".lower() for k, v in config.custom_switches().items())


def plan(preset: Preset, data: str, out: Path, on_error: str = "raise") -> list:
    """The ContinualConfigs of a preset, seed-major, without duplicates (naming thresholds not yet set)."""
    first = preset.streams[0]
    cells = [(stream, method, (), {}) for stream in preset.streams for method in preset.recipes]
    if preset.like_for_like:
        cells += [(stream, *LIKE_FOR_LIKE) for stream in preset.streams]
    if preset.ablation:
        cells += [(first, method, tuple(ablate), {}) for _, method, ablate in ABLATION_ROWS]
        cells.append((first, *GENERIC_FISHER_ROW, {}))
    if preset.clean_control:  # NIS measures only: the drops of a stream trained as a run that named nothing
        cells.append(((first[0], "none", first[2]), "ours", (), {"nis": {"separate": "never"}}))
    cells += [(stream, "ours", (), {}) for stream in preset.diagnostics]
    shared = {k: v for k, v in preset.config.items() if k not in SWITCH_DEFAULTS}
    configs, seen = [], set()
    for seed in preset.seeds:
        for stream, recipe, ablate, switches in cells:
            fig3 = stream == first and recipe == "ours" and not ablate and not switches
            values = dict(_stream(stream), recipe=recipe, ablate=list(ablate), data=data, seed=seed,
                          out=str(out / "runs"), on_error=on_error, **shared, **switches)
            config = ContinualConfig(**tuned(values, {k: v for k, v in preset.config.items() if k in SWITCH_DEFAULTS},
                                             {"nis": {"compare_gradient_stop": True}} if fig3 else {}))
            if config.run_name not in seen:
                seen.add(config.run_name)
                configs.append(config)
    return configs


THRESHOLDS = "thresholds.json"  # OUT/thresholds.json: each seed's naming thresholds, set once


def settled_thresholds(out: Path, control_rows, seeds) -> dict:
    """Each seed's naming thresholds: as ``OUT/thresholds.json`` recorded them when the seed's runs were first
    planned (so that adding seeds later leaves finished runs valid), else from ``naming_thresholds``; the file
    is rewritten with any new seed."""
    path = out / THRESHOLDS
    saved = {int(k): v for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}
    fresh = naming_thresholds(control_rows, seeds)
    out_of = {seed: saved.get(seed, fresh[seed]) for seed in seeds}
    if any(seed not in saved for seed in seeds):
        write_atomic(path, json.dumps({**saved, **out_of}, indent=1, sort_keys=True))
    return out_of


def naming_thresholds(control_rows, seeds) -> dict:
    """{seed: {modality: threshold}}: for each seed, the drops NIS measured on the clean control stream under
    the *other* seeds, mean + ``THRESHOLD_SDS`` standard deviations per modality. A seed's own clean tasks stay
    out of its thresholds, so its false alarms are not counted on the drops that set them; the other seeds
    learn the same tasks, though (other initialisations, noise draws and held-back sequences), so the rate is
    still on the optimistic side. {} where fewer than two clean drops of a modality are there to measure."""
    out = {}
    for seed in seeds:
        drops: dict = {}
        for row in control_rows:
            if row["seed"] != seed:
                for task in row.get("nis_tasks", []):
                    for m, d in task["drops"].items():
                        drops.setdefault(m, []).append(d)
        out[seed] = {m: float(np.mean(v) + THRESHOLD_SDS * np.std(v, ddof=1)) for m, v in drops.items() if len(v) > 1}
    return out


def _auc(losses, corrupted) -> float:
    """Area under the ROC curve of ``losses`` separating corrupted from clean samples (0.5: no separation)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(corrupted, losses))


def nis_tasks(records, run_dir: Path, threshold: dict | None = None) -> list:
    """Per task NIS ran on: the truth (corrupted modality, or "none"), the modality named (as the run named it,
    or from its recorded drops under ``threshold``), the drops, whether the task was split and how well, and how
    far the corruption moved the per-sample losses before and after the probe (mean ratio corrupted / clean,
    AUC)."""
    out = []
    for r in records:
        if "nis" not in r:
            continue
        nis, noise = r["nis"], r.get("noise") or {}
        task = {"task": r["task"], "truth": noise.get("modality", NONE), "kind": noise.get("kind", "none"),
                "named": nis["named"] if threshold is None else name_from_drops(nis["drops"], threshold),
                "drops": nis["drops"], "separated": nis["separated"], "quality": nis.get("quality"),
                "gmm_quality": nis["gmm"].get("quality"),
                **{k: v for k, v in noise.items() if k.startswith("source_")}}
        path = run_dir / f"losses-task{r['task']}.npz"
        if noise and path.is_file():
            with np.load(path) as saved:
                hit = saved["nis.corrupted"].astype(bool)
                if hit.any() and (~hit).any():
                    for key, when in (("nis.before", "before"), ("nis", "after")):
                        task[f"loss_ratio_{when}"] = float(saved[key][hit].mean() / saved[key][~hit].mean())
                        task[f"auc_{when}"] = _auc(saved[key], hit)
        out.append(task)
    return out


def _row(config: ContinualConfig, run_dir: Path, threshold: dict | None = None) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    records = json.loads((run_dir / "tasks.json").read_text())
    row = {**_stream((config.protocol, config.noise, config.ratio, config.noisy_modality)), "recipe": config.recipe,
           "variant": variant_of(config), "seed": config.seed,
           "tasks": results["tasks_done"], "avg_mpjpe_mm": results["avg_mpjpe_mm"][-1],
           "avg_pa_mpjpe_mm": results["avg_pa_mpjpe_mm"][-1], "mean_forgetting_mm": results["mean_forgetting_mm"],
           "seconds": sum(r["seconds"] for r in records), "run": str(run_dir)}
    pa = results["pa_mpjpe_matrix_mm"]  # forgetting of the articulation alone (PA-MPJPE aligns position and scale)
    if len(pa) > 1:
        row["mean_pa_forgetting_mm"] = float(np.mean(forgetting(pa)))
    tasks = nis_tasks(records, run_dir, threshold)
    if tasks:
        row["nis_tasks"] = tasks
        row["naming"] = [[t["truth"], t["named"]] for t in tasks]
        noisy = [t for t in tasks if t["truth"] != NONE]
        if noisy:
            row["nis_named"] = float(np.mean([t["named"] == t["truth"] for t in noisy]))
            for key in ("clean_precision", "clean_recall", "noisy_recall"):  # the GMM's split, made or not
                row[f"nis_{key}"] = float(np.nanmean([t["gmm_quality"][key] for t in noisy]))
            row["nis_left_out"] = float(np.nanmean([t["quality"]["noisy_recall"] for t in noisy]))  # trained on
            ratios = [t["loss_ratio_after"] for t in noisy if "loss_ratio_after" in t]
            if ratios:
                row["nis_loss_ratio"] = float(np.mean(ratios))
        plain = [(r["nis"]["without_gradient_stop"], r) for r in records
                 if r.get("noise") and "without_gradient_stop" in r.get("nis", {})]
        if plain:
            row["plain_named"] = float(np.mean([p["named"] == r["noise"]["modality"] for p, r in plain]))
            for key in ("clean_precision", "clean_recall", "noisy_recall"):
                row[f"plain_{key}"] = float(np.nanmean([p["quality"][key] for p, _ in plain]))
    divided = [r["division"] for r in records if r.get("noise") and "division" in r]
    if divided:
        for key in ("clean_precision", "clean_recall", "noisy_recall"):
            row[f"division_{key}"] = float(np.nanmean([d["quality"][key] for d in divided]))
    return row


def run_one(config: ContinualConfig, threads: int = 0, force: bool = False) -> dict:
    """Run (or resume, or read back) one continual configuration; its summary row."""
    import torch

    from poise.checkpoint import CHECKPOINT
    from poise.continual.runner import resume, run_continual

    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(config.out) / config.run_name
    results = run_dir / "results.json"
    done = json.loads(results.read_text())["tasks_done"] if results.is_file() else 0
    finished = done >= (config.tasks or len(task_stream.tasks(config.protocol)))
    # a finished run is read back from its small files alone (carried between machines without its checkpoint)
    if not force and (run_dir / "config.yaml").is_file() and (finished or (run_dir / CHECKPOINT).is_file()):
        written = set(upgrade(yaml.safe_load((run_dir / "config.yaml").read_text()) or {}))
        missing = sorted(set(config.to_dict()) - written)
        if missing:  # a default filled in for a key the run never knew would pass it off as this bench's
            raise PoiseError(f"{run_dir} holds a continual run from an older poise (its config.yaml has no "
                             f"{', '.join(missing)}); use another --out, or --force to run it again")
        existing = ContinualConfig.load(run_dir / "config.yaml")
        if existing != config:
            raise PoiseError(f"{run_dir} holds a continual run with other settings than this bench asks for "
                             f"({settings_diff(existing, config)}); use another --out, or --force to run it again")
        if not finished:
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
    """A preset's stream, (protocol, noise, ratio[, noisy modality]), as the ContinualConfig keys (and row keys)."""
    protocol, noise, ratio, *modality = stream
    return dict(protocol=protocol, noise=noise, ratio=ratio, noisy_modality=modality[0] if modality else "")


def _stream_label(stream) -> str:
    s = _stream(stream)
    return f"{s['protocol']} {s['noise']} {s['ratio']:.0%}" + (f" {s['noisy_modality']}" if s["noisy_modality"] else "")


def _cell(sel, key: str = "avg_mpjpe_mm", pa: str = "avg_pa_mpjpe_mm") -> str:
    return f"{fmt(r[key] for r in sel)} / {fmt(r[pa] for r in sel)}" if sel else "-"


def table_methods(preset: Preset) -> tuple:
    """The rows of the Table 2 analogue: the preset's methods, then ours with the baselines' EWC."""
    return (*preset.recipes, *((LIKE_FOR_LIKE_LABEL,) if preset.like_for_like else ()))


def table2(rows, preset: Preset) -> str:
    lines = ["| method | " + " | ".join(_stream_label(s) for s in preset.streams) + " |",
             "|---" * (1 + len(preset.streams)) + "|"]
    for method in table_methods(preset):
        cells = [_cell(select(rows, variant=method, **_stream(s))) for s in preset.streams]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Mean forgetting (mm; MPJPE after the last task minus right after learning the task, averaged "
              "over the earlier tasks; positive = forgot):", "",
              "| method | " + " | ".join(_stream_label(s) for s in preset.streams) + " |",
              "|---" * (1 + len(preset.streams)) + "|"]
    for method in table_methods(preset):
        cells = [fmt(r["mean_forgetting_mm"] for r in select(rows, variant=method, **_stream(s)))
                 for s in preset.streams]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Mean forgetting in PA-MPJPE (mm; the articulation alone: Procrustes alignment removes where the "
              "body stands and its scale, which every task teaches alike):", "",
              "| method | " + " | ".join(_stream_label(s) for s in preset.streams) + " |",
              "|---" * (1 + len(preset.streams)) + "|"]
    for method in table_methods(preset):
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
    lines = ["| stream | split | noisy modality named | clean precision | clean recall | corrupted removed |",
             "|---|---|---|---|---|---|"]
    for stream in (*preset.streams, *preset.diagnostics):
        sel = select(rows, variant="ours", **_stream(stream))
        for prefix, label in (("nis", "NIS's GMM split (gradient-stop)"), ("plain", "GMM split without gradient-stop")):
            part = [r for r in sel if f"{prefix}_named" in r]
            if part:
                lines.append(f"| {_stream_label(stream)} | {label} | {fmt((r[f'{prefix}_named'] for r in part), 2)} | "
                             + " | ".join(fmt((r[f"{prefix}_{k}"] for r in part), 3)
                                          for k in ("clean_precision", "clean_recall", "noisy_recall")) + " |")
        part = [r for r in select(rows, variant="dividemix", **_stream(stream)) if "division_noisy_recall" in r]
        if part:
            lines.append(f"| {_stream_label(stream)} | DivideMix's co-divide (last epoch) | - | "
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
    if not any(thresholds.values()):
        return "No thresholds: the clean control stream ran under fewer than 2 seeds; NIS names any drop."
    lines = ["| seed | " + " | ".join(modalities) + " |", "|---" * (len(modalities) + 1) + "|"]
    for seed, t in thresholds.items():
        lines.append(f"| {seed} | " + " | ".join(f"{t[m]:.3f}" if m in t else "-" for m in modalities) + " |")
    return "\n".join(lines)


def _matrices(sel) -> list:
    """The task x task MPJPE matrix of each selected run, from its results.json."""
    return [json.loads((Path(r["run"]) / "results.json").read_text())["mpjpe_matrix_mm"] for r in sel]


def matrix_tables(rows, preset: Preset) -> str:
    """The mean task x task MPJPE matrix of each method on the first stream (row i: after task i)."""
    on = _stream(preset.streams[0])
    out = []
    for method in preset.recipes:
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
        for ours in ("ours", *((LIKE_FOR_LIKE_LABEL,) if preset.like_for_like else ())):
            for method in preset.recipes:
                if method == "ours":
                    continue
                d = paired(rows, "avg_mpjpe_mm", dict(variant=ours, **on), dict(variant=method, **on))
                if d:
                    word = "better" if np.mean(d) < 0 else "worse"
                    out.append(f"{_stream_label(stream)}: {ours} - {method} = {diff_text(d)} avg-MPJPE, {word}"
                               f"{noise_clause(d)}.")
        d = paired(rows, "avg_mpjpe_mm", dict(variant="ours", **on), dict(variant=LIKE_FOR_LIKE_LABEL, **on))
        if d:
            out.append(f"{_stream_label(stream)}: ours with a-EWC - ours with online EWC = {diff_text(d)} avg-MPJPE"
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
    for k, method in enumerate(preset.recipes):
        sel = select(rows, variant=method, **on)
        if not sel:
            continue
        mats = _matrices(sel)
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


def write_tables(rows, out: Path) -> None:
    """results.csv (one row per run) and nis.csv (one row per task NIS ran on)."""
    write_csv(out / "results.csv", [{k: v for k, v in r.items() if k not in ("nis_tasks", "naming")} for r in rows])
    tasks = [{"run": r["run"], "variant": r["variant"], "seed": r["seed"], "task": t["task"], "noise": t["kind"],
              "corrupted": t["truth"], "named": t["named"], "separated": t["separated"],
              **{f"drop_{m}": d for m, d in t["drops"].items()},
              **{k: v for k, v in t.items() if k.startswith(("loss_ratio", "auc", "source_"))},
              **{k: v for k, v in (t["quality"] or {}).items() if k in ("clean_precision", "noisy_recall")}}
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
        md += [f"## Ablation on {_stream_label(preset.streams[0])} (001 Table 4 analogue)", "", table4(rows, preset), ""]
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
           f"## Task x task MPJPE on {_stream_label(preset.streams[0])} (row: after task i; column: test frames of "
           f"task j)", "", matrix_tables(rows, preset), "",
           "## Findings", "", *[f"- {line}" for line in findings(rows, preset)], "",
           "## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    text = "\n".join(md)
    (out / "report.md").write_text(text)
    return text


def continual_bench(preset_name: str, data: str, out, jobs: int = 1, threads: int = 0, seeds=None,
                    force: bool = False, progress: bool = True, command: str = "", on_error: str = "raise") -> str:
    """Run a preset (optionally with other ``seeds``) into ``out``; returns the report's Markdown. The clean
    control runs first: their drops set each seed's naming thresholds (``naming_thresholds``), which the other
    runs with NIS then use."""
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
    configs = plan(preset, data, out, on_error)
    controls = [c for c in configs if c.noise == "none"]
    rows = execute(controls, jobs=jobs, threads=threads, force=force, progress=progress) if controls else []
    thresholds = settled_thresholds(out, rows, preset.seeds)
    rows = [_row(c, Path(r["run"]), thresholds[c.seed]) for c, r in zip(controls, rows)]  # named as it would be
    rest = [replace(c, nis={**c.nis, "threshold": thresholds[c.seed]}) if c.nis else c
            for c in configs if c.noise != "none"]
    rows += execute(rest, jobs=jobs, threads=threads, force=force, progress=progress)
    return report(rows, preset, preset_name, out, command or f"poise continual-bench --preset {preset_name}",
                  time.perf_counter() - start, f"`{data}`, split S2", thresholds)
