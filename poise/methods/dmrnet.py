"""``dmrnet``: Decoupled Multimodal Representation Network (paper 002's robustness list; Wei et al., "Robust
Multimodal Learning via Representation Decoupling", ECCV 2024), adapted to pose regression with M = 4.

    combination   one of the 2^M - 1 non-empty ones per training sample, uniformly (modality dropout, p = 0.5)
    h             the fusion's output for the sample's combination
    mu, log s^2   BN(Linear(h)), BN(Linear(h))                        (probabilistic multimodal embedding, PME)
    z             mu + eps * s in training, mu in evaluation           (the head reads z)
    L             MPJPE(head(z)) + alpha * KL(N(mu, s^2) || N(0, I)) + beta * HCR
    KL            sum over dimensions of (s^2 + mu^2 - log s^2 - 1) / 2, mean over the batch
    HCR           sum of the per-sample MPJPE of the samples whose combination is hard, divided by B

The hard combinations are chosen once, at the end of the warm-up (``warmup`` epochs; the reference: epochs 0-5):
the ``hard`` non-full combinations with the largest mean s^2 over the warm-up (mean over the embedding's
dimensions, then over every sample of that combination); ``by=loss`` ranks them by their mean training MPJPE
instead, which the reference's 3-modality code logs beside s^2 and which measures hardness directly. The reference compares the two single-modality
combinations (2 modalities) or hard-codes three of seven (3 modalities); ranking all 14 non-full ones and
taking M - 1 = 3 generalises both. Sums and counts are accumulated separately: the reference's per-batch mean
is 0/0 = NaN for a combination absent from a batch, which then poisons its accumulated variance (with 15
combinations at batch 32 that is 11 % of the batches).

Adaptation to regression (ours): the loss is MPJPE instead of cross-entropy, and HCR is extra MPJPE weight on
the hard combinations' samples (the reference's ``auxi_out`` is the same head on the same sample, so its HCR is
extra CE weight in the same way). The PME lives in the model (``PoseModel.embedding``: evaluation and
``poise robust`` read mu through it). Note the identity for a linear head and a squared loss:
E ||W(mu + eps s) + b - y||^2 = ||W mu + b - y||^2 + sum_j s_j^2 ||W_:,j||^2, so PME is the deterministic loss
plus a variance-weighted ridge on the head; the paper's direction argument is one about classifiers, and gains
should be expected to be smaller here. The reference trains with SGD (lr 1e-3, momentum 0.9); PME scales no
gradient, so poise's default optimiser (Adam), shared with the baseline it is compared to, is kept.
Hyper-parameters are the reference's: alpha 1e-3, beta 0.25 (its scripts use 0.2-0.3), warm-up 6 epochs.
The warm-up's per-combination sums are float64 tensors on the device (``index_add_``: on a GPU in no fixed order,
so their last bits may vary, unless ``deterministic: true``), read once per epoch, and the hard combinations are
put on the device once; what a step still reads on the host is the masks' redraw (``modality_dropout.draw_masks``,
on CPU tensors).
"""

from __future__ import annotations

from typing import ClassVar

import dataclasses

import numpy as np
import torch
from torch import nn

from poise import distributed
from poise.methods import register
from poise.methods.base import Method, set_param
from poise.methods.modality_dropout import (check_drop, check_non_negative, combination_index,
                                              combination_name, sample_masks)
from poise.errors import PoiseError


class ProbabilisticEmbedding(nn.Module):
    """DMRNet's PME: mean and log-variance of the representation the head reads; its ``forward`` is the mean
    (what evaluation reads)."""

    def __init__(self, dim: int):
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim))
        self.logvar = nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim))

    def moments(self, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mu(fused), self.logvar(fused)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.mu(fused)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over dimensions, mean over the batch."""
    return (0.5 * (logvar.exp() + mu.square() - logvar - 1)).sum(1).mean()


def hard_combinations(total: np.ndarray, count: np.ndarray, k: int) -> list[int]:
    """The ``k`` combinations (indices 1..2^M - 2, the full one excluded) with the largest mean ``total / count``
    (variance or loss) among those seen at least once, in index order."""
    full = len(count) - 1
    seen = [c for c in range(1, full) if count[c] > 0]
    return sorted(sorted(seen, key=lambda c: -total[c] / count[c])[:k])


HARDNESS = ("variance", "loss")


@register("dmrnet")
@dataclasses.dataclass
class DMRNet(Method):
    needs: ClassVar[tuple] = ("absent handling", "stages", "installable parts")
    smoke_params = {"warmup": 3}  # cut inside the warm-up
    smoke_epochs = 4
    smoke_cut = 2
    smoke_fusion = "mlp"
    alpha: float = 1e-3  # weight of the KL term
    beta: float = 0.25  # weight of the hard-combination regulariser (HCR)
    warmup: int = 6  # epochs of variance accumulation before the hard combinations are chosen
    hard: int = 0  # how many hard combinations (0: M - 1)
    p: float = 0.5  # modality dropout (0.5: the uniform draw over non-empty combinations, the reference's)
    by: str = "variance"  # what makes a combination hard: its mean s^2 (the reference) or its mean MPJPE
    absent: str = "zero"  # what an absent modality is (PoseModel.absent): zeros as the reference, or rescale

    def __post_init__(self):
        check_drop(self.name, self.p)
        if self.warmup < 1:
            raise PoiseError(f"dmrnet: warmup must be >= 1 epoch (the hard combinations are chosen from it), got {self.warmup}")
        check_non_negative(self, "alpha", "beta", "hard")
        if self.by not in HARDNESS:
            raise PoiseError(f"dmrnet: by={self.by!r}: choose one of {', '.join(HARDNESS)}")
        self.hard_set: list[int] = []
        self.variance_sum = self.loss_sum = self.count = None  # over the warm-up so far, all ranks
        self._epoch = None  # this epoch's (variance, loss, count) sums on this rank: float64, on the device
        self._step = None
        self._hard = (None, None)  # (hard_set, the same as a tensor on the device): made once, not per step

    def setup(self, run) -> None:
        if self.beta and self.warmup >= run.config.epochs:
            raise PoiseError(f"dmrnet: warmup={self.warmup} leaves no epoch for the hard-combination regulariser in "
                             f"a run of {run.config.epochs} epochs; {set_param('warmup', 'warmup < epochs')}, "
                             "or beta=0")
        n = 2 ** len(run.model.modalities)
        self.variance_sum, self.loss_sum, self.count = np.zeros(n), np.zeros(n), np.zeros(n)
        self._epoch = torch.zeros((3, n), dtype=torch.float64)  # moved to the batches' device at the first step
        run.model.set_absent(self.absent)
        run.model.install("embedding", ProbabilisticEmbedding(run.model.fusion.out_dim))

    def predict(self, run, batch: dict, features: dict):
        model = run.model
        mask = sample_masks(model, features, self.p)
        mu, logvar = model.embedding.moments(model.fuse(features, mask))
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        self._step = (combination_index(mask), mu, logvar)
        return model.regress(z)

    def extra_loss(self, run, step):
        combination, mu, logvar = self._step
        loss = self.alpha * gaussian_kl(mu, logvar)
        if run.epoch < self.warmup:  # each sample's s^2, MPJPE and 1 added to its combination's sums, in order
            variance = logvar.detach().exp().mean(1).double()
            error = run.objective.sample_loss(step.pred, step.batch["gt"]).detach().double()
            self._epoch = self._epoch.to(combination.device)  # a no-op after the first step
            self._epoch.index_add_(1, combination, torch.stack([variance, error, torch.ones_like(variance)]))
        elif self.hard_set and self.beta:
            if self._hard[0] != self.hard_set or self._hard[1].device != combination.device:
                self._hard = (list(self.hard_set), torch.tensor(self.hard_set, device=combination.device))
            hard = torch.isin(combination, self._hard[1])
            loss = loss + self.beta * (run.objective.sample_loss(step.pred, step.batch["gt"]) * hard).sum() / len(hard)
        return loss

    def on_epoch_end(self, run) -> None:
        if run.epoch < self.warmup:  # this epoch's sums of every rank join the totals (the same on every rank)
            variance, loss, count = np.array(distributed.all_sum(self._epoch.reshape(-1).tolist())).reshape(3, -1)
            self.variance_sum, self.loss_sum, self.count = self.variance_sum + variance, self.loss_sum + loss, self.count + count
            self._epoch.zero_()
        if run.epoch == self.warmup - 1:
            hardness = self.variance_sum if self.by == "variance" else self.loss_sum
            k = self.hard or len(run.model.modalities) - 1
            self.hard_set = hard_combinations(hardness, self.count, k)

    def epoch_metrics(self, run) -> dict:
        combination, mu, logvar = self._step
        row = {"dmrnet_sigma2": float(logvar.detach().exp().mean())}
        if self.hard_set:
            row["dmrnet_hard"] = " ".join(combination_name(c, run.model.modalities) for c in self.hard_set)
        return row

    def state_dict(self) -> dict:
        return {"hard_set": list(self.hard_set), "variance_sum": self.variance_sum.tolist(),
                "loss_sum": self.loss_sum.tolist(), "count": self.count.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.hard_set = list(state["hard_set"])
        self.variance_sum, self.count = np.array(state["variance_sum"]), np.array(state["count"])
        self.loss_sum = np.array(state["loss_sum"])
