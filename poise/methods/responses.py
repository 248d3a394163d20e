"""What each modality contributes to a prediction, on cached features (no extra encoder passes).

- ``unimodal_predictions``: each modality decoded alone through the model's own fusion and head, its features
  multiplied by M (``M / |present|``, paper 002's methods adapted to regression). Plain zero-padding is wrong
  in regression: with a concat fusion and a linear head, ``decode(z, {m}) = mean_pose + b + W_m z_m``, so
  training every such output to hit the pose makes the fused output the *sum* of M pose offsets (G-Blending
  built that way gave 439 mm against 66 mm for joint training). Rescaled, ``mean_pose + b + M W_m z_m``
  averages over m to exactly ``decode(z)``: a fused model whose unimodal outputs are right is right too (the
  regression analogue of summing logits). ``tests/test_balancing.py`` checks the identity. For the ``mlp``
  and ``attention`` fusions it is a consistent scale, not an identity.
- ``UnimodalHeads``: the other consistent form, a linear head per modality owned by the method (G-Blending's
  unimodal classifiers). It costs parameters, but it leaves the fused head free to weight the modalities
  unequally. Through the shared head with features x M, unimodal outputs that are each trained to hit the
  pose pin a concat model's fused output to their *equal-weight* mean, which is what the shared design
  measured on the demo data (ARL's dependence shares 0.29 / 0.29 / 0.18 / 0.25 against error spreads of
  40-127 mm; docs/training.md).
- ``shapley_responses``: the prediction split into additive per-modality responses by the Shapley value of
  the vector game ``v(S) = decode(features, S) - decode(features, {})`` (exact, 2^M decodes; AGM and ARL).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from poise.contrib.shapley import shapley_exact
from poise.models.capabilities import require


def unimodal_predictions(model, features: dict) -> dict:
    """{m: (B, *out)}: modality m's features times M, every other modality zeroed, through the shared head."""
    scale = len(model.modalities)
    return {m: model.decode({m: features[m] * scale}, present=(m,)) for m in model.modalities}


class UnimodalHeads(nn.ModuleDict):
    """A linear head per modality on its encoder's features: ``offset + head_m(z_m)`` (the model's mean target
    and output shape: a ``MultiModalRegressor``'s ``dim``, ``out_shape`` and ``offset``)."""

    def __init__(self, model, seed: int):
        require(model, "a method's own unimodal heads (heads='own')", "feature size", "output shape")
        with torch.random.fork_rng(devices=[]):  # initialised from the seed without touching the global RNG
            torch.manual_seed(seed + 1)
            heads = {m: nn.Linear(model.dim, math.prod(model.out_shape)) for m in model.modalities}
        super().__init__(heads)
        self.to(model.offset.device)

    def outputs(self, model, features: dict) -> dict:
        return {m: model.offset + self[m](features[m]).view(-1, *model.out_shape) for m in self}


HEADS = ("own", "shared")


def unimodal_outputs(model, features: dict, heads: UnimodalHeads | None) -> dict:
    """Each modality's output: through ``heads`` if the method owns some, else the shared head (features x M)."""
    return unimodal_predictions(model, features) if heads is None else heads.outputs(model, features)


def shapley_responses(model, features: dict) -> tuple[torch.Tensor, dict]:
    """decode({}) and each modality's Shapley response phi_m, all (B, *out), differentiable; by efficiency
    ``decode(features) = decode({}) + sum_m phi_m`` exactly."""
    outputs = {}

    def value(subset: frozenset) -> torch.Tensor:
        outputs[subset] = model.decode(features, present=tuple(subset))
        return outputs[subset]

    phi = shapley_exact(value, model.modalities)  # exact Shapley works on tensors as on floats
    return outputs[frozenset()], phi
