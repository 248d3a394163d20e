"""``arl``: Asymmetric Representation Learning (paper 002, first abstract; Wei et al., ICCV 2025), adapted to
regression and to M modalities.

ARL's argument: for a fused output ``f = sum_m w_m s_m`` with ``sum w = 1`` and uncorrelated branch errors,
``Var(f) = sum_m w_m^2 Var(s_m)`` is smallest at ``w_m ~ 1 / Var(s_m)``, so the model's *dependence* on a
modality should be inversely proportional to its prediction variance, not equal. Each step:

    y_m   = modality m's own prediction: its own linear head (``heads: own``, the default) or the shared fusion
            and head with the features x M (``heads: shared``, no extra parameters)
    v_m   = EMA of the batch variance of y_m - y, averaged over the 51 coordinates       (variance; "Eq. 17")
    d_m   = EMA of mean |phi_m|, phi_m modality m's Shapley share of decode(z) - decode({})   (dependence; "Eq. 4")
    h_m   = max(v_m / sum v, 0.6 / M);  q = (1/h) / sum(1/h);  d^ = d / sum d
    k     = softmax(T * q / d^)                       (the modality under-used for its precision gets the larger k)
    g_m  <- (1 + k_m) g_m   for every gradient of encoder m        (the "gradient residual"; after ``warmup``)
    L     = MPJPE(decode(z)) + gamma * 2/M * sum_m MPJPE(y_m)      (the unimodal bias regulariser; weight 2/M in
                                                                    the warm-up epochs)

How it follows the reference (``research/related_methods.md`` sec. 1): the released script never applies its
coefficients (they are printed; both encoders get a constant 1.5x), so this implements the paper's description
with the reference's formulas (the 0.3 entropy-share floor at M = 2 becomes 0.6 / M; the crossing of
dependence and inverse variance in its softmax ranks modalities exactly as ``q / d^``); SGD with momentum 0.9
and weight decay 1e-4 (``reference_optimizer``; under Adam a slowly varying (1 + k) is normalised away).
Adapted to regression (all ours):
- Unimodal outputs: plain zero-padding through the shared head would pull a concat model's fused output
  towards M times the pose offset. ``heads: shared`` decodes them with the features x M, which is
  consistent but pins the fused output to the unimodal outputs' *equal-weight* mean, the opposite of ARL's
  aim (measured on the demo data: dependence shares 0.29 / 0.29 / 0.18 / 0.25 against error spreads of
  40 / 63 / 127 / 109 mm). So by default each modality has its own linear head (``heads: own``, a module
  the method owns, like G-Blending's), which breaks ARL's "no extra parameters" but leaves the fused head
  free to depend on the modalities unequally.
- The variance is that of each unimodal error after removing its batch mean (the bias), the textbook
  inverse-variance weighting ARL's theory asks for; the classification reference uses softmax entropy as its
  proxy. The dependence is the exact Shapley split of the prediction offset, without the mean pose (the
  reference's |logits| include the bias, which in regression would make every d equal).
- gamma = 4 (the paper's value for every dataset) is applied as gamma * 2 / M per modality, which keeps the
  two-modality reference's unimodal-to-fused weight; T = 1 here orders and separates the coefficients about
  as the reference's T = 4 (its softmax arguments are about d_a d_v ~ 1/4 of ours near balance).
- The reference's gradient-norm clipping at 40 never triggers for a loss in metres and is left out.
Each epoch's row of ``metrics.csv`` holds every modality's mean coefficient ``arl_k_<m>``, its unimodal
error spread ``arl_sd_mm_<m>`` (sqrt of v, mm) and its dependence share ``arl_dep_<m>``.
No step waits for the device: the batch statistics, their EMAs and the coefficients are 0-d float64 tensors where
the model is (``torch.where`` for the shares' zero-total fallbacks), read once, at the epoch's end (a checkpoint
reads the EMAs as numbers).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from poise import distributed
from poise.methods import register
from poise.methods.base import Method, Statistic, set_param
from poise.methods.responses import HEADS, UnimodalHeads, shapley_responses, unimodal_outputs
from poise.errors import PoiseError


def coefficients(variance: dict, dependence: dict, temperature: float) -> dict:
    """k_m = softmax over modalities of T * (inverse-variance share / dependence share). The statistics are
    numbers or 0-d tensors; each k_m is a 0-d float64 tensor on their device (nothing is read on the host)."""
    m = len(variance)
    variance = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in variance.items()}
    dependence = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in dependence.items()}
    total_v = sum(variance.values())
    share = {k: torch.where(total_v > 0, v / total_v, 1 / m).clamp_min(0.6 / m) for k, v in variance.items()}
    inverse = {k: 1 / s for k, s in share.items()}
    q = {k: w / sum(inverse.values()) for k, w in inverse.items()}
    total_d = sum(dependence.values())
    d = {k: torch.where(total_d > 0, v / total_d, 1 / m).clamp_min(1e-6) for k, v in dependence.items()}
    logits = torch.stack([temperature * q[k] / d[k] for k in variance])
    return dict(zip(variance, torch.softmax(logits, 0).unbind()))


@register("arl")
@dataclasses.dataclass
class ARL(Method):
    reference_optimizer = "sgd"
    reference_lr = 0.1  # SGD's 0.3 diverges; chosen on the held-out sequences (docs/bench.md)
    statistic = Statistic("arl_k", "mean coefficient k (gradients x (1 + k))")
    smoke_params = {"warmup": 1}
    smoke_epochs = 3
    gamma: float = 4.0  # unimodal loss weight (paper: 4 on every dataset), applied as gamma * 2 / M
    temperature: float = 1.0  # T; ours 1 ~ the reference's 4 (see the docstring)
    warmup: int = 2  # epochs with unimodal weight 1 and no scaling (reference: 5 of 100)
    momentum: float = 0.9  # of the EMAs of variance and dependence
    heads: str = "own"  # unimodal outputs: own linear heads, or the shared head with features x M

    def __post_init__(self):
        if self.heads not in HEADS:
            raise PoiseError(f"arl: heads must be one of {', '.join(HEADS)}, got {self.heads!r}")
        self.unimodal_heads: UnimodalHeads | None = None
        if not self.gamma >= 0:
            raise PoiseError(f"arl: gamma must be >= 0 (the unimodal loss weight), got {self.gamma}")
        if not self.temperature >= 0:
            raise PoiseError(f"arl: temperature must be >= 0, got {self.temperature}")
        if self.warmup < 0:
            raise PoiseError(f"arl: warmup must be an epoch count >= 0, got {self.warmup}")
        if not 0 <= self.momentum < 1:
            raise PoiseError(f"arl: momentum must be in [0, 1), got {self.momentum}")
        self.variance: dict = {}  # EMAs, 0-d tensors once a step has run (numbers after a resume until then)
        self.dependence: dict = {}
        self.last: dict = {}  # this step's coefficients k (0-d tensors)
        self._sums: dict = {}
        self._steps = 0

    def setup(self, run) -> None:
        if self.warmup >= run.config.epochs:
            raise PoiseError(f"arl: warmup={self.warmup} covers the whole run of {run.config.epochs} epochs, so no "
                             f"gradient is ever scaled; {set_param('warmup', 'warmup < epochs')}")
        if self.heads == "own":
            self.unimodal_heads = UnimodalHeads(run.model, run.config.seed)

    def modules(self) -> dict:
        return {"arl_heads": self.unimodal_heads} if self.unimodal_heads is not None else {}

    def active(self, run) -> bool:
        return run.epoch >= self.warmup

    def _ema(self, store: dict, values: dict) -> None:
        for k, v in values.items():
            store[k] = v if k not in store else self.momentum * store[k] + (1 - self.momentum) * v

    @torch.no_grad()
    def update(self, run, features: dict, unimodal: dict, gt: torch.Tensor) -> dict:
        """Update the EMAs from this batch and return the coefficients k."""
        variance = {m: (y.detach() - gt).reshape(len(gt), -1).var(0, unbiased=False).mean().double()
                    for m, y in unimodal.items()}
        _, phi = shapley_responses(run.model, {m: f.detach() for m, f in features.items()})
        dependence = {m: p.abs().mean().double() for m, p in phi.items()}
        stats = distributed.all_mean({**{("v", m): v for m, v in variance.items()},
                                      **{("d", m): d for m, d in dependence.items()}})
        self._ema(self.variance, {m: stats[("v", m)] for m in variance})
        self._ema(self.dependence, {m: stats[("d", m)] for m in dependence})
        return coefficients(self.variance, self.dependence, self.temperature)

    def on_epoch_start(self, run) -> None:
        self._sums, self._steps = {m: 0.0 for m in run.model.modalities}, 0

    def extra_loss(self, run, step):
        unimodal = unimodal_outputs(run.model, step.features, self.unimodal_heads)
        gt = step.batch["gt"]
        self.last = self.update(run, step.features, unimodal, gt)
        weight = (self.gamma if self.active(run) else 1.0) * 2 / len(unimodal)
        return weight * sum(run.objective.loss(y, gt) for y in unimodal.values())

    def after_backward(self, run, step) -> None:
        if not self.active(run):
            return
        groups = run.model.modality_parameters()
        for m, k in self.last.items():
            for p in groups[m]:
                if p.grad is not None:
                    p.grad.mul_(1 + k)
            self._sums[m] = self._sums.get(m, 0.0) + k
        self._steps += 1

    def epoch_metrics(self, run) -> dict:
        row = {f"arl_k_{m}": (float(s) / self._steps if self._steps else 0.0) for m, s in self._sums.items()}
        state = self.state_dict()  # the EMAs as numbers
        variance, dependence = state["variance"], state["dependence"]
        total_d = sum(dependence.values()) or 1.0
        for m in run.model.modalities:
            row[f"{run.objective.named('arl_sd')}_{m}"] = math.sqrt(variance.get(m, 0.0)) * run.objective.scale
            row[f"arl_dep_{m}"] = dependence.get(m, 0.0) / total_d
        return row

    def state_dict(self) -> dict:
        return {"variance": {m: float(v) for m, v in self.variance.items()},
                "dependence": {m: float(v) for m, v in self.dependence.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.variance, self.dependence = dict(state["variance"]), dict(state["dependence"])
