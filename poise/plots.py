"""Plots of a run: error curves per epoch, and modality contribution scores per epoch (like 001 Fig. 4)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def _lines(epochs, series: dict, ylabel: str, path, title: str) -> None:
    """One line per entry of ``series`` ({label: values per epoch}), saved as a PNG."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, values in series.items():
        ax.plot(epochs, values, marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(history: list[dict], path, title: str = "") -> None:
    series = {label: [h[key] for h in history] for key, label in (
        ("train_mpjpe_mm", "train MPJPE"), ("val_mpjpe_mm", "validation MPJPE (held-out sequences)"),
        ("test_mpjpe_mm", "test MPJPE"), ("test_pa_mpjpe_mm", "test PA-MPJPE")) if key in history[0]}
    _lines([h["epoch"] for h in history], series, "error (mm)", path, title)


def plot_contributions(contributions: list[dict], path, title: str = "") -> None:
    series = {m: [c[m] for c in contributions] for m in contributions[0]}
    _lines(range(1, len(contributions) + 1), series, "Shapley score (sum of Pearson r)", path, title)


def plot_spreads(history: list[dict], path, title: str = "") -> None:
    """Each modality's unimodal-output spread per epoch against the ground truth's: the weak modalities'
    collapse made visible (a collapsed branch predicts nearly one pose, so its spread sinks toward 0)."""
    modalities = [k[len("unimodal_std_mm_"):] for k in history[0] if k.startswith("unimodal_std_mm_")]
    series = {m: [h[f"unimodal_std_mm_{m}"] for h in history] for m in modalities}
    series["ground truth"] = [h["gt_std_mm"] for h in history]
    _lines([h["epoch"] for h in history], series, "std of the output over frames (mm)", path, title)
