"""``agm``: Adaptive Gradient Modulation (Li et al., ICCV 2023), adapted to regression and to M modalities.

Each step, on cached features, AGM splits the fused prediction into per-modality responses with the Shapley
value of a vector game, v(S) = decode(features, S) - decode(features, {}):

    phi_m = sum over S in M \\ {m} of |S|! (M - |S| - 1)! / M! * [v(S + m) - v(S)],
    decode(features, M) = decode(features, {}) + sum_m phi_m          (efficiency: exact, not approximate)

and trains on that sum with each phi_m's gradient multiplied by k_m (identity forward, scaled backward, as
AGM's hook on the response does). With s_m a modality's score, s_bar their mean, and a running mean of every
s_m since the start of training:

    r_m  = exp(M / (M - 1) * (s_bar - s_m))               current strength (higher = stronger)
    rr_m = the same formula on the running means             reference strength
    k_m  = exp(alpha * min(rr_m - r_m, cap))

A modality that is stronger than usual is damped (k < 1), one weaker than usual is boosted. AGM's sign
convention is kept here; BalanceBenchmark flips it (research/balancing.md).
Adaptation (classification -> regression): AGM's score, the cross-entropy of softmax(phi_m), becomes the
MPJPE of decode({}) + phi_m (the prediction from modality m's response alone), divided by the mean over
modalities. Without that normalisation a loss in metres would leave every r_m near 1, and one in mm would
overflow the exponential. The empty coalition is the model's output with every modality zeroed, not 0 (a
regression head has a bias). ``cap`` is 7, the original's value for three modalities. AGM's gradient rule is
kept: when any fusion/head gradient element exceeds 1 in magnitude, the global gradient norm is clipped to 1.
Cost: 2^M decodes per step with autograd (encoders still run once).
Optimiser: the reference trains with SGD (momentum 0.9, weight decay 1e-4), and so do we by default
(``reference_optimizer``; ``poise.optim``): Adam would normalise a slowly varying k away. Each epoch's row of
``metrics.csv`` holds the mean coefficient of every modality (``agm_k_<m>``).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from poise import distributed
from poise.methods import register
from poise.methods.base import Method, Statistic
from poise.methods.responses import shapley_responses
from poise.metrics import joint_errors
from poise.errors import PoiseError


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k):
        ctx.k = k
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.k, None


def scale_grad(x: torch.Tensor, k: float) -> torch.Tensor:
    """x in the forward pass; its gradient times k in the backward pass."""
    return _ScaleGrad.apply(x, k)


def strengths(scores: dict) -> dict:
    """r_m = exp(M / (M - 1) * (mean score - s_m)); scores are losses (lower = stronger)."""
    m = len(scores)
    mean = sum(scores.values()) / m
    return {k: math.exp(m / max(m - 1, 1) * (mean - s)) for k, s in scores.items()}


def coefficients(reference: dict, current: dict, alpha: float, cap: float) -> dict:
    """k_m = exp(alpha * min(reference_m - current_m, cap))."""
    return {k: math.exp(alpha * min(reference[k] - current[k], cap)) for k in current}


@register("agm")
@dataclasses.dataclass
class AGM(Method):
    reference_optimizer = "sgd"
    statistic = Statistic("agm_k", "mean gradient coefficient k")
    alpha: float = 1.0
    cap: float = 7.0
    clip: bool = True  # AGM's gradient-norm clipping rule

    def __post_init__(self):
        if not self.alpha >= 0:
            raise PoiseError(f"agm: alpha must be >= 0, got {self.alpha}")
        if not self.cap > 0:
            raise PoiseError(f"agm: cap must be > 0 (the largest coefficient), got {self.cap}")
        self.running: dict = {}  # running mean of each score
        self.count = 0
        self.last: dict = {}
        self._sums: dict = {}  # this epoch's summed coefficients
        self._steps = 0

    def on_epoch_start(self, run) -> None:
        self._sums, self._steps = {m: 0.0 for m in run.model.modalities}, 0

    def epoch_metrics(self, run) -> dict:
        return {f"agm_k_{m}": (s / self._steps if self._steps else 1.0) for m, s in self._sums.items()}

    def predict(self, run, batch: dict, features: dict) -> torch.Tensor:
        empty, phi = shapley_responses(run.model, features)
        with torch.no_grad():
            gt = batch["gt"]
            losses = {m: float(joint_errors(empty + p, gt).mean()) for m, p in phi.items()}
            losses = distributed.all_mean(losses)  # under torchrun: the same coefficients on every rank
            mean = sum(losses.values()) / len(losses)
            scores = {m: v / max(mean, 1e-12) for m, v in losses.items()}
            self.count += 1
            for m, s in scores.items():
                self.running[m] = self.running.get(m, s) + (s - self.running.get(m, s)) / self.count
            self.last = coefficients(strengths(self.running), strengths(scores), self.alpha, self.cap)
            for m, k in self.last.items():
                self._sums[m] = self._sums.get(m, 0.0) + k
            self._steps += 1
        return empty + sum(scale_grad(p, self.last[m]) for m, p in phi.items())

    def after_backward(self, run, step) -> None:
        if not self.clip:
            return
        shared = run.model.modality_parameters()["fusion"]
        if any(p.grad is not None and p.grad.abs().max() > 1 for p in shared):
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)

    def state_dict(self) -> dict:
        return {"running": self.running, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.running, self.count = dict(state["running"]), state["count"]
