"""Parameters and forward + backward time of each encoder, lite and paper-size, measured in one run.

    python benchmarks/encoder_cost.py [--dim 128] [--batch-size 64] [--lidar-points 256] [--repeats 5] [--lite-only]

Prints one row per modality: parameters and the median forward + backward time of one batch on one torch
thread, for the lite encoder (the CPU default) and the paper-size one, and their ratio. Random inputs shaped
like MM-Fi's are enough: the cost depends only on shapes. The table in docs/training.md comes from here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from poise.models.lite import encode, lite_encoder  # noqa: E402
from poise.models.paper import paper_encoder  # noqa: E402
from shapley_overhead import fake_batch, timed  # noqa: E402

MODALITIES = ("rgb", "lidar", "mmwave", "wifi-csi")


def cost(encoder: torch.nn.Module, modality: str, batch: dict, repeats: int) -> tuple[int, float]:
    """(parameters, median seconds of one forward + backward)."""
    def step():
        encoder.zero_grad()
        encode(encoder, modality, batch).sum().backward()
    return sum(p.numel() for p in encoder.parameters()), timed(step, repeats)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lidar-points", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lite-only", action="store_true", help="skip the paper-size encoders (slow on a CPU)")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(0)
    batch = fake_batch(args.batch_size, lidar_points=args.lidar_points)
    print(f"dim {args.dim}, batch {args.batch_size}, LiDAR {args.lidar_points} points, 1 thread, "
          f"median of {args.repeats}")
    print(f"{'modality':<10} {'lite params':>12} {'lite s':>9} {'paper params':>13} {'paper s':>9} {'paper/lite':>11}")
    for m in MODALITIES:
        lite_n, lite_s = cost(lite_encoder(m, args.dim), m, batch, args.repeats)
        if args.lite_only:
            print(f"{m:<10} {lite_n:>12,} {lite_s:>9.4f}")
            continue
        paper_n, paper_s = cost(paper_encoder(m, args.dim), m, batch, args.repeats)
        print(f"{m:<10} {lite_n:>12,} {lite_s:>9.4f} {paper_n:>13,} {paper_s:>9.3f} {paper_s / lite_s:>10.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
