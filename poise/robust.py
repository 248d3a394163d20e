"""Missing-sensor robustness of a trained run (``poise robust RUN_DIR``): its test error with each of the 2^M - 1
non-empty modality subsets present, and with modalities missing at random per sample.

The protocol of DMRNet and MMANet (paper 002; ``../shared/research/related_methods.md`` sec. 8): one model,
every non-empty subset at test time, each subset's MPJPE / PA-MPJPE and the mean over subsets; poise adds the
worst subset. Absent modalities are what the model's training defined (``PoseModel.absent`` and, for
``modality_distill``, its restorer), so every Setting-1 method is evaluated on its own terms. Per-sample
missingness: each test sample loses each modality independently with probability ``drop`` (a sample that loses
all of them gets the model's prediction from no sensor), averaged over a fixed set of seeds.

The encoders run once over the test split; each subset is a decode of the cached features. The numbers are the
run's ``objective``'s metrics (MPJPE and PA-MPJPE in mm for poses), the first two shown in the tables.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import torch

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


def scores(objective, pred: torch.Tensor, gt: torch.Tensor) -> dict:
    """{metric: mean over frames} of ``objective``'s metrics."""
    return {name: float(values.mean()) for name, values in objective.sample_metrics(pred, gt).items()}


def sd_key(metric: str, unit: str) -> str:
    """The name of ``metric``'s standard deviation over seeds: ``mpjpe_mm`` -> ``mpjpe_sd_mm``."""
    if unit and metric.endswith("_" + unit):
        return f"{metric[: -len(unit) - 1]}_sd_{unit}"
    return f"{metric}_sd"


def robustness(run, drops=(), seeds: int = 5) -> dict:
    """{"subsets": [{subset, mpjpe_mm, pa_mpjpe_mm, ...}], "mean_mpjpe_mm", "worst", "drops": [...]} on the test
    split (the names are the run's objective's metrics; ``"metrics"`` lists the two the tables show)."""
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
    objective = run.objective
    first, second = (list(objective.metrics) * 2)[:2]
    features, gt = encode_split(model, run.test, run.device)
    modalities = model.modalities
    rows = []
    for subset in subsets(modalities):
        pred = decode_all(model, features, subset)
        rows.append({"subset": subset_label(subset, modalities), "modalities": list(subset),
                     **scores(objective, pred, gt)})
    worst = max(rows, key=lambda r: r[first])
    report = {"run": str(run.dir), "method": run.config.method, "epochs": run.epoch, "frames": len(gt),
              "metrics": [first, second], "subsets": rows,
              f"mean_{first}": float(np.mean([r[first] for r in rows])),
              f"mean_{second}": float(np.mean([r[second] for r in rows])),
              "worst": {"subset": worst["subset"], first: worst[first]}, "drops": []}
    for drop in drops:
        per_seed = []
        for seed in range(seeds):
            pred = decode_all(model, features, random_masks(len(gt), len(modalities), drop, seed).to(gt.device))
            values = scores(objective, pred, gt)
            per_seed.append((values[first], values[second]))
        values = np.array(per_seed)
        report["drops"].append({"drop": drop, "seeds": seeds, first: float(values[:, 0].mean()),
                                sd_key(first, objective.unit): float(values[:, 0].std(ddof=1)) if seeds > 1 else 0.0,
                                second: float(values[:, 1].mean())})
    return report


LABELS = {"mpjpe_mm": "MPJPE (mm)", "pa_mpjpe_mm": "PA-MPJPE (mm)"}


def format_robustness(report: dict) -> str:
    first, second = report.get("metrics", ["mpjpe_mm", "pa_mpjpe_mm"])  # reports written before "metrics": poses
    a, b = LABELS.get(first, first), LABELS.get(second, second)
    f = ".1f" if first in LABELS else ".4g"  # millimetres to 0.1; a target of unknown unit to 4 digits
    lines = [f"Missing-modality robustness of {report['run']} ({report['method']}), {report['frames']} test frames",
             "", f"| modalities present | {a} | {b} |", "|---|---|---|"]
    lines += [f"| {r['subset']} | {r[first]:{f}} | {r[second]:{f}} |" for r in report["subsets"]]
    lines += [f"| **mean over the {len(report['subsets'])} subsets** | {report[f'mean_{first}']:{f}} | "
              f"{report[f'mean_{second}']:{f}} |",
              f"| worst subset: {report['worst']['subset']} | {report['worst'][first]:{f}} | |"]
    if report["drops"]:
        sd = next(k for k in report["drops"][0] if k.endswith("_sd") or "_sd_" in k)  # sd_key's name of it
        lines += ["", f"| each modality lost per sample with probability | {a}, mean +- sd over seeds | {b} |",
                  "|---|---|---|"]
        for d in report["drops"]:
            seeds = f"{d['seeds']} seed" + ("" if d["seeds"] == 1 else "s")
            lines.append(f"| {d['drop']:g} ({seeds}) | {d[first]:{f}} +- {d[sd]:{f}} | {d[second]:{f}} |")
    return "\n".join(lines)


def plot_robustness(report: dict, path) -> None:
    """Bars of the first metric per subset (the full set first), with the mean over subsets as a line."""
    from poise.plots import plt

    first = report.get("metrics", ["mpjpe_mm"])[0]
    rows = report["subsets"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.bar(range(len(rows)), [r[first] for r in rows], color=["tab:green"] + ["tab:blue"] * (len(rows) - 1))
    mean = report[f"mean_{first}"]
    ax.axhline(mean, color="k", ls="--", lw=1,
               label=f"mean over subsets {mean:.0f} mm" if first in LABELS else f"mean over subsets {mean:.4g}")
    ax.set_xticks(range(len(rows)), [r["subset"].replace("wifi-csi", "wifi") for r in rows], rotation=55, ha="right")
    ax.set_ylabel(f"test {LABELS.get(first, first)}")
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
