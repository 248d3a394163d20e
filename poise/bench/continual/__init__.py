"""``poise continual-bench``: paper 001's continual comparison on our data, over seeds.

``presets`` (what runs), ``runs`` (the plan, thresholds, running and reading back), ``tables`` (tables and
findings), ``report`` (report.md, CSVs, figures); the names in ``LAZY`` load their module when first used (the
report writer is ``poise.bench.continual.report.report``: ``report`` here is the module).

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

import time
from dataclasses import replace
from pathlib import Path

from poise.bench import lazy_names
from poise.bench.continual.presets import PRESETS
from poise.errors import PoiseError

# the names this package offers, each from its module, imported when first used (PEP 562)
LAZY = {**dict.fromkeys(("Preset", "ABLATION_ROWS", "GENERIC_FISHER_ROW", "LIKE_FOR_LIKE", "LIKE_FOR_LIKE_LABEL",
                         "PAPER_TABLE2_P1_RAW20"), "presets"),
        **dict.fromkeys(("ablation_label", "variant_of", "plan", "plan_text", "settled_thresholds", "read_thresholds",
                         "naming_thresholds", "nis_tasks", "run_one", "row_of", "stream_keys", "execute", "THRESHOLDS",
                         "THRESHOLD_SDS", "SECONDS_PER_TASK"), "runs"),
        **dict.fromkeys(("table2", "table4", "nis_table", "naming_confusion", "noise_table", "threshold_table",
                         "matrix_tables", "findings"), "tables"),
        **dict.fromkeys(("plot_fig5", "plot_fig3", "write_tables"), "report")}


__getattr__, __dir__ = lazy_names(__name__, LAZY, globals())


def continual_bench(preset_name: str, data: str | None, out, jobs: int = 1, threads: int = 0, seeds=None,
                    force: bool = False, progress: bool = True, command: str = "", on_error: str = "raise",
                    dry_run: bool = False) -> str:
    """Run a preset (optionally with other ``seeds``) on ``data`` (None: the preset's root) into ``out``; returns
    the report's Markdown, or with ``dry_run`` the plan of runs and its time estimate (nothing trained). The clean
    control runs first: their drops set each seed's naming thresholds (``naming_thresholds``), which the other
    runs with NIS then use."""
    from poise.bench.continual.report import report
    from poise.bench.continual.runs import (THRESHOLDS, execute, finished, plan, plan_text, read_thresholds, row_of,
                                            settled_thresholds, under_thresholds)

    if preset_name not in PRESETS:
        raise PoiseError(f"unknown continual-bench preset {preset_name!r}: choose one of {', '.join(PRESETS)}")
    preset = PRESETS[preset_name]
    data = data or preset.data
    if seeds:
        preset = replace(preset, seeds=tuple(seeds))
    if dry_run:  # the noisy runs as they would be asked for: under the thresholds recorded so far
        recorded = {} if force else read_thresholds(Path(out) / THRESHOLDS)
        return plan_text(preset, under_thresholds(plan(preset, data, Path(out), on_error), recorded), force)

    out = Path(out)
    configs = plan(preset, data, out, on_error)
    unfinished = sum(not finished(c) for c in configs)
    if not Path(data).is_dir() and (force or unfinished):
        why = ("--force trains every run again" if force else
               f"{unfinished} of the preset's {len(configs)} runs are not finished (finished runs are read back "
               f"without it)")
        raise FileNotFoundError(f"{data}: no such MM-Fi root, and {why}; write the synthetic one with "
                                f"`poise simulate --preset {preset.simulate} --out {data}`")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    controls = [c for c in configs if c.noise == "none"]
    rows = execute(controls, jobs=jobs, threads=threads, force=force, progress=progress) if controls else []
    thresholds = settled_thresholds(out, rows, preset.seeds, force)
    rows = [row_of(c, Path(r["run"]), thresholds[c.seed]) for c, r in zip(controls, rows)]  # named as it would be
    rest = under_thresholds([c for c in configs if c.noise != "none"], thresholds)
    rows += execute(rest, jobs=jobs, threads=threads, force=force, progress=progress)
    return report(rows, preset, preset_name, out, command or f"poise continual-bench --preset {preset_name}",
                  time.perf_counter() - start, f"`{data}`, split S2", thresholds)
