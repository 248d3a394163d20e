"""Contribution report of a trained run: every profit's Shapley scores on the test split, plus the std of
each modality's unimodal output (the collapse check). Used by ``poise contrib RUN_DIR``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from poise.contrib.profits import PROFITS
from poise.contrib.shapley import modality_contributions
from poise.metrics import M_TO_MM, mpjpe_mm


@torch.no_grad()
def contribution_report(run, batch_size: int = 256) -> dict:
    """{profit: {modality: score}}, unimodal MPJPE and output std (mm), on the whole test split at once."""
    from poise.runtime import encode_split

    model = run.model.eval()
    features, gt = encode_split(model, run.test, run.device, batch_size=batch_size)
    report = {"frames": len(gt), "gt_std_mm": float(gt.std(0).mean() * M_TO_MM), "scores": {}, "unimodal": {}}
    for name in PROFITS:
        report["scores"][name] = modality_contributions(model, features, gt, profit=name).scores
    for m in model.modalities:
        pred = model.decode(features, (m,))
        report["unimodal"][m] = {"mpjpe_mm": float(mpjpe_mm(pred, gt)), "std_mm": float(pred.std(0).mean() * M_TO_MM)}
    return report


def format_report(report: dict) -> str:
    modalities = list(report["unimodal"])
    lines = [f"Shapley contributions on {report['frames']} test frames (ground-truth std {report['gt_std_mm']:.0f} mm)",
             "", "| profit | " + " | ".join(modalities) + " |", "|---|" + "---|" * len(modalities)]
    for name, scores in report["scores"].items():
        lines.append(f"| {name} | " + " | ".join(f"{scores[m]:.3g}" for m in modalities) + " |")
    lines += ["", "| unimodal output (others zeroed) | " + " | ".join(modalities) + " |", "|---|" + "---|" * len(modalities)]
    for key, label in (("mpjpe_mm", "MPJPE (mm)"), ("std_mm", "output std (mm)")):
        lines.append(f"| {label} | " + " | ".join(f"{report['unimodal'][m][key]:.1f}" for m in modalities) + " |")
    return "\n".join(lines)


def plot_report(report: dict, path) -> None:
    from poise.plots import plt

    names = list(report["scores"])
    modalities = list(report["unimodal"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3))
    for ax, name in zip(axes, names):
        ax.bar(modalities, [report["scores"][name][m] for m in modalities], color="tab:blue")
        ax.set_title(f"profit: {name}")
        ax.tick_params(axis="x", rotation=30)
        ax.axhline(0, color="k", lw=0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_report(report: dict, run_dir) -> None:
    Path(run_dir, "contrib.json").write_text(json.dumps(report, indent=1))
    plot_report(report, Path(run_dir, "contrib.png"))
