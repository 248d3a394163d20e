"""Mixed precision as configuration: ``precision: float32`` (the default), ``bf16`` or ``fp16``.

The training step's forward pass (encoders, fusion, head, a method's prediction and extra loss) runs under
``torch.autocast`` with the chosen type; the pose loss, the optimiser and its state, evaluation and the
contribution assessment stay in float32, so the reported numbers are computed the same way in every
precision. ``fp16`` needs loss scaling: a ``GradScaler`` scales the objective before ``backward`` and unscales
the gradients before a method's ``after_backward`` sees them (so gradient-editing methods work on true
gradients). Neither is a default until measured against float32 (docs/training.md, "Precision").
"""

from __future__ import annotations

import contextlib

import torch

from poise.errors import PoiseError

PRECISIONS = {"float32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check(precision: str) -> None:
    if precision not in PRECISIONS:
        raise PoiseError(f"config key 'precision' must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def autocast(precision: str, device: torch.device):
    """The context the forward pass of a training step runs in (nothing for float32)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler for ``fp16`` (None otherwise: bf16 has float32's exponent range and needs none)."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
