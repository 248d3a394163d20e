"""``awc``: Adaptive Weight Constraint (paper 000, "AWC regularization", "Learning Window", "Loss & Training").

    L_AWC = sum over modalities m of alpha_g(m) * sum_i F_ii (theta_i^m - theta*_i^m)^2 / 2,

added to the MPJPE loss during the learning window, where g(m) is m's group from K-Means (k = 2) on the
modalities' Shapley scores (superior S or inferior I, ``groups.split_groups``), alpha_S > alpha_I, and the sum
runs over each encoder's parameters (fusion and head are never constrained). 000 does not say how F and
theta* are obtained beyond "the diagonal FIM" and "strong modalities accumulate large early-stage gradients,
yielding high FIM values"; our reading:

- **Schedule.** Epoch 0 trains without the penalty. It is the early stage whose gradients the Fisher is to
  measure, and before it there are neither contribution scores (so no groups) nor a Fisher: at the random
  initialisation the scores would group the modalities at random. At the end of epoch 0:
  - theta* = each encoder's parameters (000's theta_0^{m,*}; EWC anchors where its Fisher is measured);
  - F = the per-sample empirical Fisher of the MPJPE loss (001 Eq. 7, ``poise.fisher``, one implementation
    with EWC) at theta*, over ``fisher_frames`` trained-on frames (a fixed draw; 0 = all of them). Per
    sample, not squared batch-mean gradients: the latter is 100-200x smaller at batch 32 and shrinks as
    1/batch, which would make alpha mean something else at every batch size;
  - the groups, from that epoch's scores.
  Epochs 1 .. K are penalised (``window`` = K, default 40 % of the epochs: 000's K = 20 of 50), with the
  groups re-computed after every epoch from its scores; the epochs after K are unconstrained (000: "disabled
  thereafter"). A run that would never be penalised (K < 1, or K > epochs - 1) is an error.
- **Groups** come from the Shapley scores under ``profit`` (``pearson``, 000's choice and the loop's per-epoch
  assessment; ``neg_mse`` or ``neg_mpjpe`` recompute them on the same assessment frames), for 000's ablation
  of the profit.
- **Who is constrained.** 000's mechanism needs the strong modalities to carry the large Fisher. With our
  encoders they may not (an encoder's Fisher depends on its size, input scale and architecture as much as on
  how much the modality has learned), so each epoch's row of ``metrics.csv`` records every modality's share
  of the penalty (``awc_share_<m>``), its Fisher sum (``awc_fisher_<m>``) and its group
  (``awc_superior_<m>``). The share does not say whom the penalty holds back: ``awc_force_<m>`` is the
  penalty's pull on each encoder against the loss's, ||grad of its penalty term|| / ||grad of the rest of the
  objective|| on its parameters, averaged over the epoch's steps, and the loop's ``drift_<m>`` (how far each
  encoder has moved since epoch 0, where theta* is taken) against joint training's of the same seed is how far
  it was held back. ``normalise=True`` is our documented variant: each encoder's Fisher is rescaled so
  that its mean per parameter equals the mean over all encoders' parameters. Within an encoder the Fisher
  still ranks the parameters; between encoders only alpha_S / alpha_I (and how far each encoder moves) set
  the strength, as 000's argument intends.
- **Scale**: the paper's alpha_S = 20k, alpha_I = 10k are our defaults, for a loss in metres as here (the
  MM-Fi ground truth is in metres). With a loss in millimetres the squared gradients, hence F, grow by 10^6
  while the loss grows by 10^3: divide alpha by 1000 to keep the same balance.
"""

from __future__ import annotations

from typing import ClassVar

import dataclasses

import numpy as np
import torch

from poise.contrib.profits import PROFITS
from poise.contrib.shapley import modality_contributions
from poise.fisher import empirical_fisher, quadratic_penalty
from poise.methods import register
from poise.methods.base import Method, on_device_of, set_param, snapshot
from poise.methods.groups import split_groups
from poise.runtime import frame_batches
from poise.errors import PoiseError

WINDOW_FRACTION = 0.4  # paper 000: K = 20 of 50 epochs
FISHER_BATCH = 64  # frames per vectorised per-sample gradient batch


@register("awc")
@dataclasses.dataclass
class AWC(Method):
    needs: ClassVar[tuple] = ("encoders",)
    alpha_s: float = 20_000.0
    alpha_i: float = 10_000.0
    window: int = 0  # K, the penalised epochs (1 .. K); 0 = 40 % of the run's epochs
    fisher_frames: int = 1024  # trained-on frames of the Fisher pass at the end of epoch 0; 0 = all of them
    normalise: bool = False  # rescale each encoder's Fisher to the same mean per parameter (our variant)
    profit: str = "pearson"  # the Shapley profit whose scores form the groups
    smoke_params = {"window": 1, "alpha_s": 2e4, "fisher_frames": 64}
    smoke_epochs = 3
    shown = ("alpha_s", "alpha_i", "window", "profit", "normalise")

    def __post_init__(self):
        for key in ("alpha_s", "alpha_i"):
            if isinstance(getattr(self, key), bool) or not isinstance(getattr(self, key), (int, float)) \
                    or not getattr(self, key) >= 0:
                raise PoiseError(f"awc: {key} must be a number >= 0, got {getattr(self, key)!r}")
        for key in ("window", "fisher_frames"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PoiseError(f"awc: {key} must be an integer >= 0, got {value!r}")
        if self.alpha_s == 0 and self.alpha_i == 0:
            raise PoiseError("awc: alpha_s = alpha_i = 0 never penalises anything: that is joint training, run "
                             "--method baseline")
        if self.profit not in PROFITS:
            raise PoiseError(f"awc: profit must be one of {', '.join(PROFITS)}, got {self.profit!r}")
        self.anchor: dict[str, list[torch.Tensor]] = {}
        self.fisher: dict[str, list[torch.Tensor]] = {}
        self.fisher_sums: dict[str, float] = {}  # before any normalisation: 000's premise, as measured
        self.superior: list[str] = []
        self.inferior: list[str] = []
        self.K = self.window
        self.params_of: dict = {}
        self._terms: dict[str, list] = {}  # this epoch's penalty per modality and step, left on the device
        self._force: dict[str, list] = {}  # this epoch's force ratio per modality and step, on the device
        self._steps = 0
        self._superior_now: list[str] = []  # the superior group during this epoch

    def window_for(self, epochs: int) -> int:
        """K, the number of penalised epochs, in a run of ``epochs``."""
        return self.window or max(1, round(WINDOW_FRACTION * epochs))

    def settings(self, epochs: int) -> dict:
        """The ablation's parameters, with the window as the "K of N" epochs it penalises."""
        return {**super().settings(epochs), "window": f"{self.window_for(epochs)} of {epochs}"}

    def setup(self, run) -> None:
        epochs = run.config.epochs
        self.K = self.window_for(epochs)
        if not 1 <= self.K <= epochs - 1:
            fix = set_param("window", f"1 <= window <= {max(epochs - 1, 1)}")
            raise PoiseError(f"awc: window={self.K} penalised epochs after the Fisher epoch (epochs 1..{self.K}) do "
                             f"not fit a run of {epochs} epochs, so AWC would never act as 000 describes; train at "
                             f"least {self.K + 1} epochs or {fix}")
        self.params_of = {m: run.model.modality_parameters()[m] for m in run.model.modalities}

    def active(self, run) -> bool:
        return 1 <= run.epoch <= self.K

    def weight(self, modality: str) -> float:
        return self.alpha_s if modality in self.superior else self.alpha_i

    def terms(self) -> dict:
        """Each modality's alpha_g(m) * sum_i F_ii (theta_i - theta*_i)^2 / 2 at the current parameters
        (differentiable; independent of the window)."""
        return {m: self.weight(m) * quadratic_penalty(self.params_of[m], self.anchor[m], self.fisher[m])
                for m in self.anchor}

    def penalty(self) -> torch.Tensor:
        """L_AWC at the current parameters."""
        return sum(self.terms().values())

    def on_epoch_start(self, run) -> None:
        self._terms, self._steps = {m: [] for m in run.model.modalities}, 0
        self._force = {m: [] for m in run.model.modalities}
        self._superior_now = list(self.superior) if self.active(run) else []

    def extra_loss(self, run, step):
        if not self.active(run):
            return None
        terms = self.terms()
        for m, t in terms.items():
            self._terms.setdefault(m, []).append(t.detach())  # read once, at the end of the epoch: no host sync
        self._steps += 1
        return sum(terms.values())

    def after_backward(self, run, step) -> None:
        """The force ratio of each encoder: the penalty's gradient alpha F (theta - theta*) against the rest of
        its gradient (the loss's), kept on the device."""
        if not self.active(run):
            return
        for m in self.anchor:
            pull, rest = [], []
            for p, a, f in zip(self.params_of[m], self.anchor[m], self.fisher[m]):
                if p.grad is not None:
                    g = self.weight(m) * f.to(p) * (p.detach() - a.to(p))
                    pull.append(g.square().sum())
                    rest.append((p.grad - g).square().sum())
            if pull:
                self._force.setdefault(m, []).append(torch.sqrt(sum(pull) / sum(rest).clamp_min(1e-30)))

    def on_epoch_end(self, run) -> None:
        if run.epoch == 0:
            self.estimate(run)
        if run.epoch < self.K:  # the groups of the next (penalised) epoch
            self.superior, self.inferior = split_groups(self.scores(run))

    def scores(self, run) -> dict:
        if self.profit == "pearson":
            return run.scores()  # the loop's assessment of this epoch
        run.model.eval()
        with torch.no_grad():
            features = run.model.encode(run.assess)
        return modality_contributions(run.model, features, run.assess["gt"], profit=self.profit).scores

    def estimate(self, run) -> None:
        """theta* and the per-sample Fisher at the end of epoch 0."""
        rows = run.train_rows
        if self.fisher_frames and self.fisher_frames < len(rows):
            rows = np.sort(np.random.default_rng([run.config.seed, 13]).choice(rows, self.fisher_frames, replace=False))
        names = {n for m in run.model.modalities for n, _ in run.model.encoders[m].named_parameters(prefix=f"encoders.{m}")}
        values, _ = empirical_fisher(run.model, frame_batches(run.train, rows, FISHER_BATCH), per_sample=True,
                                     names=names, sample_loss=run.objective.sample_loss)
        self.anchor = {m: snapshot(self.params_of[m]) for m in self.params_of}
        self.fisher = {m: [values[f"encoders.{m}.{n}"] for n, _ in run.model.encoders[m].named_parameters()]
                       for m in self.params_of}
        self.fisher_sums = {m: float(sum(f.sum() for f in fs)) for m, fs in self.fisher.items()}
        if self.normalise:
            counts = {m: sum(f.numel() for f in fs) for m, fs in self.fisher.items()}
            overall = sum(self.fisher_sums.values()) / sum(counts.values())
            for m, fs in self.fisher.items():
                mean = self.fisher_sums[m] / counts[m]
                if mean > 0:
                    self.fisher[m] = [f * (overall / mean) for f in fs]

    def epoch_metrics(self, run) -> dict:
        terms = {m: sum(torch.stack(t).double().tolist()) if t else 0.0 for m, t in self._terms.items()}
        total = sum(terms.values())
        out = {"awc_active": int(self.active(run)), "awc_penalty": total / max(self._steps, 1)}
        for m in run.model.modalities:
            out[f"awc_share_{m}"] = terms.get(m, 0.0) / total if total > 0 else 0.0
        for m in run.model.modalities:
            out[f"awc_fisher_{m}"] = self.fisher_sums.get(m, 0.0)
        for m in run.model.modalities:
            out[f"awc_superior_{m}"] = int(m in self._superior_now)
        for m in run.model.modalities:
            force = torch.stack(self._force[m]).double() if self._force.get(m) else torch.zeros(0)
            force = force[torch.isfinite(force)]  # an fp16 step whose gradients overflowed (skipped) says nothing
            out[f"awc_force_{m}"] = float(force.mean()) if len(force) else 0.0
        return out

    def state_dict(self) -> dict:
        return {"anchor": self.anchor, "fisher": self.fisher, "fisher_sums": self.fisher_sums,
                "superior": self.superior, "inferior": self.inferior}

    def load_state_dict(self, state: dict) -> None:
        self.anchor = on_device_of(state["anchor"], self.params_of)
        self.fisher = on_device_of(state["fisher"], self.params_of)
        self.fisher_sums = dict(state["fisher_sums"])
        self.superior, self.inferior = list(state["superior"]), list(state["inferior"])
