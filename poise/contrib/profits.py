"""Profit functions s(y, y_hat) for the Shapley value: how good is a batch of predicted poses.

- ``pearson`` (paper 001, Eq. 2-3; paper 000's "Key Insight"): the sum over the j x 3 = 51 coordinates of
  Pearson's r between ground truth and prediction along the batch. It rewards predictions that *follow*
  the pose, whatever their offset or scale, so a collapsed modality (near-constant output) scores about 0
  even when its mean pose gives a modest error. A coordinate whose prediction (or ground truth) has zero
  variance scores r = 0, never NaN: that is exactly the collapsed case.
- ``neg_mse``: minus the mean squared error (metres squared), and ``neg_mpjpe``: minus MPJPE (mm). They are
  here so the papers' argument for Pearson can be checked on data: an error-based profit also credits a
  modality for merely predicting the mean pose.
All take (B, 17, 3) tensors and return a float; higher is better.
"""

from __future__ import annotations

import difflib

import torch

from poise.metrics import mpjpe_mm
from poise.errors import PoiseError

ZERO_STD = 1e-9  # metres: a coordinate whose std along the batch is below this counts as constant


def pearson(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    """Sum over coordinates of Pearson's r along the batch (001 Eq. 2-3); constant coordinates give 0."""
    return float(pearson_tensor(y, y_hat))


def pearson_tensor(y: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
    """``pearson`` as a 0-d float64 tensor on the inputs' device, for a per-step use that must not wait for the
    device (OGM-GE's scores)."""
    y = y.reshape(len(y), -1).double()
    y_hat = y_hat.reshape(len(y_hat), -1).double()
    if len(y) < 2:
        raise PoiseError("the Pearson profit needs a batch of at least 2 samples (it correlates along the batch)")
    dy, dp = y - y.mean(0), y_hat - y_hat.mean(0)
    sy, sp = dy.square().mean(0).sqrt(), dp.square().mean(0).sqrt()
    ok = (sy > ZERO_STD) & (sp > ZERO_STD)
    r = (dy * dp).mean(0) / torch.where(ok, sy * sp, torch.ones_like(sy))
    return torch.where(ok, r, torch.zeros_like(r)).sum()


def neg_mse(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    return -float((y.double() - y_hat.double()).square().mean())


def neg_mpjpe(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    if y.ndim != 3 or y.shape[-1] != 3:  # mpjpe_mm would read a (B, 3) batch as the joints of one pose
        raise PoiseError(f"the neg_mpjpe profit scores poses (B, J, 3); this target has shape {tuple(y.shape)}: "
                         "use neg_mse or pearson, or pass a profit function")
    return -float(mpjpe_mm(y_hat, y))


PROFITS = {"pearson": pearson, "neg_mse": neg_mse, "neg_mpjpe": neg_mpjpe}


def get_profit(name):
    """A profit by name (or a callable, returned as is)."""
    if callable(name):
        return name
    if name not in PROFITS:
        close = difflib.get_close_matches(str(name), PROFITS, n=1)
        raise PoiseError(f"unknown profit {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                         + f": choose one of {', '.join(PROFITS)}")
    return PROFITS[name]
