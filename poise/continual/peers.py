"""Two-network noisy-label baselines of 001 Table 2, adapted to pose regression, each with EWC per network.

- **Co-teaching** (Han et al., NeurIPS 2018, Algorithm 1): two networks; in each mini-batch each network ranks
  the samples by its own loss and keeps the ``1 - R(T)`` fraction with the smallest loss, and each network is
  updated on the samples its *peer* kept (cross-update). R(T) = min(T tau / T_k, tau) is the forget rate of
  epoch T, with tau = the noise ratio (the original's default: the true rate) and T_k = half of a task's
  epochs (the original ramps over 10 of 200 epochs; our tasks have a handful). Adapted: the per-sample loss is
  the MPJPE (001 Eq. 10) instead of cross-entropy. The first task is clean in 001's setting, so it is learnt
  without forgetting (R = 0); every later task is treated as noisy (R ramps to tau), also in a clean stream,
  since telling the two apart would need the corruption record that no strategy sees. The model that is
  evaluated is the first network (the original reports either).
- **DivideMix** (Li et al., ICLR 2020): two networks; on every task after the first, after ``warmup`` epochs on
  every sample, before each epoch each network's
  per-sample losses over the task (eval mode) are min-max normalised and split by a 2-component GMM
  (``nis.gmm_clean_mask``, the original's recipe), and each network trains on its *peer's* split
  (co-divide). Labelled (clean) samples learn the co-refined target w y + (1 - w) f(x) (w: the clean posterior;
  f(x): the network's own prediction, detached; no sharpening: that is for class distributions);
  unlabelled samples learn the co-guessed target, the mean of both networks' predictions (detached), with
  weight ``lambda_u``. Adapted: MPJPE replaces cross-entropy and the MSE on probabilities; there is no
  MixMatch/MixUp (mixing point clouds or CSI frames is not a meaningful augmentation) and no uniform-prior
  term (no classes). The evaluated model is the average of both networks' predictions, as the original tests
  with both.

In 001 Table 2 both come with EWC: the run's ``EWC`` strategy protects each network with its own Fisher and
anchor (online EWC in the bench, ``poise.continual.config.RECIPES``).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch

from poise.continual.nis import gmm_clean_mask, per_sample_losses
from poise.errors import PoiseError
from poise.methods.base import Method
from poise.metrics import sample_mpjpe
from poise.runtime import frame_batches

LOSS_BATCH = 256  # frames per batch of the co-divide's loss pass



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
    """Per-sample targets (B, *target shape): co-refined w y + (1 - w) own for labelled rows, the co-guess
    (own + peer) / 2 for the others. ``own``/``peer`` are detached predictions; ``clean_prob`` (B,) the peer
    GMM's posterior; ``labelled`` (B,) bool."""
    per_sample = (-1, *[1] * (gt.ndim - 1))
    w = clean_prob.view(per_sample).to(gt)
    refined = w * gt + (1 - w) * own
    guessed = (own + peer) / 2
    return torch.where(labelled.view(per_sample), refined, guessed)


@dataclasses.dataclass
class Peers(Method):
    """What both two-network strategies share: the second network ``peer`` (a pose model like ``run.model``
    from another initialisation, set by whoever builds the strategy), trained by the same optimiser in every
    step; the strategy's ``extra_loss`` carries both networks' losses (the fused pose loss is weighted 0)."""

    def __post_init__(self):
        self.peer: torch.nn.Module | None = None

    def modules(self) -> dict:
        if self.peer is None:
            raise RuntimeError(f"{self.name}: set .peer (a second pose model) before training")
        return {"peer": self.peer}

    def networks(self) -> dict:
        return self.modules()

    def pose_loss_weight(self, run) -> float:
        return 0.0


@dataclasses.dataclass
class CoTeaching(Peers):
    """Co-teaching (module docstring) as a continual strategy: in every batch of a task after the first, each
    network learns on the ``1 - R(T)`` fraction of samples its peer finds easiest; R ramps to ``forget_rate``
    over the first half of the task's epochs. The first task (clean in 001) trains both on every sample."""

    name: ClassVar[str] = "coteaching"
    forget_rate: float | None = None  # tau; None: the stream's noise rate (the original's default is the true one)

    def __post_init__(self):
        super().__post_init__()
        if self.forget_rate is not None and not 0.0 <= self.forget_rate < 1.0:
            raise PoiseError(f"coteaching: forget_rate must lie in [0, 1), got {self.forget_rate!r}")

    def extra_loss(self, run, step):
        gt = step.batch["gt"]
        loss_a, loss_b = run.objective.sample_loss(step.pred, gt), run.objective.sample_loss(self.peer(step.batch), gt)
        rate = float(forget_rates(self.forget_rate, run.config.epochs)[run.epoch]) if run.task else 0.0
        a, b, _ = coteaching_losses(loss_a, loss_b, rate)
        return a + b


@dataclasses.dataclass
class DivideMix(Peers):
    """DivideMix (module docstring) as a continual strategy. On every task after the first, the first
    ``warmup`` epochs train both networks on every sample (DivideMix's warm-up: a network that has never seen
    a task's data cannot tell its noisy samples from its new ones; the original warms up for 10 of 300
    epochs on CIFAR-10 and 1 on WebVision, we take 1 of a task's 5 by default); before each later epoch each
    network's per-sample losses over the task are split by a GMM, and each network learns on its peer's split.
    Tested: the mean of both networks (``test_model``). ``run.record["division"]``: the last co-divide's
    clean mask (the first network's) over ``run.train_rows``."""

    name: ClassVar[str] = "dividemix"
    lambda_u: float = 1.0
    warmup: int = 1

    def __post_init__(self):
        super().__post_init__()
        if not self.lambda_u >= 0 or self.warmup < 0:
            raise PoiseError(f"dividemix: lambda_u and warmup must be >= 0, got {self.lambda_u!r} and {self.warmup!r}")
        self.division = None  # this epoch's co-divide, over the frames ``self.rows``
        self.rows = np.zeros(0, np.int64)

    def on_epoch_start(self, run) -> None:
        self.division = None
        if not run.task or run.epoch < self.warmup:
            return
        rows = self.rows = np.sort(run.train_rows)

        def losses(net):
            return per_sample_losses(net, frame_batches(run.train, rows, LOSS_BATCH),
                                     sample_loss=run.objective.sample_loss)

        clean_a, prob_a = gmm_clean_mask(losses(run.model), seed=run.config.seed)
        clean_b, prob_b = gmm_clean_mask(losses(self.peer), seed=run.config.seed)
        self.division = (clean_a, prob_a, clean_b, prob_b)
        run.record["division"] = {"rows": np.asarray(rows), "clean": clean_a, "epoch": run.epoch}

    def extra_loss(self, run, step):
        gt, pa = step.batch["gt"], step.pred
        pb = self.peer(step.batch)
        if self.division is None:
            return run.objective.loss(pa, gt) + run.objective.loss(pb, gt)
        index = step.batch["index"]
        index = index.cpu().numpy() if torch.is_tensor(index) else np.asarray(index)
        pos = np.searchsorted(self.rows, index)  # the batch's frames among the divided ones (any epoch sampling)
        clean_a, prob_a, clean_b, prob_b = (torch.as_tensor(x[pos], device=gt.device) for x in self.division)
        loss_a = _divided_loss(pa, dividemix_targets(gt, pa.detach(), pb.detach(), prob_b, clean_b), clean_b,
                               self.lambda_u, run.objective.sample_loss)
        loss_b = _divided_loss(pb, dividemix_targets(gt, pb.detach(), pa.detach(), prob_a, clean_a), clean_a,
                               self.lambda_u, run.objective.sample_loss)
        return loss_a + loss_b

    def test_model(self, run):
        return Ensemble(run.model, self.peer)


def _divided_loss(pred, target, labelled, lambda_u: float, sample_loss=sample_mpjpe) -> torch.Tensor:
    """Mean per-sample loss (MPJPE) to the DivideMix targets, unlabelled samples weighted by ``lambda_u``."""
    weights = torch.where(labelled, torch.ones_like(labelled, dtype=pred.dtype),
                          torch.full_like(labelled, lambda_u, dtype=pred.dtype))
    return (weights * sample_loss(pred, target)).mean()
