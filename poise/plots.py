"""Plots of a run: error curves per epoch, modality contribution scores per epoch (like 001 Fig. 4) and the
unimodal-output spreads. ``*_figure`` builds a figure (the HTML report inlines it); ``plot_*`` saves it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def _lines(epochs, series: dict, ylabel: str, title: str):
    """One line per entry of ``series`` ({label: values per epoch})."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, values in series.items():
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


def _column(history: list[dict], key: str) -> list | None:
    """``key`` per epoch, or None unless every epoch has it."""
    return [h[key] for h in history] if all(key in h for h in history) else None


def curves_figure(history: list[dict], title: str = ""):
    series = {label: _column(history, key) for key, label in (
        ("train_mpjpe_mm", "train MPJPE"), ("val_mpjpe_mm", "validation MPJPE (held-out sequences)"),
        ("test_mpjpe_mm", "test MPJPE"), ("test_pa_mpjpe_mm", "test PA-MPJPE"))}
    return _lines([h["epoch"] for h in history], {k: v for k, v in series.items() if v is not None}, "error (mm)",
                  title)


def contributions_figure(contributions: list[dict], title: str = ""):
    series = {m: [c[m] for c in contributions] for m in contributions[0]}
    return _lines(range(1, len(contributions) + 1), series, "Shapley score (sum of Pearson r)", title)


def spreads_figure(history: list[dict], title: str = ""):
    """Each modality's unimodal-output spread per epoch against the ground truth's: the weak modalities'
    collapse made visible (a collapsed branch predicts nearly one pose, so its spread sinks toward 0)."""
    keys = [k for k in history[0] if k.startswith("unimodal_std_mm_")] + ["gt_std_mm"]
    series = {("ground truth" if k == "gt_std_mm" else k[len("unimodal_std_mm_"):]): _column(history, k) for k in keys}
    return _lines([h["epoch"] for h in history], {k: v for k, v in series.items() if v is not None},
                  "std of the output over frames (mm)", title)


def plot_curves(history: list[dict], path, title: str = "") -> None:
    save(curves_figure(history, title), path)


def plot_contributions(contributions: list[dict], path, title: str = "") -> None:
    save(contributions_figure(contributions, title), path)
