"""``poise report``: one self-contained HTML page (images inlined, no network, opens from a file) per run or bench.

- ``page``: the HTML document (tables, Markdown, inlined images);
- ``skeleton``: 3D skeletons of predicted against ground-truth poses, from several views;
- ``run``: a ``poise train`` run (settings, curves, the collapse, final metrics, skeletons);
- ``continual``: a ``poise continual`` run (avg-MPJPE per task, the task matrix, NIS, the stream's curves);
- ``bench``: a ``poise bench`` / ``continual-bench`` directory (its report.md with the plots, every run).
"""

from __future__ import annotations

from pathlib import Path

from poise.errors import PoiseError


def kind_of(path: Path) -> str:
    """"bench", "continual" or "run", from the files a directory holds."""
    if (path / "report.md").is_file() and (path / "results.csv").is_file():
        return "bench"
    if (path / "tasks.json").is_file() and (path / "results.json").is_file():
        return "continual"
    if (path / "metrics.json").is_file() and (path / "config.yaml").is_file():
        return "run"
    if (path / "config.yaml").is_file():
        raise PoiseError(f"{path} holds a run with no finished epoch (or task) yet: continue it with "
                         f"`poise train --resume {path}` (`poise continual --resume` for a stream), then report it")
    raise PoiseError(f"{path} is not a poise run or bench directory (it has no metrics.json and config.yaml, no "
                     f"tasks.json and results.json, no report.md and results.csv); point poise report at what "
                     f"`poise train`, `poise continual` or `poise bench` wrote")


def write_report(path, poses: bool = True, frames=None, worst: int = 2, run=None) -> Path:
    """``path/report.html`` for whatever ``path`` holds; returns its path (``run``: the live run of a
    ``poise train`` that just finished, so that its model is not rebuilt)."""
    path = Path(path)
    if not path.is_dir():
        raise PoiseError(f"{path}: no such directory; give a run or bench directory (e.g. runs/baseline)")
    kind = kind_of(path)
    if kind == "bench":
        from poise.report.bench import bench_report

        return bench_report(path)
    if kind == "continual":
        from poise.report.continual import continual_report

        return continual_report(path)
    from poise.report.run import run_report

    return run_report(path, poses=poses, frames=frames, worst=worst, run=run)
