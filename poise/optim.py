"""The optimiser is part of a method's recipe: which one, its settings, and one parameter group per modality.

Gradient-scaling methods (OGM-GE, AGM) act by multiplying an encoder's gradient by a coefficient k. Adam
divides each parameter's step by a running estimate of its gradient's magnitude, so a scale that changes
slowly is largely undone (a constant k leaves Adam's step unchanged); SGD with momentum moves k times as far.
So every method declares the optimiser its reference trains with (``Method.reference_optimizer``), and
``optimizer: auto`` (the default) uses it; ``adam`` or ``sgd`` override it, e.g. to train a baseline the same
way as the method it is compared with.

The defaults of each optimiser are its reference recipe:

- ``adam``: lr 1e-3, no weight decay (papers 000 and 001: Adam, lr 1e-3);
- ``sgd``: momentum 0.9, weight decay 1e-4 (the OGM-GE and AGM references), lr ``SGD_LR``. The references'
  lr (1e-3 with cross-entropy) does not carry over to a pose loss in metres; ours was chosen for joint
  training on held-out training sequences of the demo data (docs/bench.md), never on the test split. A
  method whose loss is steeper under SGD (ARL, DGL, ARM: unimodal terms through the shared head with
  features x M, or feature gains) declares its own ``reference_lr``, chosen the same way.

Parameter groups: one per modality encoder, one ``"fusion"`` (fusion module and head), and one per module a
method owns (``Method.modules()``, e.g. G-Blending's unimodal heads). ``lr_groups`` multiplies a group's
learning rate by a factor (the schedule keeps the factor): a per-encoder learning rate is the Adam-faithful
form of a per-encoder gradient scale.
"""

from __future__ import annotations

import difflib

import torch
from poise.choices import OPTIMIZERS
from poise.errors import PoiseError

SGD_LR = 0.3
DEFAULTS = {"adam": dict(lr=1e-3, momentum=None, weight_decay=0.0),
            "sgd": dict(lr=SGD_LR, momentum=0.9, weight_decay=1e-4)}
CHOICES = OPTIMIZERS  # "auto", then each of DEFAULTS


def resolve(config, method) -> dict:
    """The optimiser a run uses: ``{"optimizer", "lr", "momentum", "weight_decay", "lr_groups"}``, the config's
    values where it sets them, else the defaults of the optimiser (the method's reference one for ``auto``)."""
    name = method.reference_optimizer if config.optimizer == "auto" else config.optimizer
    if name not in DEFAULTS:
        raise ValueError(f"method {method.name!r} declares reference optimiser {name!r}, which poise does not have "
                         f"({', '.join(DEFAULTS)})")
    defaults = dict(DEFAULTS[name])
    if name == method.reference_optimizer and method.reference_lr is not None:
        defaults["lr"] = method.reference_lr  # the method's own recipe, e.g. SGD with a smaller step
    pick = {k: (defaults[k] if getattr(config, k) is None else float(getattr(config, k)))
            for k in ("lr", "weight_decay")}
    momentum = float(config.momentum) if name == "sgd" else None
    return {"optimizer": name, **pick, "momentum": momentum, "lr_groups": dict(config.lr_groups)}


def build(spec: dict, groups: dict) -> torch.optim.Optimizer:
    """The optimiser ``spec`` (from ``resolve``) over ``groups`` ({name: parameters}), one parameter group each,
    tagged with its ``name`` and ``lr_factor``."""
    unknown = sorted(set(spec["lr_groups"]) - set(groups))
    if unknown:
        close = difflib.get_close_matches(unknown[0], groups, n=1)
        raise PoiseError(f"config key 'lr_groups' names {unknown}, which is not a parameter group of this run"
                         + (f" (did you mean {close[0]!r}?)" if close else "")
                         + f"; its groups: {', '.join(groups)}")
    param_groups = []
    for name, params in groups.items():
        factor = float(spec["lr_groups"].get(name, 1.0))
        if not factor >= 0:
            raise PoiseError(f"config key 'lr_groups': the factor of {name!r} must be >= 0, got {factor!r}")
        params = [p for p in params if p.requires_grad]
        if params:
            param_groups.append({"params": params, "name": name, "lr_factor": factor, "lr": spec["lr"] * factor})
    if spec["optimizer"] == "adam":
        return torch.optim.Adam(param_groups, lr=spec["lr"], weight_decay=spec["weight_decay"])
    return torch.optim.SGD(param_groups, lr=spec["lr"], momentum=spec["momentum"], weight_decay=spec["weight_decay"])


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """The run's current learning rate before group factors (the schedule's value)."""
    for group in optimizer.param_groups:
        if group["lr_factor"] > 0:
            return group["lr"] / group["lr_factor"]
    return 0.0
