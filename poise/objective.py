"""What a regression is trained on and scored by: a per-sample loss and the metrics it reports.

The loop trains the mean of ``sample_loss``; everything that needs one number per sample goes through it too
(the Fisher of AWC and EWC, NIS's noisy/clean split, Co-teaching's and DivideMix's sample selection, DMRNet's and
MMANet's hard samples), and the loop's validation and test numbers are ``metrics``. A run holds one
(``Run.objective``), so a user's model with a (B, D) target is trained and scored as consistently as the pose
model is.

- ``POSE`` (MM-Fi's): the per-sample MPJPE in metres (001 Eq. 10) as the loss; MPJPE, PA-MPJPE and root-relative
  MPJPE in millimetres as the metrics (``poise.metrics``, the MM-Fi toolbox's definitions).
- ``regression(loss=...)`` for any other target: ``"l2"`` (the Euclidean error over the target's last axis,
  averaged over any axes between: MPJPE's form for any shape), ``"mse"``, ``"l1"``, or a function
  ``(pred, target) -> (B,)``; metrics ``l2``, ``mse`` and ``mae``, in the target's units.

A metric's name carries a unit only when the objective has one: ``test_mpjpe_mm`` for poses, ``test_l2`` for a
target whose unit poise cannot know (``regression(unit="mm", scale=1000)`` for one in metres).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from poise.errors import PoiseError
from poise.metrics import M_TO_MM, mpjpe_mm, pa_mpjpe_mm, sample_mpjpe


def check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    """Raise unless ``pred`` and ``target`` are one batch of the same shape (a broadcast would silently score
    something else)."""
    if pred.shape != target.shape or pred.ndim < 1:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape "
                         f"(batch first); make the model's output the target's shape")


def euclidean(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,): the Euclidean norm of the error over the last axis, averaged over the axes between the batch and
    it; a (B,) target gives |error|. Smooth at zero error (finite gradient there), as ``sample_mpjpe`` is."""
    check_pair(pred, target)
    error = (pred - target).reshape(len(pred), -1, pred.shape[-1] if pred.ndim > 1 else 1)
    return (error.square().sum(-1) + 1e-12).sqrt().mean(-1)


def squared(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,): the mean squared error over each sample's target values."""
    check_pair(pred, target)
    return (pred - target).reshape(len(pred), -1).square().mean(-1)


def absolute(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,): the mean absolute error over each sample's target values."""
    check_pair(pred, target)
    return (pred - target).reshape(len(pred), -1).abs().mean(-1)


LOSSES = {"l2": euclidean, "mse": squared, "l1": absolute}


@dataclass(frozen=True)
class Objective:
    """A per-sample loss (``sample_loss(pred, target) -> (B,)``, differentiable), reported as ``loss_name``
    after multiplying by ``loss_scale``, and ``metrics``: {name: (pred, target) -> (B,) per-sample values}, each
    reported as its mean, the first the one progress lines show. ``unit`` is the unit of the target times
    ``scale`` (the output spreads the assessment records are named with it)."""

    sample_loss: Callable
    metrics: dict = field(default_factory=dict)
    loss_name: str = "loss"
    loss_scale: float = 1.0
    scale: float = 1.0
    unit: str = ""

    def __post_init__(self):
        if not callable(self.sample_loss):
            raise PoiseError(f"Objective.sample_loss must be a function (pred, target) -> (B,), got {self.sample_loss!r}")
        if not self.metrics or not all(callable(fn) for fn in self.metrics.values()):
            raise PoiseError("Objective.metrics must name at least one function (pred, target) -> (B,); the loop "
                             "reports and the robust evaluation tabulates them")

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch: the mean of ``sample_loss``."""
        return self.sample_loss(pred, target).mean()

    def named(self, name: str) -> str:
        """``name`` with the objective's unit, if it has one (``unimodal_std`` -> ``unimodal_std_mm``)."""
        return f"{name}_{self.unit}" if self.unit else name

    def sample_metrics(self, pred: torch.Tensor, target: torch.Tensor) -> dict:
        """{name: (B,) float64 values} of every metric on one batch (no gradient)."""
        pred, target = pred.detach(), target.detach()
        return {name: fn(pred, target).double() for name, fn in self.metrics.items()}


def _pose_metric(fn, **kw):
    def metric(pred, target):  # per frame in float64, as the means were
        return fn(pred.double(), target.double(), reduction="none", **kw)
    return metric


POSE = Objective(sample_loss=sample_mpjpe, loss_name="mpjpe_mm", loss_scale=M_TO_MM, scale=M_TO_MM, unit="mm",
                 metrics={"mpjpe_mm": _pose_metric(mpjpe_mm), "pa_mpjpe_mm": _pose_metric(pa_mpjpe_mm),
                          "rootrel_mpjpe_mm": _pose_metric(mpjpe_mm, root_relative=True)})


def regression(loss="l2", unit: str = "", scale: float = 1.0) -> Objective:
    """An objective for any target: ``loss`` one of ``LOSSES`` or a function ``(pred, target) -> (B,)``;
    metrics ``l2``, ``mae`` and ``mse`` of the target times ``scale``, named with ``unit`` when given (e.g.
    ``unit="mm"``, ``scale=1000`` for a target in metres: ``l2_mm``, ``mae_mm``, ``mse_mm2``)."""
    if callable(loss):
        name = getattr(loss, "__name__", "")
        sample_loss, name = loss, name if name.isidentifier() else "loss"  # a lambda: "loss"
    elif loss in LOSSES:
        sample_loss, name = LOSSES[loss], loss
    else:
        raise PoiseError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}, or pass a function "
                         f"(pred, target) -> per-sample losses (B,)")
    def scaled(fn, power=1):
        return lambda pred, target: fn(pred, target) * scale ** power

    suffix = f"_{unit}" if unit else ""
    squares = sample_loss is squared
    return Objective(sample_loss=sample_loss, loss_name=name + (suffix + "2" if squares and unit else suffix),
                     loss_scale=scale ** 2 if squares else scale, scale=scale, unit=unit,
                     metrics={"l2" + suffix: scaled(euclidean), "mae" + suffix: scaled(absolute),
                              "mse" + (suffix + "2" if unit else ""): scaled(squared, 2)})
