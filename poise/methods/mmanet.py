"""``mmanet``: MMANet, margin-aware distillation and modality-aware regularisation (paper 002's robustness list;
Wei et al., CVPR 2023), adapted to pose regression with M = 4.

Three networks. A frozen **teacher** trained on complete data (``teacher``: the directory of a finished poise
run with every modality, e.g. the ``baseline`` run of the same seed); the **deployment** network (``run.model``)
trained with modality dropout over every non-empty combination (p = 0.5: uniform, as the reference); a
**regularisation** network (a copy of the fusion and head, owned by the method, never used at evaluation) on the
shared encoders. From epoch ``begin`` (the reference's ``begin_epoch`` 5):

    L    = MPJPE(deployment) + lambda_mad * MAD + lambda_mar * MAR                (before ``begin``: MPJPE only)
    MAD  = sum_i w_i * mean_j (G^s_ij - G^t_ij)^2,   G = rows-L2-normalised F F^T over the batch (similarity-
           preserving distillation of the fused features F: the student's for its combination, the teacher's
           for all modalities)
    w_i  = u_i / sum u,   u_i = mean over the M leave-one-out subsets S of mean_joints ||T(x_i, S) - T(x_i)||^2
    MAR  = sum over samples of a weak combination of MPJPE(regularisation network) / B

Adaptations to regression (ours):
- **MAD's weight.** The reference weights samples by the teacher's softmax entropy ("near the decision
  boundary"). Here u_i is a label-free uncertainty of the teacher: how much its prediction moves when one
  modality is taken away (M extra decodes of cached teacher features). Gaussian entropies are not used: they
  can be negative, which breaks the normalisation by their sum. The weight is per row, as in the reference's
  segmentation version (its classification version broadcasts it over columns), and MAD is a weighted mean, so
  its scale does not grow with the batch.
- **Mining the weak combinations.** The reference mines them on the **test** loader, from the KL between
  predicted-label histograms. Here: on a fixed slice of the held-out training sequences (``run.val_rows``;
  never the test split), from epoch ``mine_from`` to ``begin`` - 1, the label-free discrepancy
  D_S = mean ||f(x, S) - f(x)|| of the deployment network for each of the M (M-1)-modality combinations is
  accumulated; at ``begin`` the one with the largest D and all its non-empty sub-combinations become the weak
  combinations (the reference, M = 3: the worst pair and its two singletons).
- Losses are MPJPE instead of cross-entropy. ``lambda_mar`` is the reference's 0.5. The reference's
  ``lambda_mad`` = 30 multiplies a batch-size-growing sum of CE-scale terms and does not transfer; the default 1
  puts MAD (a mean of squared Gram differences, at most 4) on the order of the pose loss in metres at the start.
  The reference trains with SGD; no gradient is scaled, so poise's default (Adam) is kept, as for the baseline.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from poise.methods import register
from poise.methods.base import Method, set_param
from poise.methods.modality_dropout import (check_drop, check_non_negative, combination_index,
                                              combination_name, sample_masks)
from poise.runtime import frame_batches, to_device, trained_from_python
from poise.errors import PoiseError


class Regulariser(nn.Module):
    """MMANet's regularisation network: its own fusion and head on the deployment network's tokens."""

    def __init__(self, model):
        super().__init__()
        self.fusion = copy.deepcopy(model.fusion)
        self.head = copy.deepcopy(model.head)

    def forward(self, model, tokens: torch.Tensor) -> torch.Tensor:
        return model.offset + self.head(self.fusion(tokens)).view(-1, *model.out_shape)


def similarity(features: torch.Tensor) -> torch.Tensor:
    """The batch's similarity matrix F F^T with L2-normalised rows (similarity-preserving distillation)."""
    features = features.flatten(1)
    return F.normalize(features @ features.T, dim=1)


def mad_loss(student: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_i w_i mean_j (G^s_ij - G^t_ij)^2; 0 when the two batches of features are equal."""
    return (weights * (similarity(student) - similarity(teacher)).square().mean(1)).sum()


@torch.no_grad()
def teacher_uncertainty(teacher, features: dict) -> torch.Tensor:
    """u_i / sum u (B,): the mean squared move of the teacher's prediction when one modality is taken away."""
    full = teacher.decode(features)
    # each sample's mean squared move over its target's values (a pose: a third of the mean squared joint move,
    # a factor the normalisation cancels)
    moves = [(teacher.decode(features, [m for m in teacher.modalities if m != left]) - full).flatten(1).square().mean(1)
             for left in teacher.modalities]
    u = torch.stack(moves).mean(0)
    total = u.sum()
    return u / total if total > 0 else torch.full_like(u, 1 / len(u))


def weak_combinations(discrepancy: dict, modalities) -> list[int]:
    """The combination (an index) with the largest ``discrepancy`` and all its non-empty sub-combinations."""
    worst = max(discrepancy, key=discrepancy.get)
    present = [i for i in range(len(modalities)) if worst >> i & 1]
    return sorted(sum(2 ** i for i in subset) for r in range(1, len(present) + 1)
                  for subset in itertools.combinations(present, r))


def load_teacher(path, run):
    """The frozen full-modality model of the finished poise run at ``path``, checked against ``run``; or ``path``
    itself when it is a trained model (the Python API: ``MMANet(teacher=model)``), a frozen copy of it."""
    from poise.config import TrainConfig
    from poise.models.pose import build_model
    from poise.runtime import read_checkpoint

    if isinstance(path, torch.nn.Module):
        if tuple(path.modalities) != tuple(run.model.modalities):
            raise PoiseError(f"mmanet: the teacher model has modalities {list(path.modalities)}, the student "
                             f"{list(run.model.modalities)}; the teacher needs every modality the student has")
        teacher = copy.deepcopy(path).to(run.device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher
    if not path:
        raise PoiseError("mmanet distils from a full-modality teacher: train one (`poise train --method baseline`) "
                         "and pass its run directory with --param teacher=RUN_DIR, or in Python pass the trained "
                         "model: type(poise.methods.get('mmanet'))(teacher=model)")
    folder = Path(path)
    if trained_from_python(folder):  # its model is the user's class: the folder alone cannot rebuild it
        raise PoiseError(f"mmanet: the teacher {path} was trained from Python (poise.fit); pass the trained model "
                         "itself: type(poise.methods.get('mmanet'))(teacher=model)")
    if not (folder / "config.yaml").is_file():
        raise PoiseError(f"mmanet: teacher={path!r} is not a poise run directory (no config.yaml there)")
    config = TrainConfig.load(folder / "config.yaml")
    mine = run.config
    if list(config.modalities) != list(run.model.modalities):
        raise PoiseError(f"mmanet: the teacher {path} was trained on {config.modalities}, this run on "
                         f"{list(run.model.modalities)}; the teacher needs every modality the student has")
    for key in ("protocol", "split"):
        if getattr(config, key) != getattr(mine, key):
            raise PoiseError(f"mmanet: the teacher {path} has {key} {getattr(config, key)!r}, this run "
                             f"{getattr(mine, key)!r}; a teacher must not have trained on this run's test split")
    if Path(config.data).resolve() != Path(mine.data).resolve():
        raise PoiseError(f"mmanet: the teacher {path} was trained on {config.data}, this run on {mine.data}")
    state = read_checkpoint(folder / "checkpoint.pt", ("model", "epoch"), "finish the teacher's training first")
    if state["epoch"] < config.epochs:
        raise PoiseError(f"mmanet: the teacher {path} has trained {state['epoch']} of {config.epochs} epochs; "
                         f"finish it first (`poise train --resume {path}`)")
    with torch.random.fork_rng(devices=[]):  # its weights are overwritten: leave the run's RNG as it was
        teacher = build_model(config.modalities, fusion=config.fusion, dim=config.dim,
                              rgb_window=config.rgb_window, encoder=config.encoder)
    try:
        teacher.load_state_dict(state["model"])
    except RuntimeError as err:
        raise PoiseError(f"mmanet: the teacher {path} is not a plain pose model (its method changed the model: "
                         f"{str(err).splitlines()[0]}); use a baseline run") from None
    teacher.to(run.device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@register("mmanet")
@dataclasses.dataclass
class MMANet(Method):
    needs: ClassVar[tuple] = ("absent handling", "stages", "output shape")
    needs_holdout: ClassVar[bool] = True  # weak combinations are mined on held-out training sequences
    smoke_params = {"begin": 3, "mine_from": 1}  # cut inside the mining
    smoke_needs = ("teacher",)
    smoke_epochs = 4
    smoke_cut = 2
    teacher: str = ""  # the run directory of a finished full-modality run (e.g. the baseline of the same seed)
    lambda_mad: float = 1.0
    lambda_mar: float = 0.5
    mine_from: int = 2  # first epoch (0-based) whose end adds to the weak-combination discrepancy
    begin: int = 5  # the epoch from which MAD and MAR apply (the weak combinations are fixed at its start)
    eval_frames: int = 512  # held-out frames the discrepancy is measured on
    p: float = 0.5
    absent: str = "zero"  # what an absent modality is (PoseModel.absent): zeros as the reference, or rescale

    def __post_init__(self):
        check_drop(self.name, self.p)
        check_non_negative(self, "lambda_mad", "lambda_mar")
        if not 0 <= self.mine_from < self.begin:
            raise PoiseError(f"mmanet: need 0 <= mine_from < begin (mining ends before the losses start), got "
                             f"mine_from={self.mine_from}, begin={self.begin}")
        self.regulariser: Regulariser | None = None
        self.teacher_model = None
        self.discrepancy: dict = {}
        self.weak: list[int] = []
        self._step = None

    def setup(self, run) -> None:
        if self.begin >= run.config.epochs:
            raise PoiseError(f"mmanet: begin={self.begin} leaves no epoch for distillation in a run of "
                             f"{run.config.epochs} epochs; {set_param('begin', 'begin < epochs')}")
        if not len(run.val_rows):
            raise PoiseError("mmanet mines its weak combinations on held-out training sequences and this run holds "
                             "none out: set the config key holdout (--holdout 0.1; holdout=0.1 in poise.fit)")
        rng = np.random.default_rng([run.config.seed, 11])
        self.val_slice = np.sort(rng.permutation(run.val_rows)[: self.eval_frames])
        run.model.set_absent(self.absent)
        self.regulariser = Regulariser(run.model)  # starts as a copy of the deployment network's fusion and head
        n = len(run.model.modalities)
        self.discrepancy = {2 ** n - 1 - 2 ** i: 0.0 for i in range(n)}  # the M leave-one-out combinations

    def modules(self) -> dict:
        return {"mmanet_regulariser": self.regulariser}

    def on_epoch_start(self, run) -> None:
        if self.teacher_model is None:  # loaded when training needs it (``poise robust`` on the run does not)
            self.teacher_model = load_teacher(self.teacher, run)

    def predict(self, run, batch: dict, features: dict):
        model = run.model
        mask = sample_masks(model, features, self.p)
        fused = model.fuse(features, mask)
        self._step = (mask, fused)
        return model.readout(fused)

    def extra_loss(self, run, step):
        if run.epoch < self.begin:
            return None
        mask, fused = self._step
        model, teacher = run.model, self.teacher_model
        with torch.no_grad():
            teacher_features = teacher.encode(step.batch)
            weights = teacher_uncertainty(teacher, teacher_features)
            teacher_fused = teacher.fuse(teacher_features)
        loss = self.lambda_mad * mad_loss(fused, teacher_fused, weights)
        weak = torch.isin(combination_index(mask), torch.tensor(self.weak, device=mask.device))
        # computed even when no sample of this rank is weak: under torchrun every rank must hold the same gradients
        pred = self.regulariser(model, model.tokens(step.features, mask))
        return loss + self.lambda_mar * (run.objective.sample_loss(pred, step.batch["gt"]) * weak).sum() / len(weak)

    @torch.no_grad()
    def measure_discrepancy(self, run) -> dict:
        """D_S (mm) of the deployment network on the held-out slice, per leave-one-out combination S."""
        model = run.model
        was_training = model.training
        model.eval()
        sums = dict.fromkeys(self.discrepancy, 0.0)
        for batch in frame_batches(run.train, self.val_slice, 256):
            features = model.encode(to_device(batch, run.device))
            full = model.decode(features)
            for c in sums:
                present = [m for i, m in enumerate(model.modalities) if c >> i & 1]
                sums[c] += float((model.decode(features, present) - full).norm(dim=-1).mean(-1).sum()) * 1000
        model.train(was_training)
        return {c: s / len(self.val_slice) for c, s in sums.items()}

    def on_epoch_end(self, run) -> None:
        if self.mine_from <= run.epoch < self.begin:
            for c, d in self.measure_discrepancy(run).items():
                self.discrepancy[c] += d
        if run.epoch == self.begin - 1:
            self.weak = weak_combinations(self.discrepancy, run.model.modalities)

    def epoch_metrics(self, run) -> dict:
        row = {f"mmanet_d_{combination_name(c, run.model.modalities)}": d for c, d in self.discrepancy.items()}
        if self.weak:
            row["mmanet_weak"] = " ".join(combination_name(c, run.model.modalities) for c in self.weak)
        return row

    def state_dict(self) -> dict:
        return {"discrepancy": {str(c): d for c, d in self.discrepancy.items()}, "weak": list(self.weak)}

    def load_state_dict(self, state: dict) -> None:
        self.discrepancy = {int(c): d for c, d in state["discrepancy"].items()}
        self.weak = list(state["weak"])
