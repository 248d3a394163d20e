"""``awc``: Adaptive Weight Constraint (paper 000, "AWC regularization" and "Learning Window").

    L_AWC = sum over modalities m of alpha_g(m) * sum_i F_ii (theta_i^m - theta_0,i^m*)^2 / 2,

added to the MPJPE loss during the learning window, where g(m) is m's group from K-Means (k = 2) on the
Shapley-Pearson scores (superior S or inferior I, ``groups.split_groups``), alpha_S > alpha_I, and the sum
runs over each encoder's parameters (fusion and head are never constrained). Our choices where the paper is
not explicit:
- **Anchor** theta_0*: each encoder's parameters when training starts (the start of the window).
- **Fisher**: the empirical diagonal Fisher, the mean of squared gradients of the MPJPE loss over the first
  ``fisher_batches`` batches of the first epoch (0 = the whole epoch). This is where "strong modalities
  accumulate large early-stage gradients" (000) and so receive the larger constraint.
- **Window**: the penalty applies in epochs 1 .. K-1 (epoch 0 estimates the Fisher, and no scores exist yet);
  K defaults to 40 % of the epochs, the paper's 20 of 50.
- **Groups** are re-computed after every epoch from that epoch's scores.
- **Scale**: the paper's alpha_S = 20k, alpha_I = 10k are our defaults, for a loss in metres as here (the
  MM-Fi ground truth is in metres). With a loss in millimetres the squared gradients, hence F, grow by 10^6
  while the loss grows by 10^3: divide alpha by 1000 to keep the same balance.
"""

from __future__ import annotations

import dataclasses

import torch

from poise.methods import register
from poise.methods.base import Method
from poise.methods.groups import split_groups

WINDOW_FRACTION = 0.4  # paper 000: K = 20 of 50 epochs


@register("awc")
@dataclasses.dataclass
class AWC(Method):
    alpha_s: float = 20_000.0
    alpha_i: float = 10_000.0
    window: int = 0  # epochs; 0 = 40 % of the run's epochs
    fisher_batches: int = 0  # 0 = every batch of the first epoch

    def __post_init__(self):
        if not self.alpha_s >= 0 or not self.alpha_i >= 0:
            raise ValueError(f"awc: alpha_s and alpha_i must be >= 0, got {self.alpha_s}, {self.alpha_i}")
        self.anchor: dict[str, list[torch.Tensor]] = {}
        self.fisher: dict[str, list[torch.Tensor]] = {}
        self.fisher_count = 0
        self.superior: list[str] = []
        self.inferior: list[str] = []

    def window_epochs(self, run) -> int:
        return self.window or max(1, round(WINDOW_FRACTION * run.config.epochs))

    def setup(self, run) -> None:
        groups = run.model.modality_parameters()
        if not self.anchor:  # a fresh run (a resumed one restored these from the checkpoint)
            self.anchor = {m: [p.detach().clone() for p in groups[m]] for m in run.model.modalities}
            self.fisher = {m: [torch.zeros_like(p) for p in groups[m]] for m in run.model.modalities}
        else:  # restored on the CPU: follow the model's device
            self.anchor = {m: [a.to(p.device) for a, p in zip(self.anchor[m], groups[m])] for m in self.anchor}
            self.fisher = {m: [f.to(p.device) for f, p in zip(self.fisher[m], groups[m])] for m in self.fisher}

    def _estimating(self, run) -> bool:
        return run.epoch == 0 and (self.fisher_batches == 0 or self.fisher_count < self.fisher_batches)

    def after_backward(self, run, step) -> None:
        if not self._estimating(run):
            return
        n = self.fisher_count
        for m, params in run.model.modality_parameters().items():
            if m in self.fisher:
                for f, p in zip(self.fisher[m], params):
                    if p.grad is not None:
                        f.mul_(n / (n + 1)).add_(p.grad.detach().square(), alpha=1 / (n + 1))  # running mean
        self.fisher_count += 1

    def weight(self, modality: str) -> float:
        return self.alpha_s if modality in self.superior else self.alpha_i

    def penalty(self, model) -> torch.Tensor:
        """L_AWC at the model's current parameters (independent of the window)."""
        groups = model.modality_parameters()
        total = next(iter(self.fisher.values()))[0].new_zeros(())
        for m in self.anchor:
            term = sum(((p - a).square() * f).sum() for p, a, f in zip(groups[m], self.anchor[m], self.fisher[m]))
            total = total + self.weight(m) * term / 2
        return total

    def extra_loss(self, run, step):
        if run.epoch == 0 or run.epoch >= self.window_epochs(run) or not (self.superior or self.inferior):
            return None
        return self.penalty(run.model)

    def on_epoch_end(self, run) -> None:
        self.superior, self.inferior = split_groups(run.contributions[-1])

    def state_dict(self) -> dict:
        return {"anchor": self.anchor, "fisher": self.fisher, "fisher_count": self.fisher_count,
                "superior": self.superior, "inferior": self.inferior}

    def load_state_dict(self, state: dict) -> None:
        self.anchor, self.fisher = state["anchor"], state["fisher"]
        self.fisher_count, self.superior, self.inferior = state["fisher_count"], state["superior"], state["inferior"]
