"""``lsi``: the logarithmic-Sobolev-inequality (functional-entropy) regulariser of paper 003 (Das et al.,
visible/thermal pedestrian detection), in the estimator of Gat et al. (NeurIPS 2020) that 003 builds on,
adapted to regression and to M modalities.

For a positive function f of Gaussian inputs, the log-Sobolev inequality bounds f's functional entropy by its
functional Fisher information, ``Ent(f) <= 1/2 E[ ||grad f||^2 / f ]``: how much of f's variation a
perturbation of one input explains. 003 models each modality's input to the fusion as Gaussian and
regularises so that the modalities contribute equally to the fused output. Each step:

    z~_m  = z_m + sigma_m * eps_m,  eps_m ~ N(0, I),  sigma_m = the batch std of z_m per feature,
            ``n_samples`` draws per frame, every modality perturbed at once
    f     = ||decode(z~) - decode(z)||^2 per frame            (label-free consistency, Gat et al.'s "inf_loss")
    I_m   = mean over frames and draws of ||d f / d eps_m||^2 / f       (modality m's Fisher-information bound)
    reg   = KL(uniform || I / sum I) = (1/M) sum_m log((1/M) / s_m)      (``form: balance``, the default)
       or = || (1 / I_1, ..., 1 / I_M) ||_2                              (``form: max_ent``, Gat et al.'s)
    L     = MPJPE + delta * reg

``balance`` is 0 exactly when every modality's share of the information is 1/M and grows without bound as one
share goes to 0: 003's stated aim ("equally weight feature contributions"), free of units, so delta is a
plain weight against the MPJPE in metres. ``max_ent`` is Gat et al.'s form; it also grows when every I is
small, and its scale depends on the features' units.
Adapted to regression (ours): the softmax consistency loss becomes the squared distance to the clean
prediction (not detached: f is a function of the perturbation alone, so the regulariser does not push on the
head's bias); the perturbation is on the encoders' features (the fusion inputs, as 003), so it costs
decodes, no encoder passes; the gradient is taken with respect to the standardised noise eps_m (that is,
sigma_m times the gradient with respect to z~_m), so that rescaling a modality's features and inversely its
head weights does not change its score; f is per frame (the LSI integrand), not the batch mean that Gat et
al.'s code divides by. The regulariser's gradient (through a double backward) reaches the head, the fusion
and the encoders (through sigma_m). Optimiser: Adam, the loop's default (a loss term, not a gradient scale).
Each epoch's row of ``metrics.csv`` holds every modality's mean information share ``lsi_share_<m>`` and the
mean regulariser ``lsi_reg``.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from poise.methods import register
from poise.methods.base import Method, Statistic
from poise.errors import PoiseError

FORMS = ("balance", "max_ent")
TINY = 1e-12  # m^2: keeps the ratio finite when a draw leaves the prediction unchanged


def information_scores(model, features: dict, n_samples: int) -> torch.Tensor:
    """(M,) I_m, differentiable with respect to the model's parameters and the features."""
    noise = {m: torch.randn(n_samples, *z.shape, dtype=z.dtype, device=z.device, requires_grad=True)
             for m, z in features.items()}
    perturbed = {m: (z + z.std(0, unbiased=False) * noise[m]).reshape(-1, *z.shape[1:]) for m, z in features.items()}
    with sdpa_kernel([SDPBackend.MATH]):  # the fused attention kernels have no double backward
        pred = model.decode(perturbed)
        clean = model.decode(features)
        clean = clean.repeat(n_samples, *[1] * (clean.ndim - 1))
    f = (pred - clean).reshape(len(pred), -1).square().sum(1)
    grads = torch.autograd.grad(f.sum(), [noise[m] for m in model.modalities], create_graph=True)
    return torch.stack([(g.reshape(len(f), -1).square().sum(1) / (f + TINY)).mean() for g in grads])


def regulariser(scores: torch.Tensor, form: str = "balance") -> torch.Tensor:
    """KL(uniform || shares) (``balance``) or ||1 / I||_2 (``max_ent``) of the information scores."""
    if form == "max_ent":
        return (1 / (scores + TINY)).norm()
    shares = scores / scores.sum().clamp_min(TINY)
    m = len(scores)
    return (torch.log(torch.tensor(1.0 / m, dtype=scores.dtype)) - torch.log(shares + 1e-8)).mean()


@register("lsi")
@dataclasses.dataclass
class LSI(Method):
    statistic = Statistic("lsi_share", "information share at the end (1/4 = equal)", over="last")
    smoke_fusion = "attention"
    delta: float = 0.1  # the weight against the MPJPE in metres: the regulariser is 1-10 % of the loss on the demo data
    n_samples: int = 3  # noise draws per frame (Gat et al.'s README: 3)
    form: str = "balance"

    def __post_init__(self):
        if not self.delta >= 0:
            raise PoiseError(f"lsi: delta must be >= 0, got {self.delta}")
        if self.n_samples < 1:
            raise PoiseError(f"lsi: n_samples must be >= 1, got {self.n_samples}")
        if self.form not in FORMS:
            raise PoiseError(f"lsi: form must be one of {', '.join(FORMS)}, got {self.form!r}")
        self._steps: list = []  # this epoch's (shares, regulariser) per step, left on the device

    def extra_loss(self, run, step):
        scores = information_scores(run.model, step.features, self.n_samples)
        reg = regulariser(scores, self.form)
        with torch.no_grad():  # kept on the device and read once, at the end of the epoch: no host sync per step
            self._steps.append((scores / scores.sum().clamp_min(TINY), reg.detach()))
        return self.delta * reg

    def on_epoch_start(self, run) -> None:
        self._steps = []

    def epoch_metrics(self, run) -> dict:
        n, shares, reg = max(len(self._steps), 1), {}, 0.0
        for step_shares, step_reg in self._steps:
            for m, s in zip(run.model.modalities, step_shares.tolist()):
                shares[m] = shares.get(m, 0.0) + s
            value = float(step_reg)
            reg += value if math.isfinite(value) else 0.0
        return {**{f"lsi_share_{m}": s / n for m, s in shares.items()}, "lsi_reg": reg / n}
