"""Cost of the Shapley-Pearson contribution assessment, as ratios measured in one run.

    python benchmarks/shapley_overhead.py [--fusion concat] [--batch-size 64] [--steps-per-epoch 176]

Prints, for the lite model with all four modalities on a batch shaped like MM-Fi's:
- one assessment from cached features (16 ``decode`` calls + Pearson) as a percentage of one training step
  (encode + decode + MPJPE loss + backward + Adam step);
- the same as a share of an epoch of ``--steps-per-epoch`` steps, for an assessment of ``--batch-size`` frames.
  ``poise train`` assesses 512 frames, not 64, and not every epoch: its real share is measured in the loop by
  ``benchmarks/epoch_cost.py`` (1.4 % of the average bench epoch; 8 % when it ran every epoch in one pass);
- the speed-up over the naive assessment that runs the whole model (encoders included) on each of the 2^M
  subsets with the absent modalities' inputs zeroed.
Random inputs are enough: the cost depends only on shapes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poise.contrib.shapley import modality_contributions, shapley_exact  # noqa: E402
from poise.contrib.profits import pearson  # noqa: E402
from poise.models.pose import build_model  # noqa: E402
from poise.metrics import mpjpe_loss  # noqa: E402


def fake_batch(b: int, lidar_points: int = 256, mmwave_points: int = 64) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"rgb": torch.rand(b, 17, 2, generator=g) * 480,
            "lidar": torch.randn(b, lidar_points, 3, generator=g) + 3,
            "lidar_mask": torch.ones(b, lidar_points, dtype=torch.bool),
            "mmwave": torch.randn(b, mmwave_points, 5, generator=g), "mmwave_mask": torch.ones(b, mmwave_points, dtype=torch.bool),
            "wifi-csi": torch.rand(b, 1, 3, 114, 10, generator=g), "gt": torch.randn(b, 17, 3, generator=g) * 0.2}


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def zeroed(batch: dict, present) -> dict:
    out = dict(batch)
    for m in ("rgb", "lidar", "mmwave", "wifi-csi"):
        if m not in present:
            out[m] = torch.zeros_like(batch[m])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fusion", default="concat", choices=["concat", "mlp", "attention"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--steps-per-epoch", type=int, default=176, help="demo P1 S1: 11,286 frames / 64")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = build_model(fusion=args.fusion, dim=args.dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = fake_batch(args.batch_size)

    def step():
        model.train()
        loss = mpjpe_loss(model(batch), batch["gt"])
        opt.zero_grad()
        loss.backward()
        opt.step()

    @torch.no_grad()
    def assess_cached():
        model.eval()
        modality_contributions(model, model.encode(batch), batch["gt"])

    @torch.no_grad()
    def assess_naive():
        model.eval()
        shapley_exact(lambda s: pearson(batch["gt"], model(zeroed(batch, s), present=tuple(s))), model.modalities)

    t_step = timed(step, args.repeats)
    t_cached = timed(assess_cached, args.repeats)
    t_naive = timed(assess_naive, max(2, args.repeats // 3))
    print(f"lite model, {args.fusion} fusion, batch {args.batch_size}, {len(model.modalities)} modalities "
          f"({2 ** len(model.modalities)} subsets), {torch.get_num_threads()} threads")
    print(f"training step {t_step * 1e3:.1f} ms; assessment from cached features {t_cached * 1e3:.1f} ms; "
          f"naive 2^M full forward passes {t_naive * 1e3:.1f} ms")
    print(f"assessment = {100 * t_cached / t_step:.1f} % of one training step")
    print(f"a {args.batch_size}-frame assessment once per epoch of {args.steps_per_epoch} steps = "
          f"{100 * t_cached / (t_step * args.steps_per_epoch):.2f} % of the epoch (the loop assesses 512 frames: "
          f"benchmarks/epoch_cost.py measures its real share)")
    print(f"speed-up over the naive assessment: {t_naive / t_cached:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
