"""``modality_dropout``: the plain missing-modality baseline (paper 002's robustness papers train with it: DMRNet's
and MMANet's modality dropout), and the per-sample combinations it and they draw.

Each training sample loses each modality independently with probability ``p``, at the feature level, and a
sample that would lose all of them draws again, so at least one modality is always kept. At ``p = 0.5`` this
is exactly the uniform draw over the 2^M - 1 non-empty combinations that DMRNet and MMANet use (every
non-empty combination is equally likely once the empty one is excluded). The absent modalities are what the
model says (``PoseModel.absent``): zeros by default, as in the references (features multiplied by 0); with
``absent=rescale`` the present features are also multiplied by M / |present|, the form consistent with a
concat fusion's linear head in regression (``docs/robust.md``). Evaluation uses every modality unless
``poise robust`` says otherwise. The optimiser is poise's default (Adam): the method scales no gradient.
"""

from __future__ import annotations

from typing import ClassVar

import dataclasses

import torch

from poise import distributed
from poise.methods import register
from poise.methods.base import Method
from poise.errors import PoiseError


def draw_masks(batch_size: int, n_modalities: int, p: float) -> torch.Tensor:
    """(B, M) float 0/1: each modality absent with probability ``p``, independently, redrawn until each row keeps
    one. From the global CPU generator, so a resumed run draws the same masks; the redraw reads these CPU tensors
    on the host (how many rows to draw again), which no device waits for."""
    keep = torch.rand(batch_size, n_modalities) >= p
    while True:
        empty = ~keep.any(1)
        if not empty.any():
            return keep.float()
        keep[empty] = torch.rand(int(empty.sum()), n_modalities) >= p


def sample_masks(model, features: dict, p: float, host: bool = False):
    """``draw_masks`` for a batch of ``features``, on their device; with ``host``, the pair (the masks as drawn,
    on the host; the same on the device), so that a decision on the masks alone waits for no device. Under
    torchrun the masks of the global batch are drawn on every rank (the generators stay in step) and each rank
    takes its share, as it does of the frames, so the ranks' samples do not all get the same combinations. On a
    GPU the copy is asynchronous (pinned host memory: torch keeps the block until the copy is done)."""
    reference = next(iter(features.values()))
    masks = distributed.shard(draw_masks(len(reference) * distributed.world(), len(model.modalities), p))
    if reference.device.type == "cuda":  # from pinned memory, without blocking: the step does not wait for it
        on_device = masks.pin_memory().to(reference.device, non_blocking=True)
    else:
        on_device = masks.to(reference.device)
    return (masks, on_device) if host else on_device


def combination_index(mask: torch.Tensor) -> torch.Tensor:
    """(B,) long: each row's combination as the integer sum of 2^i over its present modalities i (1..2^M - 1)."""
    weights = 2 ** torch.arange(mask.shape[1], device=mask.device)
    return (mask.round().long() * weights).sum(1)


def combination_name(index: int, modalities) -> str:
    return "+".join(m for i, m in enumerate(modalities) if index >> i & 1)


def check_non_negative(method, *names) -> None:
    """Each named hyper-parameter of ``method`` is >= 0, or an error names it."""
    for name in names:
        if getattr(method, name) < 0:
            raise PoiseError(f"{method.name}: {name} must be >= 0, got {getattr(method, name)}")


def check_drop(name: str, p: float) -> None:
    if not 0 <= p < 1:
        raise PoiseError(f"{name}: p (the probability that a modality is absent) must be in [0, 1), got {p}")


@register("modality_dropout")
@dataclasses.dataclass
class ModalityDropout(Method):
    needs: ClassVar[tuple] = ("absent handling",)
    smoke_params = {"absent": "rescale"}
    p: float = 0.5  # each modality's probability of being absent in a training sample (0.5: uniform combinations)
    absent: str = "zero"  # what an absent modality is (PoseModel.absent): zero, or rescale the present ones

    def __post_init__(self):
        check_drop(self.name, self.p)
        self.mask: torch.Tensor | None = None

    def setup(self, run) -> None:
        run.model.set_absent(self.absent)

    def predict(self, run, batch: dict, features: dict):
        self.mask = sample_masks(run.model, features, self.p)
        return run.model.decode(features, self.mask)
