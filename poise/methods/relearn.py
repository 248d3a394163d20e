"""``relearn``: adaptive re-learning (paper 001, Eq. 4 and Algorithm 1).

At the end of epoch r, K-Means (k = 2) on that epoch's Shapley-Pearson scores splits the modalities into
superior S and inferior I (``groups.split_groups``), and every parameter of modality m's encoder moves back
toward its initial value:

    theta^m <- alpha_g * theta_0^m + (1 - alpha_g) * theta^m,   alpha_S = 0.5, alpha_I = 0.7 (the paper's).

theta_0 is the encoder's parameters when training starts; fusion and head are untouched (as in 001, which
re-initialises encoders). Algorithm 1 loops over epochs n = 0 .. N-1 and re-learns after training epoch
n == r, so r + 1 epochs have been trained; we do the same (0-based epoch index r). 001 Sec. 4.1 sets r = 20 of
N = 50; ``relearn_epoch`` unset (the default) keeps that proportion, r = round(0.4 * N) but at most N - 2 (a
2-epoch run re-learns after its first), and ``relearn_epoch`` = r sets it. r must leave at least one epoch to
re-learn in (0 <= r <= N - 2). Re-learning happens
once. The optimiser's moment estimates are kept (Algorithm 1 does not reset them).
"""

from __future__ import annotations

import dataclasses

import torch

from poise.methods import register
from poise.methods.base import Method, on_device_of, snapshot
from poise.methods.groups import split_groups
from poise.errors import PoiseError


RELEARN_FRACTION = 0.4  # 001 Sec. 4.1: r = 20 of N = 50 epochs


@register("relearn")
@dataclasses.dataclass
class Relearn(Method):
    alpha_s: float = 0.5
    alpha_i: float = 0.7
    relearn_epoch: int | None = None  # r: re-learn after epoch index r (0-based, Algorithm 1's n == r); None: 40 %
    smoke_params = {"relearn_epoch": 0}
    smoke_epochs = 3
    shown = ("relearn_epoch",)

    def __post_init__(self):
        for name in ("alpha_s", "alpha_i"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise PoiseError(f"relearn: {name} must lie in [0, 1], got {getattr(self, name)}")
        if self.relearn_epoch is not None and (isinstance(self.relearn_epoch, bool)
                                               or not isinstance(self.relearn_epoch, int) or self.relearn_epoch < 0):
            raise PoiseError(f"relearn: relearn_epoch must be an epoch index >= 0 (or unset: 40 % of the epochs), "
                             f"got {self.relearn_epoch!r}")
        self.at = self.relearn_epoch
        self.initial: dict[str, list[torch.Tensor]] = {}
        self.groups: dict[str, list[str]] = {}
        self.params_of: dict = {}

    def epoch_for(self, epochs: int) -> int:
        """r, the epoch index after which the encoders re-learn, in a run of ``epochs``."""
        return min(round(RELEARN_FRACTION * epochs), epochs - 2) if self.relearn_epoch is None else self.relearn_epoch

    def settings(self, epochs: int) -> dict:
        """The ablation's parameter, r as the "r of N" epoch index it re-learns after."""
        return {"relearn_epoch": f"{self.epoch_for(epochs)} of {epochs}"}

    def check_epochs(self, epochs: int) -> int:
        """r for a run of ``epochs``, or an error when it leaves no epoch to re-learn in."""
        if epochs < 2:
            raise PoiseError(f"relearn: re-learning needs a run of at least 2 epochs (one to learn, then one to "
                             f"re-learn in), and this run has {epochs}")
        r = self.epoch_for(epochs)
        if not 0 <= r <= epochs - 2:
            raise PoiseError(f"relearn: re-learning after epoch index r = {r} (Algorithm 1's n == r) needs "
                             f"0 <= r <= epochs - 2 to leave an epoch to re-learn in, and this run has "
                             f"{epochs} epochs; train more epochs, or set relearn_epoch (--param relearn_epoch=r; "
                             f"in `poise continual`, --relearn relearn_epoch=r)")
        return r

    def setup(self, run) -> None:
        self.at = self.check_epochs(run.config.epochs)
        self.params_of = run.model.modality_parameters()
        self.initial = {m: snapshot(self.params_of[m]) for m in run.model.modalities}

    @torch.no_grad()
    def relearn(self, model, superior) -> None:
        """Eq. 4 on every encoder parameter, by group."""
        params = model.modality_parameters()
        for m in self.initial:
            alpha = self.alpha_s if m in superior else self.alpha_i
            for p, p0 in zip(params[m], self.initial[m]):
                p.mul_(1 - alpha).add_(p0, alpha=alpha)

    def on_epoch_end(self, run) -> None:
        if run.epoch == self.at:
            superior, inferior = split_groups(run.scores())
            self.groups = {"superior": superior, "inferior": inferior}
            self.relearn(run.model, superior)
            run.record["relearn"] = {"epoch": run.epoch, "scores": dict(run.scores()), **self.groups}

    def state_dict(self) -> dict:
        return {"initial": self.initial, "groups": self.groups}

    def epoch_metrics(self, run) -> dict:
        return {"relearn_done": int(run.epoch >= self.at)}

    def load_state_dict(self, state: dict) -> None:
        self.initial, self.groups = on_device_of(state["initial"], self.params_of), state["groups"]
