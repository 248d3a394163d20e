"""``cggm``: Classifier-guided Gradient Modulation (Guo, Jin, Chen and Zhao, NeurIPS 2024, Sec. 3: gradient
magnitude and gradient direction modulation), adapted to pose regression and to M modalities.

CGGM adds a classifier f_m on each encoder's (detached) features, used only in training, and reads two things
off it. In the paper's terms, with encoders phi_m, the fused model F and the task loss L_task:

    L_m      = loss(f_m(sg(phi_m(x_m))), y)                   trains f_m alone (the encoders never see it)
    d_m^t    = eps_m^t - eps_m^(t-1)                           improvement of f_m's metric eps (accuracy)
    B_m^t    = (sum_j d_j^t - d_m^t) / sum_j d_j^t            the balancing term: the faster a modality
                                                              improves, the smaller its B
    grad(phi_m) <- rho * B_m^t * grad(phi_m) L_task           magnitude modulation
    L_gm     = 1/M sum_m (|B_m| - B_m cos(g_m, g_F))          direction modulation: g_m the unimodal gradient
                                                              (f_m's), g_F the fused model's
    L        = L_task + lambda * L_gm

What the reference (``zrguo/CGGM`` [d7890a8], ``src/msatrain.py`` ``train``, CMU-MOSI: 3 modalities, L1 loss;
``run/mosi_run.py`` for the settings) really does:
- eps is the classifier's accuracy on the current training batch (MOSI: binary sentiment accuracy of the
  regressed score, ``train_eval_senti``), and d is taken between consecutive *batches* (``acc1`` starts at 0), so
  it is dominated by batch-to-batch variation; the denominator is ``sum d + 1e-8``, which is 0 whenever the
  accuracy differences cancel (steps of 1/64), giving coefficients of order 1e6 of either sign. The encoders'
  gradients are scaled by ``rho * B`` (negative B reverses an encoder's gradient) and then the whole model's
  gradient norm is clipped to 0.8, which is what keeps such steps bounded.
- ``cal_cos`` (``src/eval_metrics.py``) takes the cosine between the output-layer *weights* of each classifier and
  of the fused model (it is passed the parameters, not their ``.grad``), so L_gm rotates the fused output
  layer's weight vector towards (B > 0) or away from (B < 0) the classifiers'; its gradient reaches only that
  layer (the classifiers' gradients are zeroed before their own backward). L_gm of step t is added to the loss
  of step t + 1; the sum is written out for exactly 3 (MOSI, IEMOCAP) or 2 (Food-101) modalities.
- Encoder gradients are scaled for ``encoders.{m}`` but not for the per-modality input projections ``proj.{m}``.
- Adam, lr 1e-3 for the model and 5e-4 for the classifiers (a second Adam); ReduceLROnPlateau (x0.1, patience
  10) on the validation loss; 30 epochs, batch 64, rho 1.3, lambda 0.2, gradient clipping 0.8. Each classifier
  is a 2-layer transformer, a linear layer applied twice with a ReLU, and an output layer.

Here, each epoch (``tests/test_balancing.py`` tests B, the scaling, L_gm and where its gradient goes):

    y_m    = mean_pose + head_m(sg(z_m))           a linear head per modality (``UnimodalHeads``), in place of f_m
    L_m    = MPJPE(y_m)                            trains the head only; the heads are never evaluated
    e_m    = mean over the epoch's steps of L_m (mm)
    d_m    = max(e_m(previous epoch) - e_m(this epoch), 0)         improvement = decrease of the unimodal MPJPE
    B_m    = (sum_j d_j - d_m) / sum_j d_j, or (M - 1) / M for all if no modality improved (and in epochs 0, 1)
    g_m    = d MPJPE(y_m) / d z_m,   g_F,m = d MPJPE(decode(sg(z))) / d z_m        (both (B, d), on this batch)
    L_gm   = 1/M sum_m (|B_m| - B_m cos(g_m, g_F,m))
    L      = MPJPE(decode(z)) + sum_m L_m + lambda * L_gm,   then  grad(encoder m) <- rho * B_m * grad(encoder m)

with B_m from the epochs before the current one (computed at the end of each epoch, applied through the next).

Adapted to regression and M modalities (ours):
- The classifiers become linear regression heads on each encoder's detached features (the heads ARL, DGL and
  G-Blending own), trained by their MPJPE, the pose loss (the reference's loss on MOSI is L1); accuracy
  improvement becomes the decrease of the head's training MPJPE.
- Improvement between *epochs*, not batches: consecutive batches hold different frames, and one step's
  decrease of a unimodal MPJPE is far smaller than the spread of that error between batches, so a per-step d is
  noise and sum d crosses 0 all the time (the reference's 1e6 coefficients). The epoch means are read once per
  epoch (no host read per step).
- d is clipped at 0, so B lies in [0, 1] and sums to M - 1: the modality that improved most is slowed most, one
  that did not improve keeps its full gradient, and no gradient is reversed (the reference's negative B and its
  clipping, which poise's loop does not do, are left out). If no modality improved there is no faster one:
  every B is (M - 1) / M, the value at equal improvement, as before the first two epoch means exist.
- Direction: the reference's weight cosine needs the fused and unimodal output layers to have the same shape
  (its transformer fusion outputs the encoders' width; a concat head reads M times that). Here the two
  gradients are compared where every fusion has them both: the gradient that modality m's features receive
  from its own head's loss and from the fused loss, on features detached from the encoders, so L_gm's gradient
  (a double backward through ``decode``) reaches the fusion and head only, as the reference's reaches only the
  fused output layer; g_m is a fixed target (the heads get no gradient from L_gm either). L_gm acts in the same
  step (the reference's one-step lag is an artefact of computing it after the backward). M modalities in
  place of the reference's hard-coded 3.
- rho = 1.3 and lambda = 0.2 as the reference; with the sum of B equal to M - 1 the mean factor rho B is
  1.3 x 3/4 = 0.975 at M = 4 (the reference's 0.87 at M = 3). How much lambda weighs depends on the task:
  L_gm is a cosine, invariant to the head's scale, so its gradient on the head scales inversely with the
  head's weights, which regress poses in metres here and sentiment scores on MOSI. At the last epoch of the
  P1 bench's CGGM runs, the gradient lambda L_gm puts on the fusion and head is 1.7-2.2x the MPJPE's (seeds
  0-2, ``benchmarks/cggm_direction_weight.py``): the direction loss, not the task, leads the head. The
  ablation preset trains lambda 0.02 and 0 beside 0.2 (``docs/bench.md``); the default stays the
  reference's. No gradient clipping (a loss in metres), and poise's step schedule.
Optimiser: the reference's Adam (``reference_optimizer``), at lr 1e-3, which is poise's Adam default
(``reference_lr`` None). The heads train at the same lr as the model; ``lr_groups: {cggm_heads: 0.5}`` gives
the reference's classifier lr ratio. Under Adam a coefficient acts relative to its average over Adam's
second-moment window (1 / (1 - 0.999) = 1000 steps): a change of B moves an encoder's step, a B that stays put
is normalised away, as in the reference. Refuses a run of one modality (its B would be 0).
Each epoch's row of ``metrics.csv`` holds every modality's applied coefficient ``cggm_k_<m>`` (rho B), its
heads' training MPJPE ``cggm_uni_mm_<m>`` and its mean cosine ``cggm_cos_<m>``, and the mean ``cggm_gm``.
"""

from __future__ import annotations

from typing import ClassVar

import dataclasses

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from poise import distributed
from poise.methods import register
from poise.methods.base import Method, Statistic
from poise.methods.responses import UnimodalHeads
from poise.objective import POSE
from poise.errors import PoiseError


def balanced(modalities) -> dict:
    """B when no modality learns faster than another: (M - 1) / M each (the value at equal improvement)."""
    modalities = list(modalities)
    return {m: (len(modalities) - 1) / len(modalities) for m in modalities}


def balancing_terms(previous: dict, now: dict) -> dict:
    """B_m from each modality's mean unimodal error (mm) in the epoch before and in the last one: the improvement
    d_m = max(previous - now, 0), B_m = (sum d - d_m) / sum d (balanced if nothing improved)."""
    gains = {m: max(previous[m] - now[m], 0.0) for m in now}
    total = sum(gains.values())
    if not total > 0:
        return balanced(now)
    return {m: (total - d) / total for m, d in gains.items()}


def direction_loss(terms: dict, cosines: torch.Tensor) -> torch.Tensor:
    """L_gm = 1/M sum_m (|B_m| - B_m cos_m), ``cosines`` (M,) in the order of ``terms``."""
    return sum(abs(b) - b * cosines[i] for i, b in enumerate(terms.values())) / len(terms)


def gradient_cosines(model, heads: UnimodalHeads, features: dict, gt: torch.Tensor,
                     objective=POSE) -> tuple[dict, torch.Tensor]:
    """Each head's MPJPE on the detached features (differentiable with respect to the heads only) and, per
    modality in the model's order, the cosine between the gradients that its features receive from its head's
    MPJPE (fixed) and from the fused MPJPE (differentiable with respect to the fusion and head only)."""
    leaves = {m: features[m].detach().requires_grad_() for m in model.modalities}
    inputs = [leaves[m] for m in model.modalities]
    losses = {m: objective.loss(y.float(), gt) for m, y in heads.outputs(model, leaves).items()}
    unimodal = torch.autograd.grad(sum(losses.values()), inputs, retain_graph=True)  # head m reads z_m only
    with sdpa_kernel([SDPBackend.MATH]):  # the fused attention kernels have no double backward
        fused = objective.loss(model.decode(leaves).float(), gt)
    fused_grads = torch.autograd.grad(fused, inputs, create_graph=True)
    cosines = torch.stack([F.cosine_similarity(u.flatten().float(), f.flatten().float(), dim=0)
                           for u, f in zip(unimodal, fused_grads)])
    return losses, cosines


@register("cggm")
@dataclasses.dataclass
class CGGM(Method):
    needs: ClassVar[tuple] = ("feature size", "output shape")
    reference_optimizer = "adam"
    reference_lr = None  # the reference's Adam lr 1e-3 is poise's Adam default
    statistic = Statistic("cggm_k", "mean encoder gradient coefficient rho B")
    smoke_epochs = 3  # B from the epoch means of epochs 0 and 1 acts in epoch 2, the one the cut run resumes
    rho: float = 1.3  # the gradient scale (reference: 1.3)
    lam: float = 0.2  # the direction loss's weight lambda (reference: 0.2)

    def __post_init__(self):
        if not self.rho > 0:
            raise PoiseError(f"cggm: rho must be > 0 (the encoders' gradients are scaled by rho B), got {self.rho}")
        if not self.lam >= 0:
            raise PoiseError(f"cggm: lam must be >= 0 (the direction loss's weight), got {self.lam}")
        self.heads: UnimodalHeads | None = None
        self.terms: dict = {}  # B_m, for the next epoch
        self.previous: dict | None = None  # the last epoch's mean unimodal MPJPE (mm)
        self.applied: dict = {}  # the B_m of the epoch being trained
        self.epoch_values: dict = {}  # the last epoch's means, for epoch_metrics
        self._sums: tuple | None = None  # (unimodal MPJPE (M,), cosines (M,), L_gm), summed on the device
        self._steps = 0

    def setup(self, run) -> None:
        modalities = run.model.modalities
        if len(modalities) < 2:
            raise PoiseError(f"cggm balances two or more modalities; this run has {len(modalities)} "
                             f"({', '.join(modalities)}), whose B would be 0")
        self.heads = UnimodalHeads(run.model, run.config.seed)
        self.terms, self.previous = balanced(modalities), None  # a resumed run restores its own after this
        self.applied, self.epoch_values = dict(self.terms), {}

    def modules(self) -> dict:
        return {"cggm_heads": self.heads}

    def on_epoch_start(self, run) -> None:
        self.applied = dict(self.terms)
        self._sums, self._steps = None, 0

    def extra_loss(self, run, step):
        losses, cosines = gradient_cosines(run.model, self.heads, step.features, step.batch["gt"], run.objective)
        gm = direction_loss(self.applied, cosines)
        with torch.no_grad():  # kept on the device and read once, at the end of the epoch: no host read per step
            values = (torch.stack([losses[m].detach() for m in run.model.modalities]), cosines.detach(), gm.detach())
            self._sums = values if self._sums is None else tuple(a + b for a, b in zip(self._sums, values))
        self._steps += 1
        return sum(losses.values()) + self.lam * gm

    def after_backward(self, run, step) -> None:
        groups = run.model.modality_parameters()
        for m, b in self.applied.items():
            for p in groups[m]:
                if p.grad is not None:
                    p.grad.mul_(self.rho * b)

    def on_epoch_end(self, run) -> None:
        if not self._steps:
            return
        modalities = run.model.modalities
        unimodal, cosines, gm = self._sums
        sums = torch.cat([unimodal * run.objective.loss_scale, cosines, gm[None]]).double().tolist()
        means = [v / self._steps for v in sums]
        means = distributed.all_mean(dict(enumerate(means)))  # every rank then computes the same B
        now = {m: means[i] for i, m in enumerate(modalities)}
        self.epoch_values = {"uni": now, "cos": {m: means[len(modalities) + i] for i, m in enumerate(modalities)},
                             "gm": means[2 * len(modalities)]}
        if self.previous is not None:
            self.terms = balancing_terms(self.previous, now)
        self.previous = now

    def epoch_metrics(self, run) -> dict:
        row = {f"cggm_k_{m}": self.rho * b for m, b in self.applied.items()}
        for key, name in (("uni", run.objective.named("cggm_uni")), ("cos", "cggm_cos")):
            row.update({f"{name}_{m}": v for m, v in self.epoch_values.get(key, {}).items()})
        if "gm" in self.epoch_values:
            row["cggm_gm"] = self.epoch_values["gm"]
        return row

    def state_dict(self) -> dict:
        return {"terms": self.terms, "previous": self.previous}

    def load_state_dict(self, state: dict) -> None:
        self.terms = dict(state["terms"])
        self.previous = None if state["previous"] is None else dict(state["previous"])
