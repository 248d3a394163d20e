"""``relearn``: adaptive re-learning (paper 001, Eq. 4 and Algorithm 1).

At the end of epoch r, K-Means (k = 2) on that epoch's Shapley-Pearson scores splits the modalities into
superior S and inferior I (``groups.split_groups``), and every parameter of modality m's encoder moves back
toward its initial value:

    theta^m <- alpha_g * theta_0^m + (1 - alpha_g) * theta^m,   alpha_S = 0.5, alpha_I = 0.7 (the paper's).

theta_0 is the encoder's parameters when training starts; fusion and head are untouched (as in 001, which
re-initialises encoders). 001 Sec. 4.1 re-learns at epoch r = 20 of 50; ``relearn_epoch`` = 0 (the default)
keeps that proportion, r = round(0.4 * epochs) (at least 1: 3 of our benchmark's 8 epochs), and a positive
``relearn_epoch`` sets r (1-based: after that many epochs). Re-learning happens once.
The optimiser's moment estimates are kept (Algorithm 1 does not reset them).
"""

from __future__ import annotations

import dataclasses

import torch

from poise.methods import register
from poise.methods.base import Method
from poise.methods.groups import split_groups


RELEARN_FRACTION = 0.4  # 001 Sec. 4.1: r = 20 of N = 50 epochs


@register("relearn")
@dataclasses.dataclass
class Relearn(Method):
    alpha_s: float = 0.5
    alpha_i: float = 0.7
    relearn_epoch: int = 0  # 1-based epoch after which to re-learn; 0: 40 % of the epochs, as 001's 20 of 50

    def __post_init__(self):
        for name in ("alpha_s", "alpha_i"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"relearn: {name} must lie in [0, 1], got {getattr(self, name)}")
        if self.relearn_epoch < 0:
            raise ValueError(f"relearn: relearn_epoch must be >= 1 (or 0: 40 % of the epochs), got {self.relearn_epoch}")
        self.at = self.relearn_epoch
        self.initial: dict[str, list[torch.Tensor]] = {}
        self.groups: dict[str, list[str]] = {}

    def setup(self, run) -> None:
        self.at = self.relearn_epoch or max(1, round(RELEARN_FRACTION * run.config.epochs))
        if self.at >= run.config.epochs:
            raise ValueError(f"relearn: re-learning after epoch {self.at} leaves no epoch to re-learn in a run of "
                             f"{run.config.epochs}; train more epochs, or set --param relearn_epoch=N with N < epochs")
        groups = run.model.modality_parameters()
        if not self.initial:
            self.initial = {m: [p.detach().clone() for p in groups[m]] for m in run.model.modalities}
        else:  # restored on the CPU: follow the model's device
            self.initial = {m: [a.to(p.device) for a, p in zip(self.initial[m], groups[m])] for m in self.initial}

    @torch.no_grad()
    def relearn(self, model, superior, inferior) -> None:
        """Eq. 4 on every encoder parameter, by group."""
        params = model.modality_parameters()
        for m in self.initial:
            alpha = self.alpha_s if m in superior else self.alpha_i
            for p, p0 in zip(params[m], self.initial[m]):
                p.mul_(1 - alpha).add_(p0, alpha=alpha)

    def on_epoch_end(self, run) -> None:
        if run.epoch + 1 == self.at:
            superior, inferior = split_groups(run.contributions[-1])
            self.groups = {"superior": superior, "inferior": inferior}
            self.relearn(run.model, superior, inferior)

    def state_dict(self) -> dict:
        return {"initial": self.initial, "groups": self.groups}

    def load_state_dict(self, state: dict) -> None:
        self.initial, self.groups = state["initial"], state["groups"]
