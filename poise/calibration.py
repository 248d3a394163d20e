"""Simulator calibration: how well does each modality alone predict the pose?

Trains one small single-modality regressor per modality (a lite encoder and a linear head, MSE in metres,
AdamW with cosine decay) on a protocol/split of an MM-Fi root and reports test MPJPE / PA-MPJPE. On the
synthetic demo this measures the simulator's realism against MM-Fi's unimodal results (paper 001, Table 3,
protocol 1, split S1): RGB 62.46 / 34.89, LiDAR 65.95 / 44.41, mmWave 116.48 / 58.15, WiFi 166.55 / 110.42 mm.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from poise.data import layout
from poise.data.dataset import MMFiDataset
from poise.models.pose import build_model
from poise.runtime import evaluate
from poise.errors import PoiseError

PAPER_001_TABLE_3 = {"rgb": (62.46, 34.89), "lidar": (65.95, 44.41), "mmwave": (116.48, 58.15),
                     "wifi-csi": (166.55, 110.42)}


@dataclass
class UnimodalResult:
    modality: str
    mpjpe_mm: float
    pa_mpjpe_mm: float
    train_frames: int
    test_frames: int
    epochs: int
    seconds: float


def train_unimodal(modality: str, train: MMFiDataset, test: MMFiDataset, epochs: int = 15, batch_size: int = 64,
                   lr: float = 1e-3, seed: int = 0, progress: bool = True) -> UnimodalResult:
    torch.manual_seed(seed)
    mean_pose = torch.cat([b["gt"] for b in train.loader(batch_size=1024)]).mean(0)
    model = build_model((modality,), fusion="concat", dim=256)  # one encoder, a linear head on the mean pose
    model.set_mean_pose(mean_pose)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(train) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=f"calibrate {modality}", unit="step", disable=not progress, leave=False)
    for epoch in range(epochs):
        model.train()
        train.set_epoch(epoch)
        for batch in train.loader(batch_size=batch_size, shuffle=True, seed=seed + epoch, drop_last=True):
            loss = nn.functional.mse_loss(model(batch), batch["gt"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    metrics = evaluate(model, test)
    return UnimodalResult(modality, metrics["test_mpjpe_mm"], metrics["test_pa_mpjpe_mm"], len(train), len(test), epochs, time.perf_counter() - start)


def calibrate(root, modalities=layout.MODALITIES, protocol: str = "P1", split: str = "S1", epochs: int = 15,
              lidar_points: int = 256, seed: int = 0, on_error: str = "raise", rebuild_cache: bool = False,
              progress: bool = True) -> list[UnimodalResult]:
    """Train and test one single-modality model per modality; results in the order given."""
    if epochs < 1:
        raise PoiseError(f"epochs={epochs} must be >= 1")
    kw = dict(protocol=protocol, split=split, modalities=layout.MODALITIES, lidar_points=lidar_points, seed=seed,
              on_error=on_error, progress=progress)
    train = MMFiDataset(root, part="train", rebuild_cache=rebuild_cache, **kw)  # once: the parts share the cache
    test = MMFiDataset(root, part="test", **kw)
    if len(train) == 0 or len(test) == 0:
        raise PoiseError(f"{root}: split {split} of protocol {protocol} leaves {len(train)} training and {len(test)} "
                         f"test frames here; use a root with more subjects (e.g. `poise simulate --preset demo`)")
    return [train_unimodal(m, train, test, epochs=epochs, seed=seed, progress=progress) for m in modalities]


def format_table(results: list[UnimodalResult]) -> str:
    lines = ["| modality | MPJPE (mm) | PA-MPJPE (mm) | paper 001 Table 3 MPJPE / PA-MPJPE (mm) | train / test frames | time (s) |",
             "|---|---|---|---|---|---|"]
    for r in results:
        paper = PAPER_001_TABLE_3[r.modality]
        lines.append(f"| {r.modality} | {r.mpjpe_mm:.1f} | {r.pa_mpjpe_mm:.1f} | {paper[0]:.2f} / {paper[1]:.2f} | "
                     f"{r.train_frames} / {r.test_frames} | {r.seconds:.0f} |")
    return "\n".join(lines)


def save(results: list[UnimodalResult], path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps([asdict(r) for r in results], indent=1))
