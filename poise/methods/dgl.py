"""``dgl``: Disentangled Gradient Learning (paper 002, second abstract; Wei et al., ICCV 2025), adapted to
regression and to M modalities.

DGL's argument: the fusion module shrinks the gradient that reaches each encoder, so in a multi-modal model
even the dominant modality is under-optimised compared with training it alone. So the two parts learn from
different losses, by three stop-gradients:

    encoders       <- alpha * 2/M * sum_m MPJPE(y_m),  y_m = modality m's own prediction, the fusion and
                      head *not* updated by this loss
    fusion + head  <- MPJPE(decode(sg(z)))             the multi-modal loss on detached features

Evaluation is the ordinary ``decode(z)``. The fused prediction of each step is ``decode`` on detached
features, so the loop's loss trains only the fusion and the head. The unimodal outputs y_m come from
``heads``:
- ``own`` (the default): a linear head per modality, owned by the method and trained with its encoder by the
  unimodal loss, which then reaches nothing else: one backward routes both losses exactly.
- ``shared``: the reference's form, the shared fusion and head with the other modalities zeroed and the
  features x M (``responses.unimodal_predictions``); ``extra_loss`` takes the unimodal loss's gradient with
  respect to the encoder parameters only (``torch.autograd.grad``), which ``after_backward`` adds to the
  encoders and averages over ranks under torchrun (it comes after the loop's all-reduce). With a concat
  fusion this pins the fused output to the equal-weight mean of the unimodal outputs (each encoder makes
  ``M W_m z_m`` hit the pose, whatever ``W_m`` the fused loss chose): on the demo data the fused model
  (116 mm training MPJPE after 12 epochs) was far worse than RGB's own output (66 mm). That is why ``own``
  is the default. As the reference (``research/related_methods.md`` sec. 2): alpha = 4, SGD with momentum 0.9 and
weight decay 1e-4 (``reference_optimizer``; under Adam a constant alpha is normalised away).
Adapted to regression (ours): the losses are MPJPE instead of cross-entropy; plain zero-padding through the
shared head would push a concat model's encoders to make ``W_m z_m`` the whole pose offset while the head
fits their sum, a fixed point that exists only if the offset is zero (hence features x M, or own heads). alpha is applied as alpha * 2 / M per modality,
the two-modality reference's total unimodal weight. Unlike the reference, the fusion parameters are found
from ``modality_parameters`` (not by a name prefix, which without DataParallel let unimodal gradients leak
into the fusion module), and every fusion parameter is trained (its gated fusion never trained two layers).
Each epoch's row of ``metrics.csv`` holds every modality's mean unimodal training MPJPE ``dgl_uni_mm_<m>``.
"""

from __future__ import annotations


import dataclasses

import torch

from poise import distributed
from poise.methods import register
from poise.methods.base import Method, Statistic
from poise.methods.responses import HEADS, UnimodalHeads, unimodal_outputs
from poise.errors import PoiseError


@register("dgl")
@dataclasses.dataclass
class DGL(Method):
    reference_optimizer = "sgd"
    reference_lr = 0.1  # SGD's 0.3 diverges; chosen on the held-out sequences (docs/bench.md)
    statistic = Statistic("dgl_uni_mm", "unimodal training MPJPE (mm) in the last epoch", digits=1, over="last")
    smoke_fusion = "mlp"
    alpha: float = 4.0  # the unimodal loss weight (reference default 4), applied as alpha * 2 / M
    heads: str = "own"  # unimodal outputs: own linear heads, or the shared head with features x M

    def __post_init__(self):
        if self.heads not in HEADS:
            raise PoiseError(f"dgl: heads must be one of {', '.join(HEADS)}, got {self.heads!r}")
        self.unimodal_heads: UnimodalHeads | None = None
        if not self.alpha > 0:
            raise PoiseError(f"dgl: alpha must be > 0 (the encoders learn only from alpha x the unimodal "
                             f"losses), got {self.alpha}")
        self._grads: dict = {}
        self._sums: dict = {}
        self._steps = 0

    def setup(self, run) -> None:
        if self.heads == "own":
            self.unimodal_heads = UnimodalHeads(run.model, run.config.seed)

    def modules(self) -> dict:
        return {"dgl_heads": self.unimodal_heads} if self.unimodal_heads is not None else {}

    def predict(self, run, batch: dict, features: dict) -> torch.Tensor:
        return run.model.decode({m: f.detach() for m, f in features.items()})

    def extra_loss(self, run, step):
        """The unimodal losses (own heads), or (shared head) their gradients for the encoders alone, stored."""
        unimodal = unimodal_outputs(run.model, step.features, self.unimodal_heads)
        losses = {m: run.objective.loss(y, step.batch["gt"]) for m, y in unimodal.items()}
        weight = self.alpha * 2 / len(losses)
        for m, loss in losses.items():  # read once, at the end of the epoch: no host sync per step
            self._sums.setdefault(m, []).append(loss.detach())
        self._steps += 1
        if self.unimodal_heads is not None:
            return weight * sum(losses.values())  # reaches the encoders and their own heads only
        groups = run.model.modality_parameters()
        params = [p for m in run.model.modalities for p in groups[m] if p.requires_grad]
        grads = torch.autograd.grad(weight * sum(losses.values()), params, allow_unused=True,
                                    retain_graph=True)  # another part's loss may still go through the features
        self._grads = dict(zip(params, grads))
        return None

    def after_backward(self, run, step) -> None:
        if not self._grads:
            return
        for p, g in self._grads.items():
            if g is None:
                continue
            p.grad = g if p.grad is None else p.grad + g
        self._grads = {}
        groups = run.model.modality_parameters()  # the loop averaged before these existed
        distributed.average_parameter_gradients([p for m in run.model.modalities for p in groups[m]])

    def on_epoch_start(self, run) -> None:
        self._sums, self._steps = {}, 0

    def epoch_metrics(self, run) -> dict:
        scale, name = run.objective.loss_scale, run.objective.named("dgl_uni")
        sums = {m: sum(v * scale for v in torch.stack(s).double().tolist()) for m, s in self._sums.items()}
        return {f"{name}_{m}": s / max(self._steps, 1) for m, s in sums.items()}
