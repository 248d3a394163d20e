"""How many epochs does joint training need on the demo data to come within about 1 mm of its plateau?

    python benchmarks/convergence.py [--epochs 8 16 24 32 48] [--fusions concat mlp attention] [--jobs 2]
    python benchmarks/convergence.py --optimizer sgd --lrs 0.01 0.03 0.1 --epochs 16   # choosing SGD's lr

Trains ``baseline`` with the bench's shared settings (``poise.bench.SHARED``) and its schedule scaled to each
length N (lr x0.1 after 60 % of the epochs, as paper 000), for every N, fusion and learning rate, and prints
the last epoch's validation MPJPE (the held-out training sequences: what the choice is made on), its test
MPJPE (reported, not chosen on), how much the validation error still moved over the last 20 % of the epochs,
and, per fusion, the shortest N whose validation MPJPE is within ``--tolerance`` mm of the longest run's.
Runs go to ``--out`` (default runs/convergence) and are read back when re-run.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poise.bench import SHARED, run_all, run_one  # noqa: E402
from poise.bench.presets import LR_DECAY_AT, LR_GAMMA  # noqa: E402
from poise.config import TrainConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/mmfi-demo")
    parser.add_argument("--out", default="runs/convergence")
    parser.add_argument("--epochs", type=int, nargs="+", default=[8, 16, 24, 32, 48])
    parser.add_argument("--fusions", nargs="+", default=["concat", "mlp", "attention"])
    parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    parser.add_argument("--lrs", type=float, nargs="+", default=[None])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tolerance", type=float, default=1.0, help="mm from the longest run's validation MPJPE")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    configs = []
    for fusion, lr, n, seed in itertools.product(args.fusions, args.lrs, args.epochs, args.seeds):
        name = f"{args.optimizer}{'' if lr is None else f'-lr{lr:g}'}-{fusion}-n{n}-seed{seed}"
        configs.append(TrainConfig(**{**SHARED, "data": args.data, "fusion": fusion, "optimizer": args.optimizer,
                                      "lr": lr, "epochs": n, "seed": seed, "lr_step": max(1, round(LR_DECAY_AT * n)),
                                      "lr_gamma": LR_GAMMA, "out": str(Path(args.out) / "runs"), "name": name}))
    rows = run_all(configs, run_one, lambda c, r: f"{c.run_name}: val {r['val_mpjpe_mm']:.1f}, test "
                   f"{r['test_mpjpe_mm']:.1f} mm ({r['seconds']:.0f} s)", "convergence", jobs=args.jobs, threads=1)
    print("| optimiser | lr | fusion | epochs | seed | train MPJPE | val MPJPE | val change, last 20 % | test MPJPE | "
          "s per epoch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c, r in zip(configs, rows):
        print(f"| {c.optimizer} | {c.lr if c.lr is not None else 'default'} | {c.fusion} | {c.epochs} | {c.seed} | "
              f"{r['train_mpjpe_mm']:.1f} | {r['val_mpjpe_mm']:.1f} | {r['val_change_mm']:+.1f} | "
              f"{r['test_mpjpe_mm']:.1f} | {r['seconds'] / c.epochs:.1f} |")
    for fusion, lr in itertools.product(args.fusions, args.lrs):
        mine = [(c, r) for c, r in zip(configs, rows) if c.fusion == fusion and c.lr == lr]
        by_n = {n: sum(r["val_mpjpe_mm"] for c, r in mine if c.epochs == n) / len(args.seeds) for n in args.epochs}
        plateau = by_n[max(by_n)]
        enough = min(n for n, v in by_n.items() if v <= plateau + args.tolerance) if any(
            v <= plateau + args.tolerance for v in by_n.values()) else None
        print(f"{fusion} (lr {lr if lr is not None else 'default'}): validation MPJPE by length "
              + ", ".join(f"{n}: {v:.1f}" for n, v in by_n.items())
              + f"; within {args.tolerance:g} mm of the {max(by_n)}-epoch run from N = {enough}")


if __name__ == "__main__":
    main()
