"""The multi-modal pose model, split in two so that sub-models cost no extra encoder passes.

- ``encode(batch) -> {modality: (B, d) features}`` runs each modality's encoder once;
- ``decode(features, present) -> (B, 17, 3) poses`` fuses and regresses, with every modality not in
  ``present`` replaced by zeros at the feature level (the papers' definition of an absent modality).

Shapley values, unimodal outputs and missing-modality evaluation call ``decode`` on cached features, so the
encoders run once per step, never 2^M times. ``modality_parameters`` maps each modality to its encoder's
parameters explicitly ("fusion" holds the fusion module and the head), so no method ever matches substrings
of parameter names.
"""

from __future__ import annotations

import torch
from torch import nn

from poise.data import layout
from poise.data.mmfi import check_modalities
from poise.models.fusion import make_fusion
from poise.models.lite import encode, lite_encoder
from poise.errors import PoiseError

SHARED = "fusion"  # the parameter group of everything that is not a modality encoder


class PoseModel(nn.Module):
    """Encoders per modality, a fusion module and a linear head predicting the offset from a mean pose."""

    def __init__(self, encoders: dict[str, nn.Module], dim: int, fusion: str = "concat"):
        super().__init__()
        self.modalities = check_modalities(tuple(encoders))
        self.dim = dim
        self.encoders = nn.ModuleDict({m: encoders[m] for m in self.modalities})
        self.fusion = make_fusion(fusion, len(self.modalities), dim)
        self.head = nn.Linear(self.fusion.out_dim, 17 * 3)
        self.register_buffer("mean_pose", torch.zeros(17, 3))
        # a fixed per-modality factor on the features before fusion (1 unless a method such as ARM sets it):
        # part of the model, so training, evaluation and sub-model decodes all see the same features
        self.register_buffer("modality_gain", torch.ones(len(self.modalities)))

    def set_mean_pose(self, mean_pose: torch.Tensor) -> None:
        """Centre the head's output on ``mean_pose`` (17, 3), metres: the training set's mean, typically."""
        self.mean_pose.copy_(torch.as_tensor(mean_pose, dtype=self.mean_pose.dtype).reshape(17, 3))

    def encode(self, batch: dict) -> dict[str, torch.Tensor]:
        return {m: encode(self.encoders[m], m, batch) for m in self.modalities}

    def decode(self, features: dict[str, torch.Tensor], present=None) -> torch.Tensor:
        """Poses (B, 17, 3) from ``features``, with modalities outside ``present`` (default: all) zeroed."""
        present = self.modalities if present is None else tuple(present)
        unknown = [m for m in present if m not in self.modalities]
        if unknown:
            raise ValueError(f"present={list(present)} names {unknown}, which this model has no encoder for "
                             f"(its modalities: {list(self.modalities)})")
        reference = features[present[0]] if present else next(iter(features.values()))
        tokens = torch.stack([features[m] * self.modality_gain[i] if m in present else torch.zeros_like(reference)
                              for i, m in enumerate(self.modalities)], dim=1)
        return self.mean_pose + self.head(self.fusion(tokens)).view(-1, 17, 3)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before ``modality_gain`` existed hold no gains: theirs were all 1
        state_dict.setdefault(prefix + "modality_gain", torch.ones_like(self.modality_gain))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, batch: dict, present=None) -> torch.Tensor:
        return self.decode(self.encode(batch), present)

    def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        """{modality: its encoder's parameters, "fusion": the fusion module's and the head's}."""
        groups = {m: list(self.encoders[m].parameters()) for m in self.modalities}
        groups[SHARED] = list(self.fusion.parameters()) + list(self.head.parameters())
        return groups


ENCODERS = ("lite", "paper")


def build_model(modalities=layout.MODALITIES, fusion: str = "concat", dim: int = 256, rgb_window: int = 0,
                csi_phase: bool = False, encoder: str = "lite") -> PoseModel:
    """A PoseModel for ``modalities`` with the ``lite`` encoders (the CPU default) or the ``paper`` ones
    (VideoPose3D TCN, Point Transformer, MetaFi++-style CSI transformer: ``poise.models.paper``)."""
    modalities = check_modalities(modalities)
    if encoder == "lite":
        make = lite_encoder
    elif encoder == "paper":
        from poise.models.paper import paper_encoder as make
    else:
        raise PoiseError(f"unknown encoder size {encoder!r}: choose one of {', '.join(ENCODERS)}")
    encoders = {m: make(m, dim, rgb_window=rgb_window, csi_phase=csi_phase) for m in modalities}
    return PoseModel(encoders, dim, fusion)
