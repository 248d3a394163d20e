"""Plots of a run: error curves per epoch, and modality contribution scores per epoch (like 001 Fig. 4)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(history: list[dict], path, title: str = "") -> None:
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("train_mpjpe_mm", "train MPJPE"), ("test_mpjpe_mm", "test MPJPE"),
                       ("test_pa_mpjpe_mm", "test PA-MPJPE")):
        ax.plot(epochs, [h[key] for h in history], marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (mm)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_contributions(contributions: list[dict], path, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = range(1, len(contributions) + 1)
    for m in contributions[0]:
        ax.plot(epochs, [c[m] for c in contributions], marker="o", ms=3, label=m)
    ax.set_xlabel("epoch")
    ax.set_ylabel("Shapley score (sum of Pearson r)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
