"""The report of one ``poise continual`` run: avg-MPJPE after each task (001 Eq. 13, Fig. 5a), the task x task
matrix, forgetting, the noise each task carried and what NIS named, and each task's learning curve and
contribution scores, from ``results.json`` and ``tasks.json``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poise.errors import PoiseError
from poise.report.page import Page, figure_png
from poise.report.run import read_config, read_json


def _matrix_figure(matrix: list):
    from poise.plots import plt

    n = len(matrix)
    values = np.full((n, n), np.nan)
    for i, row in enumerate(matrix):
        values[i, :len(row)] = row
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.8 + 0.6 * n))
    image = ax.imshow(values, cmap="viridis_r")
    for i in range(n):
        for j in range(i + 1):
            dark = image.norm(values[i, j]) > 0.5  # viridis_r: high errors are dark
            ax.text(j, i, f"{values[i, j]:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    ax.set_xticks(range(n), [f"T{j}" for j in range(n)])
    ax.set_yticks(range(n), [f"after T{i}" for i in range(n)])
    ax.set_xlabel("test frames of task")
    ax.set_title("MPJPE (mm)", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def _progress_figure(results: dict, tasks: list):
    from poise.plots import plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    n = results["tasks_done"]
    axes[0].plot(range(n), results["avg_mpjpe_mm"], marker="o", label="avg-MPJPE")
    axes[0].plot(range(n), results["avg_pa_mpjpe_mm"], marker="o", label="avg-PA-MPJPE")
    axes[0].plot(range(n), [row[i] for i, row in enumerate(results["mpjpe_matrix_mm"])], marker=".", ls=":",
                 label="MPJPE on the task just learned")
    for ax in axes:
        ax.set_xticks(range(n))
    axes[0].set_xlabel("task")
    axes[0].set_ylabel("mm")
    axes[0].set_title("after each task (001 Eq. 13)", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[0].grid(alpha=0.3)
    modalities = list(tasks[0]["scores"])
    for m in modalities:
        axes[1].plot(range(len(tasks)), [t["scores"][m] for t in tasks], marker="o", label=m)
    axes[1].set_xlabel("task")
    axes[1].set_ylabel("Shapley-Pearson score")
    axes[1].set_title("contributions at the end of each task", fontsize=9)
    axes[1].legend(fontsize=7)
    axes[1].grid(alpha=0.3)
    return fig


def _epochs_figure(tasks: list):
    from poise.plots import plt

    fig, ax = plt.subplots(figsize=(10, 3.2))
    start = 0
    for t in tasks:
        epochs = t["epochs"]
        x = np.arange(start, start + len(epochs)) + 1
        ax.plot(x, [e["train_mpjpe_mm"] for e in epochs], color="tab:blue", label="train" if start == 0 else None)
        if "test_mpjpe_mm" in epochs[0]:
            ax.plot(x, [e["test_mpjpe_mm"] for e in epochs], color="tab:orange",
                    label="test (the task's frames)" if start == 0 else None)
        ax.axvline(start + 0.5, color="k", lw=0.5, alpha=0.4)
        ax.text(start + 0.6, 0.97, f"T{t['task']}", fontsize=7, va="top", transform=ax.get_xaxis_transform())
        start += len(epochs)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch of the stream (a line at each new task)")
    ax.set_ylabel("MPJPE (mm)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def continual_report(run_dir) -> Path:
    """Write ``run_dir/report.html``."""
    run_dir = Path(run_dir)
    what = f"{run_dir} is not a `poise continual` run with a finished task"
    results = read_json(run_dir / "results.json", what)
    tasks = read_json(run_dir / "tasks.json", what)
    if not tasks or not results.get("tasks_done"):
        raise PoiseError(f"{run_dir}: no task finished yet; {what}")
    tasks = tasks[:results["tasks_done"]]  # results.json is written last: a stream stopped between the two
    from poise.continual.earlier import upgrade

    config = upgrade(read_config(run_dir, what), f"{run_dir}/config.yaml")  # an earlier poise's keys too
    method = "" if config.get("method", "baseline") == "baseline" else f" + {config['method']}"
    page = Page(f"poise continual run {run_dir.name}: {config.get('recipe', '?')}{method}")
    text = (f"{run_dir}: {results['tasks_done']} tasks of protocol {config.get('protocol', '?')}, noise "
            f"{config.get('noise', '?')} at ratio {config.get('ratio', '?')}. After the last task: avg-MPJPE "
            f"{results['avg_mpjpe_mm'][-1]:.1f} mm, avg-PA-MPJPE {results['avg_pa_mpjpe_mm'][-1]:.1f} mm, mean "
            f"forgetting {results['mean_forgetting_mm']:+.1f} mm (positive = forgot).")
    page.text(text)
    page.heading("Results (results.json)")
    page.table(["metric", "value"], [(k, v) for k, v in results.items() if not isinstance(v, list)])
    page.image(figure_png(_progress_figure(results, tasks)), "avg-MPJPE and contributions per task")
    page.heading("Task x task matrix (row: after learning that task)")
    page.image(figure_png(_matrix_figure(results["mpjpe_matrix_mm"])), "task x task MPJPE matrix")
    page.heading("The tasks")
    rows = []
    for t in tasks:
        noise = t.get("noise") or {}
        nis = t.get("nis") or {}
        quality = nis.get("quality") or {}
        rows.append([t["task"], " ".join(t["actions"]), t["train_frames"],
                     f"{noise.get('kind', '')} {noise.get('modality', 'clean')}".strip(), nis.get("named", ""),
                     quality.get("noisy_recall", ""), quality.get("clean_precision", ""),
                     results["mpjpe_matrix_mm"][t["task"]][t["task"]], t["seconds"]])
    page.table(["task", "actions", "train frames", "noise", "NIS named", "NIS noisy recall", "NIS clean precision",
                "MPJPE after it (mm)", "seconds"], rows)
    if results.get("forgetting_mm"):
        page.table(["task", "forgetting (mm)"], list(enumerate(results["forgetting_mm"])))
    page.heading("Learning curves over the stream")
    page.image(figure_png(_epochs_figure(tasks)), "per-epoch MPJPE over the stream")
    page.heading("Configuration")
    page.table(["key", "value"], list(config.items()))
    return page.save(run_dir / "report.html")
