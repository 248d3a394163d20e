"""Is a weak modality limited by its signal or by how many people it was trained on?

    poise simulate --preset p1 --out data/mmfi-p1                 # 40 subjects x P1's 14 actions
    python benchmarks/subject_scaling.py [--data data/mmfi-p1] [--modalities mmwave wifi-csi]
                                         [--subjects 4 8 16 32] [--seeds 0] [--jobs 2]

Trains each modality alone with the bench's recipe (``poise.bench.SHARED``: Adam, 48 epochs, lr x0.1 after
60 %, every 4th frame, 10 % of the training sequences held out) on ``--subjects`` k of the S1 training
subjects per action (``train_subjects``: nested sets, the test split unchanged), and prints for each k its
training MPJPE, its held-out-sequence (validation) MPJPE, its test MPJPE / root-relative MPJPE, and its
information, 1 - test MPJPE / the mean pose's. A modality limited by its training subjects keeps improving on
held-out people as k grows; one limited by its signal flattens while its training error stays low. Runs go
to ``--out`` (default runs/subject-scaling) and are read back when re-run.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poise.bench import SHARED, execute  # noqa: E402
from poise.bench.presets import CONVERGED_EPOCHS, LR_DECAY_AT, LR_GAMMA  # noqa: E402
from poise.calibration import mean_pose_mpjpe  # noqa: E402
from poise.config import TrainConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/mmfi-p1")
    parser.add_argument("--out", default="runs/subject-scaling")
    parser.add_argument("--modalities", nargs="+", default=["mmwave", "wifi-csi"])
    parser.add_argument("--subjects", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=CONVERGED_EPOCHS)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    configs = [TrainConfig(data=args.data, modalities=[m], train_subjects=k, seed=seed, epochs=args.epochs,
                           lr_step=max(1, round(LR_DECAY_AT * args.epochs)), lr_gamma=LR_GAMMA,
                           out=str(Path(args.out) / "runs"), name=f"{m}-k{k}-seed{seed}", **SHARED)
               for m, k, seed in itertools.product(args.modalities, args.subjects, args.seeds)]
    rows = execute(configs, jobs=args.jobs)  # builds each modality's cache first, then trains (or reads back)
    mean = mean_pose_mpjpe(configs[0])
    print(f"\n{args.data}, P1 / S1: the training frames' mean pose scores {mean['mpjpe_mm']:.1f} mm MPJPE "
          f"({mean['rootrel_mpjpe_mm']:.1f} root-relative) on the {mean['test_frames']} test frames; last epoch "
          f"of {args.epochs}")
    print("| modality | training subjects per action | seed | train MPJPE | validation MPJPE | test MPJPE | "
          "test root-relative MPJPE | information | val change, last 20 % | minutes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c, r in zip(configs, rows):
        print(f"| {c.modalities[0]} | {c.train_subjects} | {c.seed} | {r['train_mpjpe_mm']:.1f} | "
              f"{r['val_mpjpe_mm']:.1f} | {r['test_mpjpe_mm']:.1f} | {r['test_rootrel_mpjpe_mm']:.1f} | "
              f"{1 - r['test_mpjpe_mm'] / mean['mpjpe_mm']:.0%} | {r['val_change_mm']:+.1f} | "
              f"{r['seconds'] / 60:.1f} |")


if __name__ == "__main__":
    main()
