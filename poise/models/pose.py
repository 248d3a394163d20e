"""The multi-modal pose model: the generic ``MultiModalRegressor`` (``poise.models.regressor``: encode once,
decode any subset of modalities) with MM-Fi's modalities, its encoders' inputs and (17, 3) poses, and the
encoders poise ships (``lite`` for the CPU, ``paper`` for the papers' sizes)."""

from __future__ import annotations

import torch
from torch import nn

from poise.choices import ENCODERS
from poise.data import layout
from poise.data.mmfi import check_modalities
from poise.models.lite import encode, lite_encoder
from poise.models.regressor import MultiModalRegressor
from poise.errors import PoiseError


class PoseModel(MultiModalRegressor):
    """A ``MultiModalRegressor`` of (17, 3) poses over MM-Fi's modalities, whose encoders read an
    ``MMFiDataset`` batch (point clouds with their masks); its output offset is the mean pose."""

    def __init__(self, encoders: dict[str, nn.Module], dim: int, fusion: str = "concat"):
        super().__init__({m: encoders[m] for m in check_modalities(tuple(encoders))}, dim, (17, 3), fusion)

    @property
    def mean_pose(self) -> torch.Tensor:
        return self.offset

    def set_mean_pose(self, mean_pose: torch.Tensor) -> None:
        """Centre the head's output on ``mean_pose`` (17, 3), metres: the training set's mean, typically."""
        self.set_offset(mean_pose)

    def encode(self, batch: dict) -> dict[str, torch.Tensor]:
        return {m: encode(self.encoders[m], m, batch) for m in self.modalities}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the generic regressor named the mean pose ``mean_pose``
        if prefix + "mean_pose" in state_dict:
            state_dict[prefix + "offset"] = state_dict.pop(prefix + "mean_pose")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


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
