"""How hard does CGGM's direction loss pull on the fusion and head, next to the task loss?

    python benchmarks/cggm_direction_weight.py runs/bench-p1/runs/cggm-concat-all-seed{0,1,2}

For each trained CGGM run (its checkpoint and its data), the ratio ||grad lambda L_gm|| / ||grad L_task|| over
the fusion and head parameters (``modality_parameters()["fusion"]``), on batches of training frames, with the
run's last balancing terms B. L_gm is a cosine (``poise.methods.cggm``): how much a given lambda weighs depends
on the task through the head's weights, so the reference's lambda, set on MOSI's sentiment scores, says little
about poses in metres. A ratio above 1 means the direction loss, not the task, leads the head.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poise.methods.cggm import direction_loss, gradient_cosines  # noqa: E402
from poise.train import load_run  # noqa: E402


def ratios(run_dir, batches: int, batch_size: int, seed: int = 0) -> list:
    run = load_run(run_dir)
    model, method = run.model, run.method
    if run.config.method != "cggm":
        raise SystemExit(f"{run_dir}: a {run.config.method} run; give CGGM runs")
    model.train()
    head = model.modality_parameters()["fusion"]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batches):
        batch = run.train.batch(np.sort(rng.choice(run.train_rows, batch_size, replace=False)))
        features = model.encode(batch)
        task = run.objective.loss(model.decode(features).float(), batch["gt"]).mean()
        g_task = torch.autograd.grad(task, head, retain_graph=True, allow_unused=True)
        _, cosines = gradient_cosines(model, method.heads, features, batch["gt"], run.objective)
        g_gm = torch.autograd.grad(method.lam * direction_loss(method.terms, cosines), head, allow_unused=True)
        norm = lambda grads: float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))
        out.append(norm(g_gm) / norm(g_task))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="CGGM run folders (with their checkpoints)")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for run_dir in args.runs:
        r = ratios(run_dir, args.batches, args.batch_size)
        print(f"{run_dir}: ||grad lambda L_gm|| / ||grad MPJPE|| on the fusion and head = {np.mean(r):.2f} "
              f"(batches: {min(r):.2f}-{max(r):.2f})")


if __name__ == "__main__":
    main()
