"""Gaussian mutual information between predictions and targets, from correlations along the batch (ARM, 004).

Each of the 51 pose coordinates is treated as its own jointly Gaussian set of scalars over the batch, and the
information is summed over coordinates (nats):

    I(x; y)     = -1/2 log(1 - rho(x, y)^2)                       (marginal; rho = Pearson's r)
    I(x; y | z) = -1/2 log(1 - rho(x, y | z)^2)                   (conditional; partial correlation given z)

with the partial correlation from the inverse correlation matrix P of (x, y, z_1, ..., z_K):
``rho(x, y | z) = -P_xy / sqrt(P_xx P_yy)``. Both are exact for Gaussian variables and need no binning, unlike
ARM's released histogram estimator, whose conditional term is wrong (``research/related_methods.md`` 7.5). A
coordinate whose values are constant along the batch (a collapsed modality) carries 0 information.
Both return a 0-d float64 tensor on the inputs' device (``float()`` reads it), so a per-step use (ARM) need
not wait for the device.
"""

from __future__ import annotations

import torch

from poise.errors import PoiseError

RIDGE = 1e-6  # added to each correlation matrix's diagonal, so nearly collinear predictors stay invertible
MAX_R = 1 - 1e-6  # |r| is clipped here: a perfect copy is very informative, not infinitely so


def correlations(*columns: torch.Tensor) -> torch.Tensor:
    """(D, C, C) correlation matrices over the batch of C column sets, each (B, D); a constant column is
    uncorrelated with everything (unit diagonal, zero off-diagonal)."""
    v = torch.stack([c.reshape(len(c), -1).double() for c in columns], dim=-1)  # (B, D, C)
    if len(v) < len(columns) + 1:
        raise PoiseError(f"a Gaussian information estimate over {len(columns)} variables needs a batch of at least "
                         f"{len(columns) + 1} samples, got {len(v)}")
    v = v - v.mean(0)
    std = v.square().mean(0).sqrt()
    v = v / torch.where(std > 1e-12, std, torch.full_like(std, float("inf")))
    corr = torch.einsum("bdi,bdj->dij", v, v) / len(v)
    eye = torch.eye(len(columns), dtype=corr.dtype, device=corr.device)
    return corr * (1 - eye) + eye


def gaussian_mi(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """I(x; y) in nats, summed over coordinates (a 0-d float64 tensor); x and y are (B, ...) with the same
    coordinates."""
    r = correlations(x, y)[:, 0, 1].clamp(-MAX_R, MAX_R)
    return (-0.5 * torch.log1p(-r.square())).sum()


def gaussian_cmi(x: torch.Tensor, y: torch.Tensor, given: list) -> torch.Tensor:
    """I(x; y | given) in nats, summed over coordinates (a 0-d float64 tensor); ``given`` is a list of tensors
    shaped like x."""
    if not given:
        return gaussian_mi(x, y)
    corr = correlations(x, y, *given)
    precision = torch.linalg.inv(corr + RIDGE * torch.eye(corr.shape[-1], dtype=corr.dtype, device=corr.device))
    r = (-precision[:, 0, 1] / (precision[:, 0, 0] * precision[:, 1, 1]).sqrt()).clamp(-MAX_R, MAX_R)
    return (-0.5 * torch.log1p(-r.square())).sum()
