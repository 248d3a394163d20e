"""Two-network noisy-label baselines of 001 Table 2, adapted to pose regression, each with EWC per network.

- **Co-teaching** (Han et al., NeurIPS 2018, Algorithm 1): two networks; in each mini-batch each network ranks
  the samples by its own loss and keeps the ``1 - R(T)`` fraction with the smallest loss, and each network is
  updated on the samples its *peer* kept (cross-update). R(T) = min(T tau / T_k, tau) is the forget rate of
  epoch T, with tau = the noise ratio (the original's default: the true rate) and T_k = half of a task's
  epochs (the original ramps over 10 of 200 epochs; our tasks have a handful). Adapted: the per-sample loss is
  the MPJPE (001 Eq. 10) instead of cross-entropy. The first task is clean in 001's setting, so it is learnt
  without forgetting (R = 0). The model that is evaluated is the first network (the original reports either).
- **DivideMix** (Li et al., ICLR 2020): two networks; before each epoch on a noisy task, each network's
  per-sample losses over the task (eval mode) are min-max normalised and split by a 2-component GMM
  (``nis.gmm_clean_mask``, the original's recipe), and each network trains on its *peer's* split
  (co-divide). Labelled (clean) samples learn the co-refined target w y + (1 - w) f(x) (w: the clean posterior;
  f(x): the network's own prediction, detached; no sharpening: that is for class distributions);
  unlabelled samples learn the co-guessed target, the mean of both networks' predictions (detached), with
  weight ``lambda_u``. Adapted: MPJPE replaces cross-entropy and the MSE on probabilities; there is no
  MixMatch/MixUp (mixing point clouds or CSI frames is not a meaningful augmentation) and no uniform-prior
  term (no classes); the warm-up is the clean first task. The evaluated model is the average of both
  networks' predictions, as the original tests with both.

Both add 001 Eq. 11-12's EWC (generic Fisher, Eq. 7) to each network's loss, with its own Fisher and anchor.
"""

from __future__ import annotations

import numpy as np
import torch


PEER_METHODS = ("coteaching", "dividemix")


class Ensemble(torch.nn.Module):
    """The mean prediction of two pose models (DivideMix's test-time model)."""

    def __init__(self, a: torch.nn.Module, b: torch.nn.Module):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, batch: dict) -> torch.Tensor:
        return (self.a(batch) + self.b(batch)) / 2


def forget_rates(ratio: float, epochs: int) -> np.ndarray:
    """Co-teaching's R(T) per epoch: a linear ramp from 0 to ``ratio`` over the first half of the epochs
    (T_k = max(1, epochs // 2)), then ``ratio``."""
    ramp = max(1, epochs // 2)
    return np.minimum(np.arange(epochs) * ratio / ramp, ratio)


def coteaching_losses(loss_a: torch.Tensor, loss_b: torch.Tensor, forget: float) -> tuple:
    """The cross-update of one batch: (loss for A on B's small-loss samples, loss for B on A's, kept count).
    ``loss_a``/``loss_b``: per-sample losses (B,) of the two networks, with gradients."""
    keep = max(1, int(round((1.0 - forget) * loss_a.shape[0])))
    small_a = torch.argsort(loss_a.detach())[:keep]  # what A believes clean
    small_b = torch.argsort(loss_b.detach())[:keep]
    return loss_a[small_b].mean(), loss_b[small_a].mean(), keep


def dividemix_targets(gt: torch.Tensor, own: torch.Tensor, peer: torch.Tensor, clean_prob: torch.Tensor,
                      labelled: torch.Tensor) -> torch.Tensor:
    """Per-sample targets (B, 17, 3): co-refined w y + (1 - w) own for labelled rows, the co-guess
    (own + peer) / 2 for the others. ``own``/``peer`` are detached predictions; ``clean_prob`` (B,) the peer
    GMM's posterior; ``labelled`` (B,) bool."""
    w = clean_prob.view(-1, 1, 1).to(gt)
    refined = w * gt + (1 - w) * own
    guessed = (own + peer) / 2
    return torch.where(labelled.view(-1, 1, 1), refined, guessed)
