"""``arm``: Asymmetric Reinforcing against Multi-modal representation bias (paper 004; Gao et al., AAAI 2025),
adapted to regression and to M modalities.

ARM values each modality by mutual information: its information about the target (MI) and what it adds given
the other modalities (conditional MI, CMI), and reinforces the weak modalities at the feature level without
degrading the dominant one. What ARM's released code trains (``research/related_methods.md`` sec. 7.2) is a
dynamic feature-level fusion: each modality's features enter the fusion multiplied by
``c_other / c_self``, where

    c_m = p_fused * MI_m + p_other * (MI_m - CMI_m)

with p the accuracy of a branch and MI_m - CMI_m the information m shares with the other modality. Here, on
each training batch (no gradient flows through any of it):

    y_m     = modality m alone through the shared head (``responses.unimodal_predictions``), y_f = decode(z)
    MI_m    = I(y_m; y),   CMI_m = I(y_m; y | y_others)        (Gaussian, ``poise.contrib.information``)
    p_b     = the mean over coordinates of corr(y_b, y)^2      (the fraction of the pose's variance branch b
                                                                follows: the regression analogue of accuracy)
    c_m     = max(p_f MI_m + mean_{j != m} p_j * (MI_m - CMI_m), 1e-3)
    w_m     = mean_{j != m} c_j / c_m / G,  clipped to [1 / max_gain, max_gain]
              (G: the geometric mean of these ratios, so the weights' product is 1; for M = 2 exactly the
              reference's c_other / c_self, whose product is 1 already)
    gain_m <- momentum * gain_m + (1 - momentum) * w_m

``gain`` is the model's ``modality_gain`` buffer, which ``decode`` applies to the features before fusion: it is
saved with the model and used unchanged at evaluation, so predictions never depend on test labels or on the
test batch. (The reference computes its weights from the evaluation batch's labels at test time, and its
histogram CMI estimator is wrong; sec. 7.5.)
Adapted to regression (ours): the Gaussian MI/CMI of predictions and pose replaces the histogram estimates
on flattened features; the weights are normalised to product 1 for M > 2 (as they are at M = 2), and clipped
because a modality with no information would get an unbounded gain; the squared correlation replaces the mean true-class probability; for M > 2 "the
other modality" becomes the mean over the others; the weights move by an EMA instead of jumping per batch, so
that the last training steps and evaluation see the same gains.
Not implemented: the paper's balanced min-max loss and sample-level re-sampling, which its released code
does not contain and whose equations are not public; this is the released mechanism only.
Optimiser: SGD with momentum 0.9 and weight decay 1e-4, as the reference config (``reference_optimizer``).
Each epoch's row of ``metrics.csv`` holds every modality's gain ``arm_gain_<m>`` at the epoch's end and its
mean ``arm_mi_<m>`` and ``arm_cmi_<m>`` (nats, summed over the 51 coordinates).
No step waits for the device: MI, CMI, p, c and w are 0-d float64 tensors where the model is, the gains move on
the device, and the summed MI and CMI are read once, at the epoch's end.
"""

from __future__ import annotations

from typing import ClassVar

import dataclasses

import torch

from poise import distributed
from poise.contrib.information import correlations, gaussian_cmi, gaussian_mi
from poise.methods import register
from poise.methods.base import Method, Statistic
from poise.methods.responses import unimodal_predictions
from poise.errors import PoiseError

FLOOR = 1e-3


def explained(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean over coordinates of corr(y_hat, y)^2 along the batch, in [0, 1] (a 0-d float64 tensor)."""
    return correlations(y_hat, y)[:, 0, 1].square().mean()


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def contributions(mi: dict, cmi: dict, p: dict, p_fused) -> dict:
    """c_m = p_fused MI_m + mean_{j != m} p_j (MI_m - CMI_m), floored at 1e-3: numbers or 0-d tensors in, 0-d
    float64 tensors out."""
    out = {}
    for m in mi:
        others = [p[j] for j in p if j != m]
        p_other = sum(others) / len(others) if others else 0.0
        out[m] = _f64(p_fused * mi[m] + p_other * (mi[m] - cmi[m])).clamp_min(FLOOR)
    return out


def fusion_weights(c: dict, max_gain: float) -> dict:
    """w_m = mean_{j != m} c_j / c_m, divided by the weights' geometric mean (their product is 1, as the
    reference's two weights' is), then clipped to [1 / max_gain, max_gain]; each a 0-d float64 tensor."""
    c = {m: _f64(v) for m, v in c.items()}
    if len(c) == 1:
        return {m: torch.ones_like(v) for m, v in c.items()}
    raw = {m: sum(c[j] for j in c if j != m) / (len(c) - 1) / c[m] for m in c}
    mean_log = sum(torch.log(w) for w in raw.values()) / len(raw)
    return {m: (w / torch.exp(mean_log)).clamp(1 / max_gain, max_gain) for m, w in raw.items()}


@register("arm")
@dataclasses.dataclass
class ARM(Method):
    needs: ClassVar[tuple] = ("modality gain",)
    reference_optimizer = "sgd"
    reference_lr = 0.1  # SGD's 0.3 diverges; chosen on the held-out sequences (docs/bench.md)
    statistic = Statistic("arm_gain", "feature gain at the end", over="last")
    momentum: float = 0.9  # of the gains' EMA, per step
    max_gain: float = 10.0

    def __post_init__(self):
        if not 0 <= self.momentum < 1:
            raise PoiseError(f"arm: momentum must be in [0, 1), got {self.momentum}")
        if not self.max_gain >= 1:
            raise PoiseError(f"arm: max_gain must be >= 1 (gains are clipped to [1/max_gain, max_gain]), got "
                             f"{self.max_gain}")
        self._sums: dict = {}
        self._steps = 0

    def setup(self, run) -> None:
        per_rank = run.config.batch_size // distributed.world()
        need = len(run.model.modalities) + 2  # a correlation matrix of M + 1 variables per coordinate
        if per_rank < need:
            raise PoiseError(f"arm estimates Gaussian information on each batch and needs at least {need} frames "
                             f"per batch and process; batch_size {run.config.batch_size} over "
                             f"{distributed.world()} process(es) gives {per_rank}: raise the config key "
                             f"'batch_size'")

    @torch.no_grad()
    def information(self, model, features: dict, fused: torch.Tensor, gt: torch.Tensor) -> tuple:
        """MI_m, CMI_m, p_m and p_fused on one batch (0-d float64 tensors)."""
        unimodal = unimodal_predictions(model, {m: f.detach() for m, f in features.items()})
        mi = {m: gaussian_mi(y, gt) for m, y in unimodal.items()}
        cmi = {m: gaussian_cmi(y, gt, [unimodal[j] for j in unimodal if j != m]) for m, y in unimodal.items()}
        p = {m: explained(y, gt) for m, y in unimodal.items()}
        return mi, cmi, p, explained(fused.detach(), gt)

    @torch.no_grad()
    def after_backward(self, run, step) -> None:
        model = run.model
        mi, cmi, p, p_fused = self.information(model, step.features, step.pred, step.batch["gt"])
        stats = distributed.all_mean({**{("mi", m): v for m, v in mi.items()}, **{("cmi", m): v for m, v in cmi.items()},
                                      **{("p", m): v for m, v in p.items()}, "p_fused": p_fused})
        mi, cmi, p = ({m: stats[(k, m)] for m in model.modalities} for k in ("mi", "cmi", "p"))
        w = fusion_weights(contributions(mi, cmi, p, stats["p_fused"]), self.max_gain)
        target = torch.stack([w[m] for m in model.modalities]).to(model.modality_gain)
        model.modality_gain.mul_(self.momentum).add_((1 - self.momentum) * target)
        for m in model.modalities:
            self._sums[("mi", m)] = self._sums.get(("mi", m), 0.0) + mi[m]
            self._sums[("cmi", m)] = self._sums.get(("cmi", m), 0.0) + cmi[m]
        self._steps += 1

    def on_epoch_start(self, run) -> None:
        self._sums, self._steps = {}, 0

    def epoch_metrics(self, run) -> dict:
        row = {f"arm_gain_{m}": float(g) for m, g in zip(run.model.modalities, run.model.modality_gain)}
        row.update({f"arm_{k}_{m}": float(s) / max(self._steps, 1) for (k, m), s in self._sums.items()})
        return row
