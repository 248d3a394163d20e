"""Paper-size encoders: the per-modality networks papers 000/001 use, as drop-in swaps for the lite ones.

``paper_encoder`` has the signature, input conventions and output (B, dim) of ``lite.lite_encoder``, so
``lite.encode(encoder, modality, batch)`` and ``PoseModel`` work with either. The lite encoders stay the CPU
default; these are the papers' architectures, for when there is a GPU and the goal is to compare with the
papers' numbers rather than to iterate quickly:

- ``TemporalConvNet``: VideoPose3D (Pavllo et al., CVPR 2019) over the COCO keypoints of a window of frames;
- ``PointTransformer``: Point Transformer (Zhao et al., ICCV 2021), vector self-attention over the k nearest
  neighbours, for LiDAR and mmWave clouds, with the padding mask of ``MMFiDataset``;
- ``CSITransformer``: MetaFi++ (Zhou et al.), a CNN stem and a transformer encoder over WiFi CSI.

As in ``lite``, every encoder ends with a linear layer (no ReLU): a ReLU there can kill a weak modality's
branch in joint training (all features stuck at 0, no gradient ever again), see ``poise.models.lite``.
In training mode the TCN needs a batch of at least 2 (batch norm over one output frame per sample).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from poise.data.layout import CSI_SHAPE, IMAGE_SIZE
from poise.models.lite import MMWAVE_SCALE, mlp

# --------------------------------------------------------------------------------------------------------------
# RGB keypoints: VideoPose3D temporal convolutions


def tcn_filter_widths(window: int, min_blocks: int = 2) -> tuple[int, ...]:
    """Kernel widths (the expand conv's, then one per residual block) for a window of ``window`` frames.

    As many width-3 layers as fit (receptive field 3^n <= window, dilations 1, 3, 9, 27, ...), then width-1
    layers up to ``min_blocks`` blocks, so the net is never shallower than VideoPose3D's single-frame variant
    (widths 1,1,1). A window of 1 frame gives (1, 1, 1): every temporal kernel has width 1.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1 frame, got {window}")
    n = 0
    while 3 ** (n + 1) <= window:
        n += 1
    return (3,) * n + (1,) * max(0, min_blocks + 1 - n)


class TemporalBlock(nn.Module):
    """One VideoPose3D residual block: dilated conv (width w), BN, ReLU, dropout, 1x1 conv, BN, ReLU, dropout,
    plus the input sliced to the centre frames (an unpadded conv shrinks the length by (w - 1) * dilation)."""

    def __init__(self, channels: int, width: int, dilation: int, dropout: float):
        super().__init__()
        self.pad = (width - 1) * dilation // 2
        self.body = nn.Sequential(
            nn.Conv1d(channels, channels, width, dilation=dilation, bias=False), nn.BatchNorm1d(channels),
            nn.ReLU(), nn.Dropout(dropout),
            nn.Conv1d(channels, channels, 1, bias=False), nn.BatchNorm1d(channels), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, self.pad:x.shape[2] - self.pad] + self.body(x)


class TemporalConvNet(nn.Module):
    """(B, 17, 2) or (B, T, 17, 2) pixel keypoints -> (B, dim): VideoPose3D (Pavllo et al., CVPR 2019).

    An expand conv over the 34 keypoint coordinates, then residual blocks of dilated convolutions (dilations
    3, 9, 27, ...) whose number is chosen by ``tcn_filter_widths`` so that ``receptive_field`` fits the window
    T = 2 * rgb_window + 1 (T = 1: the single-frame variant, all kernels width 1).
    Changes from the paper: ``channels`` defaults to 512 (the paper's 1024 quadruples the conv weights for
    little gain at MM-Fi's size); the 1x1 "shrink" conv to 17 x 3 joints is a linear layer to ``dim``
    features; when T is not a power of 3 the receptive field is the largest power of 3 below T and the
    remaining output frames are averaged (so every frame counts); no trajectory model or semi-supervision.
    Pixels are normalised as in ``KeypointMLP``: centred on the image, divided by half its width.
    """

    def __init__(self, window: int = 1, dim: int = 256, channels: int = 512, dropout: float = 0.25,
                 min_blocks: int = 2):
        super().__init__()
        self.window = window
        self.filter_widths = tcn_filter_widths(window, min_blocks)
        first = self.filter_widths[0]
        self.expand = nn.Sequential(nn.Conv1d(17 * 2, channels, first, bias=False), nn.BatchNorm1d(channels),
                                    nn.ReLU(), nn.Dropout(dropout))
        blocks, dilation = [], first
        for width in self.filter_widths[1:]:
            blocks.append(TemporalBlock(channels, width, dilation if width > 1 else 1, dropout))
            dilation *= width
        self.blocks = nn.ModuleList(blocks)
        self.receptive_field = dilation  # the product of the widths: 1 + sum((w_i - 1) * dilation_i)
        self.out = nn.Linear(channels, dim)
        self.register_buffer("centre", torch.tensor(IMAGE_SIZE, dtype=torch.float32) / 2, persistent=False)

    def temporal_features(self, keypoints: torch.Tensor) -> torch.Tensor:
        """(B, T, 17, 2) or (B, 17, 2) keypoints -> (B, channels, T - receptive_field + 1), before pooling."""
        x = (keypoints - self.centre) / self.centre[0]
        if x.dim() == 3:
            x = x[:, None]
        if x.shape[1] < self.receptive_field:
            raise ValueError(f"{x.shape[1]} frames, fewer than the receptive field {self.receptive_field}")
        x = self.expand(x.flatten(2).transpose(1, 2))  # (B, 34, T) -> (B, C, T - first + 1)
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        return self.out(self.temporal_features(keypoints).mean(2))


# --------------------------------------------------------------------------------------------------------------
# Point clouds: Point Transformer


def knn(pos: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest real points of every point (itself included), as (B, N, k) indices and (B, N, k) validity.

    ``pos`` (B, N, 3), ``mask`` (B, N) True for real points. Padded points get an infinite distance, so a real
    point's neighbours are real; when a cloud has fewer than k real points the surplus slots (pointing at
    padding) are marked invalid. k is clamped to N. Memory: the B x N x N distances, never B x N x N x d.
    """
    b, n, _ = pos.shape
    k = min(k, n)
    with torch.no_grad():
        dist = torch.cdist(pos, pos, compute_mode="donot_use_mm_for_euclid_dist")  # exact; B*N*N scalars
        dist = dist.masked_fill(~mask[:, None, :], float("inf"))
        idx = dist.topk(k, dim=-1, largest=False, sorted=True).indices
    valid = mask.gather(1, idx.reshape(b, n * k)).view(b, n, k)
    return idx, valid


def gather_neighbours(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(B, N, d) features and (B, N, k) indices -> (B, N, k, d): row [b, i, j] is x[b, idx[b, i, j]]."""
    b, n, k = idx.shape
    d = x.shape[-1]
    return x.gather(1, idx.reshape(b, n * k, 1).expand(-1, -1, d)).view(b, n, k, d)


class PointTransformerLayer(nn.Module):
    """Vector self-attention over k neighbours (Zhao et al., ICCV 2021, eq. 3):

        y_i = sum_j softmax_j(gamma(phi(x_i) - psi(x_j) + delta_ij)) * (alpha(x_j) + delta_ij),
        delta_ij = theta(p_i - p_j),

    with j over the neighbours of i, the softmax per channel (vector attention), gamma and theta two-layer MLPs.
    Changes from the paper: no batch norm in gamma/theta (it would mix padding into the statistics) and no
    weight sharing across channel groups. Memory: O(B * N * k * d), a handful of (B, N, k, d) tensors.
    """

    def __init__(self, d: int):
        super().__init__()
        self.phi, self.psi, self.alpha = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.delta = mlp(3, d, d, last_activation=False)
        self.gamma = mlp(d, d, d, last_activation=False)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, idx: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        delta = self.delta(pos[:, :, None] - gather_neighbours(pos, idx))  # (B, N, k, d)
        logits = self.gamma(self.phi(x)[:, :, None] - gather_neighbours(self.psi(x), idx) + delta)
        # A row with no valid slot (a padded point of an empty cloud) keeps all its slots: finite, never used.
        valid = valid | ~valid.any(-1, keepdim=True)
        weights = logits.masked_fill(~valid[..., None], float("-inf")).softmax(dim=2)
        return (weights * (gather_neighbours(self.alpha(x), idx) + delta)).sum(2)


class PointTransformerBlock(nn.Module):
    """Linear in, Point Transformer layer, linear out, plus the residual (Zhao et al., fig. 4)."""

    def __init__(self, width: int, d: int | None = None):
        super().__init__()
        d = width if d is None else d
        self.linear_in = nn.Linear(width, d)
        self.attention = PointTransformerLayer(d)
        self.linear_out = nn.Linear(d, width)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, idx: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.linear_in(x))
        h = F.relu(self.attention(h, pos, idx, valid))
        return x + self.linear_out(h)


class PointTransformer(nn.Module):
    """(B, N, C) points with a (B, N) mask -> (B, dim): Point Transformer (Zhao et al., ICCV 2021).

    A per-point MLP to ``width``, ``blocks`` Point Transformer blocks over the ``k`` nearest neighbours (in the
    first 3 columns, x y z, after dividing by ``scale``), a masked max-pool and a linear layer to ``dim``.
    Changes from the paper: no transition-down/up stages (N is 256 for LiDAR, 64 for mmWave: all points stay),
    one width throughout, no batch norm (padding would enter its statistics), a max-pool head.
    Padding: padded rows are zeroed on entry, are never neighbours of a real point and are left out of the
    pool, so their values cannot change the output; an empty cloud pools to zeros (as the lite PointNet).
    Memory: O(B * N * k * width) activations per block (about 5.5 tensors of that size kept for backward,
    measured), plus B * N * N distances for the kNN, never B * N * N * width; at the defaults and B = 64 a
    LiDAR block keeps about 64 * 256 * 16 * 64 * 4 B * 5.5 = 370 MB. See
    ``benchmarks/point_transformer_memory.py`` (the dense all-pairs version needs about N / k times more).
    """

    def __init__(self, columns: int, dim: int = 256, width: int = 64, blocks: int = 2, k: int = 16, scale=None):
        super().__init__()
        self.k = k
        self.input_mlp = mlp(columns, width, width, last_activation=False)
        self.blocks = nn.ModuleList(PointTransformerBlock(width) for _ in range(blocks))
        self.out = nn.Linear(width, dim)
        scale = torch.ones(columns) if scale is None else torch.as_tensor(scale, dtype=torch.float32)
        self.register_buffer("scale", scale, persistent=False)

    def forward(self, points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        points = (points / self.scale).masked_fill(~mask[..., None], 0.0)
        pos = points[..., :3]
        idx, valid = knn(pos, mask, self.k)
        x = self.input_mlp(points)
        for block in self.blocks:
            x = block(x, pos, idx, valid)
        x = x.masked_fill(~mask[..., None], float("-inf")).amax(1)
        x = torch.where(mask.any(1, keepdim=True), x, torch.zeros_like(x))  # an empty cloud: zeros, not -inf
        return self.out(x)


# --------------------------------------------------------------------------------------------------------------
# WiFi CSI: MetaFi++


class CSITransformer(nn.Module):
    """(B, K, 3, 114, 10) CSI (K = 1 amplitude, 2 with phase) -> (B, dim): MetaFi++ (Zhou et al.).

    A CNN stem over (3K channels, 114 subcarriers, 10 packets) down to (width, 14, 5), whose 70 cells are the
    tokens of a pre-norm transformer encoder with a learned positional embedding; mean-pool, linear to ``dim``.
    Changes from the paper: the CSI is not resized, the stem is three small conv blocks instead of the paper's
    deeper one, and the head regresses features rather than keypoints.
    """

    def __init__(self, kinds: int = 1, dim: int = 256, width: int = 128, layers: int = 3, heads: int = 4,
                 dropout: float = 0.1):
        super().__init__()

        def block(a, b, pool):
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(pool))

        antennas, subcarriers, packets = CSI_SHAPE
        self.stem = nn.Sequential(block(antennas * kinds, width // 4, (2, 1)), block(width // 4, width // 2, (2, 1)),
                                  block(width // 2, width, (2, 2)))
        tokens = (subcarriers // 8) * (packets // 2)
        self.position = nn.Parameter(torch.zeros(1, tokens, width))
        nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(width), enable_nested_tensor=False)
        self.out = nn.Linear(width, dim)

    def forward(self, csi: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(csi.flatten(1, 2)).flatten(2).transpose(1, 2)  # (B, 70, width)
        return self.out(self.encoder(tokens + self.position).mean(1))


def paper_encoder(modality: str, dim: int = 256, rgb_window: int = 0, csi_phase: bool = False) -> nn.Module:
    """The paper-size encoder of ``modality`` with output size ``dim`` (same contract as ``lite_encoder``)."""
    if modality == "rgb":
        return TemporalConvNet(window=2 * rgb_window + 1, dim=dim)
    if modality == "lidar":
        return PointTransformer(3, dim)
    if modality == "mmwave":
        return PointTransformer(5, dim, scale=MMWAVE_SCALE)
    if modality == "wifi-csi":
        return CSITransformer(kinds=2 if csi_phase else 1, dim=dim)
    raise ValueError(f"unknown modality {modality!r}: choose rgb, lidar, mmwave or wifi-csi")
