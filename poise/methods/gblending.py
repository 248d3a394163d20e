"""``gblending``: Gradient-Blending (Wang, Tran and Feiszli, CVPR 2020, Sec. 3.3 and Algorithm 1, online form),
adapted to regression and to M modalities.

The loss blends the fused output with each modality's unimodal output:

    L = w_fused * L(decode(z)) + sum over m of w_m * L(mean_pose + head_m(z_m)),   sum of w = 1,

and every ``super_epoch`` epochs the weights are re-estimated from each branch's overfitting-to-generalisation
ratio between the last estimate N and now N + n:

    G = L_val,   O = L_val - L_train,   dG = G_N - G_{N+n},   dO = O_{N+n} - O_N,
    w_k = max(dG_k, 0) / (dO_k^2 + eps^2),   normalised to sum 1   (Wang et al., Eq. 6 / Proposition 1).

Adaptation (classification -> regression), all ours:
- The branch loss L is MPJPE (001 Eq. 10) instead of cross-entropy. Each unimodal branch has its own linear
  head on its encoder's features, as G-Blending's unimodal classifiers: modules the method owns
  (``modules()``), trained by the run's optimiser (their own parameter group) and checkpointed by the loop.
  Not ``decode(z, {m})`` through the shared head: with a linear head, training each zero-padded branch to
  predict the whole pose makes the fused output the *sum* of M pose offsets (we measured 439 mm test MPJPE
  that way, against 66 mm for joint training). The fused branch's weight is the loop's ``pose_loss_weight``.
- G-Blending needs a validation split: the run's held-out training *sequences* (config ``holdout``, whole
  sequences, never trained on by any method, never the test split) give L_val; L_train is measured on a
  fixed slice of the trained-on frames. Both slices are ``eval_frames`` frames. Every method in a
  ``poise bench`` comparison trains on the same trained-on frames, so G-Blending is not handicapped by its
  validation set.
- Online estimation uses the jointly trained model's own trajectory over the last super-epoch, not M + 1
  temporary models trained from a snapshot (BalanceMM's version costs (M + 1) x super_epoch extra epochs per
  super-epoch, and it uses |G| / O^2 of absolute losses rather than the paper's deltas).
- A negative dG (the branch's validation loss got worse) gives weight 0; ``eps_mm`` (mm) keeps a branch
  whose overfitting did not change from taking all the weight; if every weight would be 0, the last weights
  stay. Training starts with equal weights 1 / (M + 1).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch

from poise.methods import register
from poise.methods.base import Method, set_param
from poise.methods.responses import UnimodalHeads
from poise.runtime import to_device
from poise.errors import PoiseError

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
    needs: ClassVar[tuple] = ("feature size", "output shape")
    needs_holdout: ClassVar[bool] = True  # its weights come from held-out training sequences
    smoke_params = {"super_epoch": 1}
    smoke_epochs = 3
    super_epoch: int = 2  # epochs between weight estimates (n)
    eval_frames: int = 512  # frames in each of the train and validation slices
    eps_mm: float = 1.0

    def __post_init__(self):
        if self.super_epoch < 1:
            raise PoiseError(f"gblending: super_epoch must be >= 1, got {self.super_epoch}")
        if self.eval_frames < 2:
            raise PoiseError(f"gblending: eval_frames must be >= 2 (MPJPE on a slice of frames), got {self.eval_frames}")
        if not self.eps_mm > 0:
            raise PoiseError(f"gblending: eps_mm must be > 0, got {self.eps_mm}")
        self.heads: UnimodalHeads | None = None  # modality -> linear head on its features
        self.weights: dict = {}
        self.last: dict = {}  # the last measurement {branch: (train_mm, val_mm)}
        self.history: list = []  # (epoch, weights) after each estimate

    def setup(self, run) -> None:
        if self.super_epoch >= run.config.epochs:
            raise PoiseError(f"gblending: super_epoch={self.super_epoch} never re-weights in a run of "
                             f"{run.config.epochs} epochs; {set_param('super_epoch', 'super_epoch < epochs')}")
        if not len(run.val_rows):
            raise PoiseError("gblending estimates its weights on held-out training sequences and this run holds "
                             "none out: set the config key holdout (--holdout 0.1; holdout=0.1 in poise.fit)")
        rng = np.random.default_rng([run.config.seed, 7])
        self.train_slice = np.sort(rng.permutation(run.train_rows)[: self.eval_frames])
        self.val_slice = np.sort(rng.permutation(run.val_rows)[: self.eval_frames])
        self.heads = UnimodalHeads(run.model, run.config.seed)
        branches = [*run.model.modalities, FUSED]
        self.weights = {k: 1.0 / len(branches) for k in branches}
        self.last = self.measure(run)  # a resumed run restores its own weights and measurement after this

    def modules(self) -> dict:
        return {"gblending_heads": self.heads}

    def unimodal(self, model, features: dict) -> dict:
        """Each modality's own-head prediction (B, *target shape)."""
        return self.heads.outputs(model, features)

    @torch.no_grad()
    def _branch_errors(self, model, rows, data, objective) -> dict:
        batch = to_device(data.batch(rows), next(model.parameters()).device)
        features = model.encode(batch)
        out = self.unimodal(model, features)
        out[FUSED] = model.decode(features)
        gt = batch["gt"]
        return {k: float(objective.loss(p, gt) * objective.loss_scale) for k, p in out.items()}

    def measure(self, run) -> dict:
        """``{branch: (train loss, validation loss)}`` (MPJPE in mm for poses), on the fixed slices."""
        was_training = run.model.training
        run.model.eval()
        train = self._branch_errors(run.model, self.train_slice, run.train, run.objective)
        val = self._branch_errors(run.model, self.val_slice, run.train, run.objective)
        run.model.train(was_training)
        return {k: (train[k], val[k]) for k in train}

    def pose_loss_weight(self, run) -> float:
        return self.weights[FUSED]

    def extra_loss(self, run, step):
        gt = step.batch["gt"]
        return sum(self.weights[m] * run.objective.loss(pred, gt)
                   for m, pred in self.unimodal(run.model, step.features).items())

    def on_epoch_end(self, run) -> None:
        if (run.epoch + 1) % self.super_epoch:
            return
        now = self.measure(run)
        weights = blend_weights(self.last, now, self.eps_mm)
        if weights is not None:
            self.weights = weights
        self.last = now
        self.history.append((run.epoch + 1, dict(self.weights)))

    def epoch_metrics(self, run) -> dict:
        return {f"gblending_w_{k}": w for k, w in self.weights.items()}

    def state_dict(self) -> dict:
        return {"weights": self.weights, "last": {k: list(v) for k, v in self.last.items()},
                "history": [[e, w] for e, w in self.history]}

    def load_state_dict(self, state: dict) -> None:
        self.weights = dict(state["weights"])
        self.last = {k: tuple(v) for k, v in state["last"].items()}
        self.history = [(e, dict(w)) for e, w in state["history"]]
