"""What a continual run measured, from its task x task matrix and its task records: 001 Eq. 13's averages,
forgetting, and the quality of the clean/noisy splits the strategies made (scored here, after the task,
against the recorded corruption that no strategy sees during training)."""

from __future__ import annotations

import numpy as np

from poise.continual.nis import split_quality

LOSSES = {"losses_mm": "", "losses_before_mm": ".before"}  # a split's per-sample losses -> their key suffix


def score_splits(view, record: dict, losses_path) -> None:
    """Every split a strategy left in ``record`` (a dict with the task's ``rows`` and a ``clean`` mask over
    them, at any depth: NIS's probes, DivideMix's last co-divide) gets its ``quality`` against ``view``'s
    corruption (None for a clean task) in place of the arrays; per-sample losses go to ``losses_path`` (an .npz
    with, per split at path ``p``: ``p`` the losses the split was made on, ``p.before`` those before NIS's
    probe where recorded, and ``p.corrupted``)."""
    saved = {}

    def walk(node: dict, path: str) -> None:
        for key, value in list(node.items()):
            if isinstance(value, dict):
                walk(value, f"{path}.{key}" if path else key)
        if "rows" in node and "clean" in node:
            rows, clean = np.asarray(node.pop("rows")), np.asarray(node.pop("clean"), dtype=bool)
            corrupted = np.zeros(len(rows), bool) if view is None else view.is_corrupted(rows)
            node["quality"] = None if view is None else split_quality(clean, corrupted)
            losses = {path + suffix: np.asarray(node.pop(key)) for key, suffix in LOSSES.items() if key in node}
            if losses:
                saved.update(losses)
                saved[f"{path}.corrupted"] = corrupted

    walk(record, "")
    if saved:
        np.savez_compressed(losses_path, **saved)


def forgetting(matrix: list) -> list:
    """Per earlier task j of a lower-triangular task x task matrix (row i: after task i): the value after the
    last task minus the value right after learning j (positive = forgot)."""
    return [matrix[-1][j] - matrix[j][j] for j in range(len(matrix) - 1)]


def summary(matrix: list, records: list) -> dict:
    """avg-MPJPE per task (001 Eq. 13), the matrix, forgetting, and NIS quality."""
    n = len(matrix)
    mpjpe = [[cell[0] for cell in row] for row in matrix]
    pa = [[cell[1] for cell in row] for row in matrix]
    avg = [float(np.mean(mpjpe[i][: i + 1])) for i in range(n)]
    avg_pa = [float(np.mean(pa[i][: i + 1])) for i in range(n)]
    forgot = forgetting(mpjpe) if n else []
    out = {"tasks_done": n, "avg_mpjpe_mm": avg, "avg_pa_mpjpe_mm": avg_pa, "mpjpe_matrix_mm": mpjpe,
           "pa_mpjpe_matrix_mm": pa, "forgetting_mm": forgot,
           "mean_forgetting_mm": float(np.mean(forgot)) if forgot else float("nan")}
    named = [(r["nis"]["named"], r["noise"]["modality"]) for r in records if "nis" in r and r["noise"]]
    if named:
        out["nis_naming_accuracy"] = float(np.mean([a == b for a, b in named]))
        qualities = [r["nis"]["quality"] for r in records if r.get("nis", {}).get("quality")]
        for key in ("clean_precision", "clean_recall", "noisy_precision", "noisy_recall"):
            values = np.array([q[key] for q in qualities], dtype=float)
            # NaN where no task has a defined value (e.g. NIS kept every sample): said, not warned about
            out[f"nis_{key}"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return out


def task_line(done: int, total: int, summary: dict, record: dict) -> str:
    """The progress line after a task."""
    text = (f"task {done}/{total}: avg-MPJPE {summary['avg_mpjpe_mm'][-1]:.1f} mm, avg-PA "
            f"{summary['avg_pa_mpjpe_mm'][-1]:.1f} mm ({record['seconds']:.0f} s)")
    if "nis" in record:
        q = record["nis"]["quality"] or {}
        truth = record["noise"]["modality"] if record["noise"] else "none"
        text += (f"; NIS named {record['nis']['named']} (true {truth}), kept {record['nis']['kept']}/"
                 f"{record['train_frames']}, noisy recall {q.get('noisy_recall', float('nan')):.2f}, clean "
                 f"precision {q.get('clean_precision', float('nan')):.3f}")
    return text
