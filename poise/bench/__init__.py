"""``poise bench``: the papers' comparison on our data, over seeds, as Markdown tables and plots.

- ``presets``: what a bench trains (variants of each method with their optimiser and pairing, fusions,
  subsets, seeds, the converged length, ablations);
- ``runs``: the plan of runs, and training / resuming / reading them back, several at a time;
- ``report``: the tables and findings of ``OUT/report.md``; ``mechanisms``: its tables of what each
  method acts on; ``plots``: its plots;
- ``stats``: means over seeds, paired differences and their 95 % t-intervals.

``poise.bench.plan``, ``poise.bench.paired`` and the other names in ``LAZY`` load their module when first
used, so that importing this package stays light (``poise --help`` lists the presets without loading torch);
the report writer is ``poise.bench.report.report``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import importlib

from poise.bench.presets import PRESETS
from poise.errors import PoiseError

# the names this package offers, each from its module, imported when first used (PEP 562)
LAZY = {**dict.fromkeys(("ALL", "SHARED", "Ablation", "Preset", "Variant"), "presets"),
        **dict.fromkeys(("findings", "write_csv"), "report"), "save_figure": "plots",
        **dict.fromkeys(("execute", "plan", "plan_text", "run_all", "run_one", "saved_diff", "settings_diff",
                         "subset_name"), "runs"),
        **dict.fromkeys(("diff_text", "fmt", "mean_sd", "noise_clause", "paired", "select"), "stats")}


def lazy_names(package: str, lazy: dict, own: dict):
    """A package's module-level ``__getattr__`` and ``__dir__`` (PEP 562) offering each name in ``lazy`` from
    its submodule, imported when first used; ``own``: the package's globals."""
    def getattr_(name: str):
        if name in lazy:
            return getattr(importlib.import_module(f"{package}.{lazy[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return getattr_, lambda: sorted({*own, *lazy})


__getattr__, __dir__ = lazy_names(__name__, LAZY, globals())


def bench(preset_name: str, data: str, out, jobs: int = 1, threads: int = 0, seeds=None, force: bool = False,
          progress: bool = True, command: str = "", protocol: str = "P1", split: str = "S1",
          dry_run: bool = False, on_error: str = "raise", variants=None, epoch_frames: int = 0) -> str:
    """Run a preset (optionally with other ``seeds``, or only some ``variants`` and their pairs; ``epoch_frames``:
    each epoch on a fresh draw of that many frames, for a P1-scale root) into ``out``; returns the report's
    Markdown, or with ``dry_run`` the plan of runs (nothing trained)."""
    from poise.bench.report import report
    from poise.bench.runs import execute, plan, plan_text

    if preset_name not in PRESETS:
        raise PoiseError(f"unknown bench preset {preset_name!r}: choose one of {', '.join(PRESETS)}")
    preset = PRESETS[preset_name]
    if seeds:
        preset = replace(preset, seeds=tuple(seeds))
    if variants:
        preset = preset.only(variants)
    if epoch_frames:
        preset = replace(preset, train={**preset.train, "epoch_frames": epoch_frames})
    out = Path(out)
    configs = plan(preset, data, out, protocol, split, on_error)
    if dry_run:
        return plan_text(preset, configs, force)
    if not Path(data).is_dir():
        raise FileNotFoundError(f"{data}: no such MM-Fi root; write the synthetic one with "
                                f"`poise simulate --preset demo --out {data}`")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = execute(configs, jobs=jobs, threads=threads, force=force, progress=progress, robust=preset.robust)
    return report(rows, preset, preset_name, out, command or f"poise bench --preset {preset_name}",
                  time.perf_counter() - start, f"`{data}`, protocol {protocol}, split {split}")
