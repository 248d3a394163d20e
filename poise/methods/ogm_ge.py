"""``ogm_ge``: On-the-fly Gradient Modulation with Generalisation Enhancement (Peng et al., CVPR 2022, Eq. 9-11),
adapted to regression and to M modalities.

Each step, after ``loss.backward()``:

    s_m   = score of modality m's unimodal output on the batch
    rho_m = s_m / mean over m' != m of s_m'
    k_m   = 1 - tanh(alpha * rho_m)  if rho_m > 1,  else 1
    g     <- k_m * g + N(0, std(g)^2)  for every weight tensor g of m's encoder (GE; std of the unmodulated g)

Adaptation (classification -> regression): OGM-GE's score, the summed softmax probability of the true class,
becomes the Pearson profit (sum over the target's coordinates, 51 for a pose, of r along the batch, 001 Eq. 2) of the unimodal
output ``decode(features, {m})`` (the other modalities zeroed at the feature level, no extra heads), floored
at 1e-3 so a collapsed modality has a small positive score. For M > 2 each modality is compared with the mean
of the others (the maintainer's suggestion in OGM-GE issue #16). As in the original, k uses tanh(alpha*rho), so
it drops to 1 - tanh(alpha) just above rho = 1; only modalities with rho > 1 are damped; the GE noise goes on
every encoder's weight tensors (dim > 1), damped or not. ``window`` limits modulation to the first epochs
(0 = all).
Optimiser: the reference trains with SGD (momentum 0.9, weight decay 1e-4), and so do we by default
(``reference_optimizer``; ``poise.optim``). Under Adam a gradient scale that changes slowly is normalised away
(a constant k = 0.3 leaves Adam's step unchanged), so only the GE noise would act.
Each epoch's row of ``metrics.csv`` holds the mean coefficient of every modality (``ogm_ge_k_<m>``).
No step waits for the device: scores, ratios and coefficients stay 0-d float64 tensors where the model is
(``torch.where`` in place of the ``rho > 1`` test), and the summed coefficients are read once, at the epoch's end.
"""

from __future__ import annotations

import dataclasses

import torch

from poise import distributed
from poise.contrib.profits import pearson_tensor
from poise.methods import register
from poise.methods.base import Method, Statistic
from poise.errors import PoiseError

SCORE_FLOOR = 1e-3


def coefficients(scores: dict, alpha: float) -> dict:
    """k_m for each modality from its score (OGM-GE Eq. 10 with the one-vs-mean-of-others ratio). Scores are
    numbers or 0-d tensors; each k_m is a 0-d float64 tensor on their device (nothing is read on the host)."""
    floored = {m: torch.as_tensor(s, dtype=torch.float64).clamp_min(SCORE_FLOOR) for m, s in scores.items()}
    out = {}
    for m, s in floored.items():
        others = [v for o, v in floored.items() if o != m]
        if not others:
            out[m] = torch.ones_like(s)
            continue
        rho = s / (sum(others) / len(others))
        out[m] = torch.where(rho > 1, 1.0 - torch.tanh(alpha * rho), 1.0)
    return out


@register("ogm_ge")
@dataclasses.dataclass
class OGMGE(Method):
    reference_optimizer = "sgd"
    statistic = Statistic("ogm_ge_k", "mean gradient coefficient k")
    alpha: float = 0.3
    ge: bool = True  # add the generalisation-enhancement noise
    window: int = 0  # epochs with modulation; 0 = every epoch

    def __post_init__(self):
        if not self.alpha >= 0:
            raise PoiseError(f"ogm_ge: alpha must be >= 0, got {self.alpha}")
        if self.window < 0:
            raise PoiseError(f"ogm_ge: window must be an epoch count >= 0 (0: every epoch), got {self.window}")
        self.last: dict = {}  # the last step's coefficients (0-d tensors), for logging and tests
        self._sums: dict = {}  # this epoch's summed coefficients (0-d tensors once a step has run)
        self._steps = 0

    @torch.no_grad()
    def scores(self, run, step) -> dict:
        features = {m: f.detach() for m, f in step.features.items()}
        gt = step.batch["gt"]
        scores = {m: pearson_tensor(gt, run.model.decode(features, (m,))) for m in run.model.modalities}
        return distributed.all_mean(scores)  # under torchrun: the same coefficients on every rank

    def modulate(self, model, k: dict) -> None:
        """Scale each encoder's gradients by k_m (a number or a 0-d tensor), then add the GE noise (std of the
        unmodulated gradient)."""
        groups = model.modality_parameters()
        for m, factor in k.items():
            for p in groups[m]:
                if p.grad is None:
                    continue
                std = p.grad.std() if (self.ge and p.grad.dim() > 1 and p.grad.numel() > 1) else None
                p.grad.mul_(factor)
                if std is not None:
                    p.grad.add_(torch.randn_like(p.grad) * std)

    def on_epoch_start(self, run) -> None:
        self._sums, self._steps = {m: 0.0 for m in run.model.modalities}, 0

    def after_backward(self, run, step) -> None:
        if self.window and run.epoch >= self.window:
            return
        self.last = coefficients(self.scores(run, step), self.alpha)
        self.modulate(run.model, self.last)
        for m, k in self.last.items():
            self._sums[m] += k
        self._steps += 1

    def epoch_metrics(self, run) -> dict:
        return {f"ogm_ge_k_{m}": (float(s) / self._steps if self._steps else 1.0) for m, s in self._sums.items()}
