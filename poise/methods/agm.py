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
No step waits for the device: the scores, their running means and the coefficients are 0-d float64 tensors where
the model is, the clipping rule's test is a tensor (a coefficient of 1 when it does not fire), and the summed
coefficients are read once, at the epoch's end (a checkpoint reads the running means as numbers).
"""

from __future__ import annotations

import dataclasses

import torch

from poise import distributed
from poise.methods import register
from poise.methods.base import Method, Statistic
from poise.methods.responses import shapley_responses
from poise.errors import PoiseError


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k):
        ctx.k = k
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.k, None


def scale_grad(x: torch.Tensor, k) -> torch.Tensor:
    """x in the forward pass; its gradient times k (a number or a 0-d tensor) in the backward pass."""
    return _ScaleGrad.apply(x, k)


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def strengths(scores: dict) -> dict:
    """r_m = exp(M / (M - 1) * (mean score - s_m)); scores are losses (lower = stronger), numbers or 0-d tensors;
    each r_m is a 0-d float64 tensor."""
    m = len(scores)
    mean = sum(scores.values()) / m
    return {k: torch.exp(m / max(m - 1, 1) * (mean - _f64(s))) for k, s in scores.items()}


def coefficients(reference: dict, current: dict, alpha: float, cap: float) -> dict:
    """k_m = exp(alpha * min(reference_m - current_m, cap)), each a 0-d float64 tensor."""
    return {k: torch.exp(alpha * (_f64(reference[k]) - current[k]).clamp_max(cap)) for k in current}


def clip_when_large(parameters, shared) -> None:
    """AGM's rule: when any gradient element of ``shared`` exceeds 1 in magnitude, clip the global gradient norm
    of ``parameters`` to 1 (what ``clip_grad_norm_(parameters, 1.0)`` does: the 2-norm of the per-tensor norms,
    then every gradient times min(1 / (norm + 1e-6), 1)). Decided on the device: when the rule does not fire, the
    norm is taken as 0, whose factor is exactly 1, so the gradients are unchanged."""
    fires = [p.grad.abs().max() > 1 for p in shared if p.grad is not None]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not fires or not grads:
        return
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    factor = (1.0 / (torch.where(torch.stack(fires).any(), total, torch.zeros_like(total)) + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(factor)


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
        self.running: dict = {}  # running mean of each score (0-d tensors once a step has run)
        self.count = 0
        self.last: dict = {}
        self._sums: dict = {}  # this epoch's summed coefficients
        self._steps = 0

    def on_epoch_start(self, run) -> None:
        self._sums, self._steps = {m: 0.0 for m in run.model.modalities}, 0

    def epoch_metrics(self, run) -> dict:
        return {f"agm_k_{m}": (float(s) / self._steps if self._steps else 1.0) for m, s in self._sums.items()}

    def predict(self, run, batch: dict, features: dict) -> torch.Tensor:
        empty, phi = shapley_responses(run.model, features)
        with torch.no_grad():
            gt = batch["gt"]
            # MPJPE (joint_errors' mean, without its finiteness check: a host read), in float64 as a number would be
            losses = {m: torch.linalg.vector_norm(empty + p - gt, dim=-1).mean().double() for m, p in phi.items()}
            losses = distributed.all_mean(losses)  # under torchrun: the same coefficients on every rank
            mean = sum(losses.values()) / len(losses)
            scores = {m: v / mean.clamp_min(1e-12) for m, v in losses.items()}
            self.count += 1
            for m, s in scores.items():
                self.running[m] = self.running.get(m, s) + (s - self.running.get(m, s)) / self.count
            self.last = coefficients(strengths(self.running), strengths(scores), self.alpha, self.cap)
            for m, k in self.last.items():
                self._sums[m] = self._sums.get(m, 0.0) + k
            self._steps += 1
        return empty + sum(scale_grad(p, self.last[m]) for m, p in phi.items())

    def after_backward(self, run, step) -> None:
        if self.clip:
            clip_when_large(run.model.parameters(), run.model.modality_parameters()["fusion"])

    def state_dict(self) -> dict:
        return {"running": {m: float(v) for m, v in self.running.items()}, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.running, self.count = dict(state["running"]), state["count"]
