"""``gblending``: Gradient-Blending (Wang, Tran and Feiszli, CVPR 2020, Sec. 3.3 and Algorithm 1, online form),
adapted to regression and to M modalities.

The loss blends the fused output with each modality's unimodal output:

    L = w_fused * L(decode(z)) + sum over m of w_m * L(decode(z, {m})),   sum of w = 1,

and every ``super_epoch`` epochs the weights are re-estimated from each branch's overfitting-to-generalisation
ratio between the last estimate N and now N + n:

    G = L_val,   O = L_val - L_train,   dG = G_N - G_{N+n},   dO = O_{N+n} - O_N,
    w_k = max(dG_k, 0) / (dO_k^2 + eps^2),   normalised to sum 1   (Wang et al., Eq. 6 / Proposition 1).

Adaptation (classification -> regression), all ours:
- The branch loss L is MPJPE (001 Eq. 10) instead of cross-entropy; each unimodal branch is ``decode(z, {m})``
  (the other modalities zeroed at the feature level, through the shared fusion and head), not an extra head.
- G-Blending needs a validation split: ``holdout`` of the training *sequences* (whole sequences, chosen by the
  seed, never the test split) are held out of training and serve as L_val; L_train is measured on a fixed
  slice of the frames that are trained on. Both slices are ``eval_frames`` frames.
- Online estimation uses the jointly trained model's own trajectory over the last super-epoch, not M + 1
  temporary models trained from a snapshot (BalanceMM's version costs (M + 1) x super_epoch extra epochs per
  super-epoch, and it uses |G| / O^2 of absolute losses rather than the paper's deltas).
- A negative dG (the branch's validation loss got worse) gives weight 0; ``eps_mm`` (mm) keeps a branch
  whose overfitting did not change from taking all the weight; if every weight would be 0, the last weights
  stay. Training starts with equal weights 1 / (M + 1).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from poise.metrics import M_TO_MM, mpjpe_loss
from poise.methods import register
from poise.methods.base import Method

FUSED = "fused"


def blend_weights(previous: dict, now: dict, eps_mm: float) -> dict | None:
    """Normalised G-Blending weights from two measurements ``{branch: (train_mm, val_mm)}``; None if all are 0."""
    raw = {}
    for k, (train_now, val_now) in now.items():
        train_prev, val_prev = previous[k]
        gain = val_prev - val_now
        d_overfit = (val_now - train_now) - (val_prev - train_prev)
        raw[k] = max(gain, 0.0) / (d_overfit ** 2 + eps_mm ** 2)
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()} if total > 0 else None


@register("gblending")
@dataclasses.dataclass
class GBlending(Method):
    super_epoch: int = 2  # epochs between weight estimates (n)
    holdout: float = 0.1  # fraction of training sequences held out as G-Blending's validation set
    eval_frames: int = 512  # frames in each of the train and validation slices
    eps_mm: float = 1.0

    def __post_init__(self):
        if self.super_epoch < 1:
            raise ValueError(f"gblending: super_epoch must be >= 1, got {self.super_epoch}")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"gblending: holdout must lie in (0, 1), got {self.holdout}")
        if not self.eps_mm > 0:
            raise ValueError(f"gblending: eps_mm must be > 0, got {self.eps_mm}")
        self.weights: dict = {}
        self.last: dict = {}  # the last measurement {branch: (train_mm, val_mm)}
        self.history: list = []  # (epoch, weights) after each estimate

    def setup(self, run) -> None:
        data = run.train
        sequences = np.unique(data.sequence_of(np.arange(len(data))))
        n_val = int(round(self.holdout * len(sequences)))
        if n_val < 1 or n_val >= len(sequences):
            raise ValueError(f"gblending: holdout={self.holdout} of {len(sequences)} training sequences leaves "
                             f"{n_val} for validation; G-Blending needs at least one held out and one trained on")
        rng = np.random.default_rng([run.config.seed, 7])
        held = rng.choice(sequences, n_val, replace=False)
        is_val = np.isin(data.sequence_of(np.arange(len(data))), held)
        self.train_rows, val_rows = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        self.train_slice = np.sort(rng.permutation(self.train_rows)[: self.eval_frames])
        self.val_slice = np.sort(rng.permutation(val_rows)[: self.eval_frames])
        if not self.weights:  # a fresh run (a resumed one restored these)
            branches = [*run.model.modalities, FUSED]
            self.weights = {k: 1.0 / len(branches) for k in branches}
            self.last = self.measure(run)

    def epoch_samples(self, run):
        return self.train_rows

    @torch.no_grad()
    def _branch_mm(self, model, rows, data) -> dict:
        from poise.train import to_device

        batch = to_device(data.batch(rows), next(model.parameters()).device)
        features = model.encode(batch)
        out = {m: model.decode(features, (m,)) for m in model.modalities}
        out[FUSED] = model.decode(features)
        gt = batch["gt"]
        return {k: float((p - gt).norm(dim=-1).mean() * M_TO_MM) for k, p in out.items()}

    def measure(self, run) -> dict:
        """``{branch: (train MPJPE, validation MPJPE)}`` in mm, on the fixed slices."""
        was_training = run.model.training
        run.model.eval()
        train = self._branch_mm(run.model, self.train_slice, run.train)
        val = self._branch_mm(run.model, self.val_slice, run.train)
        run.model.train(was_training)
        return {k: (train[k], val[k]) for k in train}

    def extra_loss(self, run, step):
        gt = step.batch["gt"]
        total = (self.weights[FUSED] - 1.0) * step.loss  # the loop's loss is the fused one, with weight 1
        for m in run.model.modalities:
            pred = run.model.decode(step.features, (m,))
            total = total + self.weights[m] * mpjpe_loss(pred, gt)
        return total

    def on_epoch_end(self, run) -> None:
        if (run.epoch + 1) % self.super_epoch:
            return
        now = self.measure(run)
        weights = blend_weights(self.last, now, self.eps_mm)
        if weights is not None:
            self.weights = weights
        self.last = now
        self.history.append((run.epoch + 1, dict(self.weights)))

    def state_dict(self) -> dict:
        return {"weights": self.weights, "last": {k: list(v) for k, v in self.last.items()},
                "history": [[e, w] for e, w in self.history]}

    def load_state_dict(self, state: dict) -> None:
        self.weights = dict(state["weights"])
        self.last = {k: tuple(v) for k, v in state["last"].items()}
        self.history = [(e, dict(w)) for e, w in state["history"]]
