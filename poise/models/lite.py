"""Lite encoders: one small network per modality, cheap enough to train on 2 CPU cores.

Each maps a batch of its modality (as ``MMFiDataset`` yields it) to a feature vector of ``dim`` numbers. The
last layer is linear: with a ReLU there, a weak modality's branch can die in joint training (every feature
stuck at 0, no gradient ever again), which we saw for WiFi; a balancing method cannot revive that.
They are the CPU-sized stand-ins for the papers' encoders (VideoPose3D, Point Transformer, MetaFi++):
- ``KeypointMLP``: COCO keypoints (optionally a temporal window), pixels scaled to [-1, 1], then an MLP;
- ``PointNet`` (Qi et al., CVPR 2017): a shared per-point MLP and a masked max-pool, so padding never
  counts and an empty cloud (an empty mmWave frame) gives a zero feature;
- ``CSINet``: strided 1-D convolutions along the 114 subcarriers, with every (antenna, packet) pair (x amplitude /
  phase) as an input channel, and group norm. It replaced a 2-D CNN over subcarriers x packets with batch norm
  that cost 10x the time (60 vs 6 ms forward + backward at batch 32, over half of a training step) and 6x the
  parameters, and was less accurate: `poise calibrate --modalities wifi-csi` on the demo data gave 192.6 /
  106.6 mm MPJPE / PA-MPJPE against 219.6 / 113.4 mm. Group norm, unlike batch norm, keeps every sample's
  output (hence its gradient, for the per-sample Fisher) independent of the rest of the batch.
"""

from __future__ import annotations

import torch
from torch import nn

from poise.data.layout import IMAGE_SIZE
from poise.errors import PoiseError


def mlp(*sizes: int, last_activation: bool = True) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class KeypointMLP(nn.Module):
    """(B, 17, 2) or (B, T, 17, 2) pixel keypoints -> (B, dim)."""

    def __init__(self, window: int = 1, dim: int = 256, hidden: int = 512):
        super().__init__()
        self.net = mlp(window * 17 * 2, hidden, hidden, dim, last_activation=False)
        self.register_buffer("centre", torch.tensor(IMAGE_SIZE, dtype=torch.float32) / 2, persistent=False)

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        return self.net(((keypoints - self.centre) / self.centre[0]).flatten(1))


class PointNet(nn.Module):
    """(B, N, C) points with a (B, N) mask -> (B, dim). ``scale`` divides each input column (C,)."""

    def __init__(self, columns: int, dim: int = 256, widths=(64, 128, 256), scale=None):
        super().__init__()
        self.point_mlp = mlp(columns, *widths)
        self.out = nn.Linear(widths[-1], dim)
        scale = torch.ones(columns) if scale is None else torch.as_tensor(scale, dtype=torch.float32)
        self.register_buffer("scale", scale, persistent=False)

    def forward(self, points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.point_mlp(points / self.scale)
        h = h.masked_fill(~mask[..., None], float("-inf")).amax(1)
        h = torch.where(mask.any(1, keepdim=True), h, torch.zeros_like(h))  # an empty cloud: zeros, not -inf
        return self.out(h)


class CSINet(nn.Module):
    """(B, K, 3, 114, 10) CSI (K = 1 amplitude, 2 with phase) -> (B, dim)."""

    def __init__(self, kinds: int = 1, dim: int = 256, width: int = 32, packets: int = 10, subcarriers: int = 114):
        super().__init__()

        def block(a, b):
            return [nn.Conv1d(a, b, 5, stride=2, padding=2), nn.GroupNorm(4, b), nn.ReLU()]

        self.conv = nn.Sequential(*block(3 * kinds * packets, width), *block(width, 2 * width),
                                  *block(2 * width, 2 * width))
        length = subcarriers
        for _ in range(3):
            length = (length - 1) // 2 + 1
        self.out = nn.Linear(2 * width * length, dim)

    def forward(self, csi: torch.Tensor) -> torch.Tensor:
        b, k, a, s, p = csi.shape
        channels = csi.permute(0, 1, 2, 4, 3).reshape(b, k * a * p, s)  # (antenna, packet) pairs as channels
        return self.out(self.conv(channels).flatten(1))


MMWAVE_SCALE = (1.0, 1.0, 1.0, 1.0, 10.0)  # metres, metres, metres, m/s, dB


def lite_encoder(modality: str, dim: int = 256, rgb_window: int = 0, csi_phase: bool = False) -> nn.Module:
    """The lite encoder of ``modality`` with output size ``dim``."""
    if modality == "rgb":
        return KeypointMLP(window=2 * rgb_window + 1, dim=dim)
    if modality == "lidar":
        return PointNet(3, dim)
    if modality == "mmwave":
        return PointNet(5, dim, scale=MMWAVE_SCALE)
    if modality == "wifi-csi":
        return CSINet(kinds=2 if csi_phase else 1, dim=dim)
    raise PoiseError(f"unknown modality {modality!r}: choose rgb, lidar, mmwave or wifi-csi")


def encode(encoder: nn.Module, modality: str, batch: dict) -> torch.Tensor:
    """Run ``encoder`` on its modality's tensors in a ``MMFiDataset`` batch."""
    if modality in ("lidar", "mmwave"):
        return encoder(batch[modality], batch[f"{modality}_mask"])
    return encoder(batch[modality])
