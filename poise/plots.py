"""Plots of a run: error curves per epoch, modality contribution scores per epoch (like 001 Fig. 4) and the
unimodal-output spreads. ``*_figure`` builds a figure (the HTML report inlines it); ``plot_*`` saves it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def _lines(series: dict, ylabel: str, title: str):
    """One line per entry of ``series`` ({label: (epochs, values)})."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, (epochs, values) in series.items():
        ax.plot(epochs, values, marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def save(fig, path) -> None:
    fig.savefig(path, dpi=120)
    plt.close(fig)


def column(history: list[dict], key: str) -> tuple[list, list]:
    """(epochs, values) of ``key`` over the epochs that recorded it (a run evaluates and assesses every
    ``eval_every``-th epoch and every epoch of its last 20 %; runs before that recorded every epoch)."""
    rows = [h for h in history if key in h]
    return [h["epoch"] for h in rows], [h[key] for h in rows]


def _series(history: list[dict], labels: dict) -> dict:
    """{label: (epochs, values)} for each ``key: label`` of ``labels`` that some epoch recorded."""
    return {label: column(history, key) for key, label in labels.items() if any(key in h for h in history)}


POSE_CURVES = {"train_mpjpe_mm": "train MPJPE", "val_mpjpe_mm": "validation MPJPE (held-out sequences)",
               "test_mpjpe_mm": "test MPJPE", "test_pa_mpjpe_mm": "test PA-MPJPE"}


def curves_figure(history: list[dict], title: str = ""):
    """The training loss and the validation and test metrics per epoch (a pose run's MPJPE and PA-MPJPE; any
    other objective's metrics under their own names)."""
    if any("train_mpjpe_mm" in h for h in history):
        return _lines(_series(history, POSE_CURVES), "error (mm)", title)
    keys = dict.fromkeys(k for h in history for k in h
                         if k.split("_")[0] in ("train", "val", "test") and k != "test_frames")
    return _lines(_series(history, {k: k.replace("_", " ") for k in keys}), "error", title)


def contributions_figure(history: list[dict], title: str = ""):
    keys = dict.fromkeys(k for h in history for k in h if k.startswith("shapley_"))
    return _lines(_series(history, {k: k[len("shapley_"):] for k in keys}), "Shapley score (sum of Pearson r)", title)


def spreads_figure(history: list[dict], title: str = ""):
    """Each modality's unimodal-output spread per epoch against the ground truth's: the weak modalities'
    collapse made visible (a collapsed branch predicts nearly one pose, so its spread sinks toward 0)."""
    keys = dict.fromkeys(k for h in history for k in h if k.startswith("unimodal_std_mm_"))
    labels = {**{k: k[len("unimodal_std_mm_"):] for k in keys}, "gt_std_mm": "ground truth"}
    return _lines(_series(history, labels), "std of the output over frames (mm)", title)


def plot_curves(history: list[dict], path, title: str = "") -> None:
    save(curves_figure(history, title), path)


def plot_contributions(history: list[dict], path, title: str = "") -> None:
    save(contributions_figure(history, title), path)
