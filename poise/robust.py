"""Missing-sensor robustness of a trained run (``poise robust RUN_DIR``): its test error with each of the 2^M - 1
non-empty modality subsets present, and with modalities missing at random per sample.

The protocol of DMRNet and MMANet (paper 002; ``../shared/research/related_methods.md`` sec. 8): one model,
every non-empty subset at test time, each subset's MPJPE / PA-MPJPE and the mean over subsets; poise adds the
worst subset. Absent modalities are what the model's training defined (``PoseModel.absent`` and, for
``modality_distill``, its restorer), so every Setting-1 method is evaluated on its own terms. Per-sample
missingness: each test sample loses each modality independently with probability ``drop`` (a sample that loses
all of them gets the model's prediction from no sensor), averaged over a fixed set of seeds.

The encoders run once over the test split; each subset is a decode of the cached features.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import torch

from poise.metrics import mpjpe_mm, pa_mpjpe_mm
from poise.runtime import encode_split
from poise.errors import PoiseError

DECODE_CHUNK = 2048  # frames per decode


def subsets(modalities) -> list[tuple]:
    """Every non-empty subset, the full one first, then by size and modality order."""
    modalities = tuple(modalities)
    return [s for r in range(len(modalities), 0, -1) for s in itertools.combinations(modalities, r)]


def subset_label(subset, modalities) -> str:
    return "all" if len(subset) == len(modalities) else "+".join(subset)


@torch.no_grad()
def decode_all(model, features: dict, present) -> torch.Tensor:
    """``model.decode`` over every frame of ``features`` in chunks (``present``: names, or a (N, M) mask)."""
    n = len(next(iter(features.values())))
    out = []
    for start in range(0, n, DECODE_CHUNK):
        part = slice(start, start + DECODE_CHUNK)
        mask = present[part] if torch.is_tensor(present) else present
        out.append(model.decode({m: f[part] for m, f in features.items()}, mask))
    return torch.cat(out)


def random_masks(n: int, n_modalities: int, drop: float, seed: int) -> torch.Tensor:
    """(n, M) 0/1: each modality absent with probability ``drop``, independently per sample (fixed by ``seed``)."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(n, n_modalities, generator=generator) >= drop).float()


def robustness(run, drops=(), seeds: int = 5) -> dict:
    """{"subsets": [{subset, mpjpe_mm, pa_mpjpe_mm}], "mean_mpjpe_mm", "worst", "drops": [...]} on the test split."""
    from poise.epoch import tested_model

    model = tested_model(run)
    if model is not run.model:
        raise PoiseError(f"poise robust evaluates one pose model; method {run.config.method!r} is evaluated as a "
                         f"combination of networks, whose missing-modality behaviour is not defined")
    for drop in drops:
        if not 0 < drop < 1:
            raise PoiseError(f"--drop {drop}: a probability of losing each modality must be in (0, 1)")
    if seeds < 1:
        raise PoiseError(f"--seeds {seeds}: need at least one seed for the per-sample drops")
    features, gt = encode_split(model, run.test, run.device)
    modalities = model.modalities
    rows = []
    for subset in subsets(modalities):
        pred = decode_all(model, features, subset)
        rows.append({"subset": subset_label(subset, modalities), "modalities": list(subset),
                     "mpjpe_mm": mpjpe_mm(pred, gt), "pa_mpjpe_mm": pa_mpjpe_mm(pred, gt)})
    worst = max(rows, key=lambda r: r["mpjpe_mm"])
    report = {"run": str(run.dir), "method": run.config.method, "epochs": run.epoch, "frames": len(gt), "subsets": rows,
              "mean_mpjpe_mm": float(np.mean([r["mpjpe_mm"] for r in rows])),
              "mean_pa_mpjpe_mm": float(np.mean([r["pa_mpjpe_mm"] for r in rows])),
              "worst": {"subset": worst["subset"], "mpjpe_mm": worst["mpjpe_mm"]}, "drops": []}
    for drop in drops:
        per_seed = []
        for seed in range(seeds):
            pred = decode_all(model, features, random_masks(len(gt), len(modalities), drop, seed).to(gt.device))
            per_seed.append((mpjpe_mm(pred, gt), pa_mpjpe_mm(pred, gt)))
        values = np.array(per_seed)
        report["drops"].append({"drop": drop, "seeds": seeds, "mpjpe_mm": float(values[:, 0].mean()),
                                "mpjpe_sd_mm": float(values[:, 0].std(ddof=1)) if seeds > 1 else 0.0,
                                "pa_mpjpe_mm": float(values[:, 1].mean())})
    return report


def format_robustness(report: dict) -> str:
    lines = [f"Missing-modality robustness of {report['run']} ({report['method']}), {report['frames']} test frames",
             "", "| modalities present | MPJPE (mm) | PA-MPJPE (mm) |", "|---|---|---|"]
    lines += [f"| {r['subset']} | {r['mpjpe_mm']:.1f} | {r['pa_mpjpe_mm']:.1f} |" for r in report["subsets"]]
    lines += [f"| **mean over the {len(report['subsets'])} subsets** | {report['mean_mpjpe_mm']:.1f} | "
              f"{report['mean_pa_mpjpe_mm']:.1f} |",
              f"| worst subset: {report['worst']['subset']} | {report['worst']['mpjpe_mm']:.1f} | |"]
    if report["drops"]:
        lines += ["", "| each modality lost per sample with probability | MPJPE (mm), mean +- sd over seeds | "
                  "PA-MPJPE (mm) |", "|---|---|---|"]
        lines += [f"| {d['drop']:g} ({d['seeds']} seeds) | {d['mpjpe_mm']:.1f} +- {d['mpjpe_sd_mm']:.1f} | "
                  f"{d['pa_mpjpe_mm']:.1f} |" for d in report["drops"]]
    return "\n".join(lines)


def plot_robustness(report: dict, path) -> None:
    """Bars of MPJPE per subset (the full set first), with the mean over subsets as a line."""
    from poise.plots import plt

    rows = report["subsets"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.bar(range(len(rows)), [r["mpjpe_mm"] for r in rows], color=["tab:green"] + ["tab:blue"] * (len(rows) - 1))
    ax.axhline(report["mean_mpjpe_mm"], color="k", ls="--", lw=1, label=f"mean over subsets {report['mean_mpjpe_mm']:.0f} mm")
    ax.set_xticks(range(len(rows)), [r["subset"].replace("wifi-csi", "wifi") for r in rows], rotation=55, ha="right")
    ax.set_ylabel("test MPJPE (mm)")
    ax.set_title(f"{report['method']}: modalities present at test time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_robustness(report: dict, run_dir) -> list[Path]:
    """robust.json, robust.md and robust.png in ``run_dir`` (poise's own outputs, rewritten on each call)."""
    run_dir = Path(run_dir)
    paths = [run_dir / "robust.json", run_dir / "robust.md", run_dir / "robust.png"]
    paths[0].write_text(json.dumps(report, indent=1))
    paths[1].write_text(format_robustness(report) + "\n")
    plot_robustness(report, paths[2])
    return paths
