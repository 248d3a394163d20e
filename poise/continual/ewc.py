"""EWC (Kirkpatrick et al., PNAS 2017) and paper 001's adaptive EWC (Eq. 7-9, 11-12).

- Generic Fisher, 001 Eq. 7: I(theta) = 1/|D| sum_i (dL_i/dtheta)^2, the diagonal empirical Fisher of the
  per-sample loss L_i = MPJPE of sample i (001 Eq. 10, metres), from ``poise.fisher`` (shared with AWC): the
  per-sample estimator is Eq. 7 exactly, the "batched" one (squared batch-mean gradients) its cheaper
  approximation. The ``Fisher`` records which estimator made it.
- Adaptive Fisher, 001 Eq. 8-9: on the noisy branch, I_t = 1/|D| sum_i [beta g_i^2 + (1 - beta) I_{t-1}]
  = beta * generic_t + (1 - beta) * I_{t-1}; every other parameter gets the generic Fisher of task t
  (001: "we apply the modified information matrix exclusively to the noisy branch"), i.e. as 001 writes it,
  parameters outside the noisy branch keep no importance from tasks before t. 001 computes it on the clean
  set C_t (Algorithm 2): pass the clean samples' batches.
- Penalty, 001 Eq. 11: sum_i F_ii (theta_i - theta*_i)^2 / 2 (Kirkpatrick's 1/2; Avalanche omits it), over
  the parameters the Fisher has; the caller's total is Eq. 12: MPJPE + lambda * penalty.

Scale of lambda: 001 sets lambda = 10k (and beta = 0.3) without naming the loss unit. Our loss is in metres,
as MM-Fi's ground truth and the training code of its toolbox are; we take 10k for a metre loss (the same
reading as ``poise.methods.awc`` for paper 000's alphas). With a millimetre loss, F grows by 10^6 and the loss
by 10^3: divide lambda by 1000 for the same balance between the two terms.

Parameters are named as in ``model.named_parameters()``; the noisy branch of modality m is the encoder
``model.encoders[m]`` (``branch_names``).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch

from poise.contrib.shapley import batch_scores
from poise.fisher import empirical_fisher, quadratic_penalty
from poise.metrics import sample_mpjpe
from poise.choices import EWC_MODES
from poise.continual.nis import MODES as NAMING_MODES, NONE, name_noisy_modality
from poise.errors import PoiseError
from poise.methods.base import Method
from poise.runtime import frame_batches

DEFAULT_LAMBDA = 10_000.0  # 001 Sec. 4.1, for a loss in metres (see the module docstring)
DEFAULT_BETA = 0.3  # 001 Sec. 4.1


@dataclasses.dataclass
class Fisher:
    """A diagonal Fisher: ``values`` {parameter name: tensor shaped like it}, the ``estimator`` that made it
    ("per_sample" = 001 Eq. 7 exactly, "batched" = squared batch-mean gradients), the number of ``samples``,
    and for an adaptive Fisher (Eq. 8-9) ``beta`` and the noisy ``branch`` parameter names."""

    values: dict
    estimator: str
    samples: int
    beta: float | None = None
    branch: tuple = ()

    def describe(self) -> dict:
        """JSON-able metadata (no tensors)."""
        return {"estimator": self.estimator, "samples": self.samples, "beta": self.beta,
                "branch": list(self.branch), "parameters": len(self.values)}


def branch_names(model, modality: str) -> set[str]:
    """Names (``model.named_parameters()``) of the parameters of ``model.encoders[modality]``."""
    if modality not in model.encoders:
        raise ValueError(f"modality={modality!r}: the model has encoders for {list(model.encoders)}")
    prefix = f"encoders.{modality}."
    names = {n for n, _ in model.named_parameters() if n.startswith(prefix)}
    assert len(names) == len(list(model.encoders[modality].parameters())), "encoder parameters shared or renamed"
    return names


def anchor_of(model) -> dict[str, torch.Tensor]:
    """theta*: a detached copy of every named parameter (take it at the end of a task)."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def fisher_generic(model, batches, per_sample: bool = True, sample_loss=sample_mpjpe) -> Fisher:
    """001 Eq. 7: the diagonal Fisher of the per-sample MPJPE over ``batches`` (dicts with "gt"), for every
    parameter that requires grad (``poise.fisher.empirical_fisher``: in eval mode; ``per_sample=False`` is the
    batched approximation; ``sample_loss``: the run's, MPJPE for poses)."""
    values, samples = empirical_fisher(model, batches, per_sample, sample_loss=sample_loss)
    return Fisher(values, "per_sample" if per_sample else "batched", samples)


def fisher_adaptive(model, batches, previous: Fisher, beta: float = DEFAULT_BETA, branch_params=(),
                    per_sample: bool = True, sample_loss=sample_mpjpe) -> Fisher:
    """001 Eq. 8-9: beta * generic + (1 - beta) * ``previous`` on the noisy branch (``branch_params``, names
    from ``branch_names``), the generic Fisher (Eq. 7, same estimator) everywhere else.

    The mean over samples of Eq. 9's F_i = beta g_i^2 + (1 - beta) I_prev is exactly this, since I_prev does
    not depend on i. ``previous`` must hold every branch parameter (with the same shape)."""
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta={beta!r} must be in [0, 1] (001 uses 0.3)")
    previous_values = previous.values if isinstance(previous, Fisher) else previous
    branch = set(branch_params)
    generic = fisher_generic(model, batches, per_sample, sample_loss)
    unknown = sorted(branch - set(generic.values))
    if unknown:
        raise ValueError(f"branch_params {unknown[:5]} are not trainable parameters of the model")
    missing = sorted(branch - set(previous_values))
    if missing:
        raise ValueError(f"the previous Fisher has no entry for branch parameters {missing[:5]}")
    values = {}
    for n, g in generic.values.items():
        if n in branch:
            prev = previous_values[n].to(g)
            if prev.shape != g.shape:
                raise ValueError(f"previous Fisher of {n} has shape {tuple(prev.shape)}, the parameter "
                                 f"{tuple(g.shape)}")
            values[n] = beta * g + (1 - beta) * prev
        else:
            values[n] = g
    return Fisher(values, generic.estimator, generic.samples, beta, tuple(sorted(branch)))


def ewc_penalty(model, fisher, anchor: dict) -> torch.Tensor:
    """001 Eq. 11: sum over the parameters in ``fisher`` (a ``Fisher`` or {name: tensor}) of
    F * (theta - theta*)^2 / 2 (``poise.fisher.quadratic_penalty``, shared with AWC), with theta* from
    ``anchor`` (``anchor_of`` at the end of the previous task). A differentiable scalar; the total loss (Eq. 12)
    is ``mpjpe + lam * penalty`` (``DEFAULT_LAMBDA``)."""
    values = fisher.values if isinstance(fisher, Fisher) else fisher
    params = dict(model.named_parameters())
    for n in values:
        if n not in params:
            raise ValueError(f"the Fisher has {n!r}, which is not a parameter of the model")
        if n not in anchor:
            raise ValueError(f"the anchor has no entry for {n!r}: take it with anchor_of(model)")
    if not values:
        return torch.zeros((), device=next(model.parameters()).device)
    return quadratic_penalty([params[n] for n in values], [anchor[n] for n in values], list(values.values()))


MODES = EWC_MODES[1:]  # generic, online, adaptive (poise.choices; "none" is no EWC)


@dataclasses.dataclass
class EWC(Method):
    """(Adaptive) EWC as a continual strategy: after each task, a Fisher and an anchor for every network the run
    trains (``run.model`` and the method's ``networks()``, e.g. Co-teaching's peer); during every later task,
    ``lam`` * 001 Eq. 11 against them is added to the loss (Eq. 12).

    ``mode`` says what the Fisher protects:
    - ``generic``: the last task only (001 Eq. 7 on its samples, anchored at its end), as 001 writes EWC;
    - ``online``: every task so far, F <- ``decay`` * F + F_task with one anchor at the latest task's end
      (Schwarz et al. 2018, "Progress & Compress"; Avalanche's ``mode="online"``);
    - ``adaptive``: 001 Eq. 8-9 for ``run.model`` (beta on the noisy branch, the generic Fisher elsewhere) after
      each later task; the noisy branch is the one NIS named (``run.record["nis"]["named"]``), and without NIS
      the modality whose contribution score dropped most over the task on the task's own assessment frames;
      when NIS named none, no branch (the generic Fisher throughout); other networks get the generic Fisher.
    The Fisher is estimated on ``fisher_frames`` of the samples the task trained on (NIS's clean set C_t).
    """
    needs: ClassVar[tuple] = ("encoders",)

    name: ClassVar[str] = "ewc"
    lam: float = DEFAULT_LAMBDA
    mode: str = "generic"
    beta: float = DEFAULT_BETA
    decay: float = 1.0
    per_sample: bool = True
    fisher_frames: int = 512
    naming: str = "absolute"

    def __post_init__(self):
        if self.mode not in MODES:
            raise PoiseError(f"ewc: mode is {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.naming not in NAMING_MODES:
            raise PoiseError(f"ewc: naming is {self.naming!r}: choose one of {', '.join(NAMING_MODES)}")
        if not self.lam >= 0:
            raise PoiseError(f"ewc: lam (the penalty's strength) must be >= 0, got {self.lam!r}")
        for key in ("beta", "decay"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise PoiseError(f"ewc: {key} must lie in [0, 1], got {getattr(self, key)!r}")
        if not 1 <= self.fisher_frames <= 1_000_000:
            raise PoiseError(f"ewc: fisher_frames must lie in 1 .. 1,000,000, got {self.fisher_frames!r}")
        self.fisher: dict[str, Fisher] = {}  # per network name ("model", "peer")
        self.anchor: dict[str, dict] = {}
        self.start_scores: dict = {}

    def networks_of(self, run) -> dict:
        return {"model": run.model, **run.method.networks()}

    def setup(self, run) -> None:
        # a restored stream's Fisher and anchor come from the checkpoint on the CPU: onto each parameter's
        # device (and dtype) once, not in every step's penalty
        for key, net in self.networks_of(run).items():
            if key in self.fisher:
                params = dict(net.named_parameters())
                self.fisher[key].values = {n: v.to(params[n]) for n, v in self.fisher[key].values.items()}
                self.anchor[key] = {n: v.to(params[n]) for n, v in self.anchor[key].items()}
        if self.mode == "adaptive":  # the task's assessment at its start, for naming without NIS
            self.start_scores = batch_scores(run.model, run.assess)

    def extra_loss(self, run, step):
        if not self.fisher or not self.lam:
            return None
        nets = self.networks_of(run)
        return self.lam * sum(ewc_penalty(nets[k], self.fisher[k], self.anchor[k]) for k in self.fisher)

    def on_task_end(self, run) -> None:
        rows = run.train_rows
        pick = np.random.default_rng([run.config.seed, run.task, 9]).permutation(len(rows))[: self.fisher_frames]
        frames = np.sort(rows[pick])

        def batches():
            return frame_batches(run.train, frames, run.config.batch_size)

        notes = {}
        for key, net in self.networks_of(run).items():
            previous = self.fisher.get(key)
            if self.mode == "adaptive" and key == "model" and previous is not None:
                named = run.record.get("nis", {}).get("named") or self.name_by_drop(run)
                branch = set() if named == NONE else branch_names(net, named)  # nothing named: Eq. 7 throughout
                fisher = fisher_adaptive(net, batches(), previous, self.beta, branch, self.per_sample,
                                         run.objective.sample_loss)
            else:
                fisher = fisher_generic(net, batches(), self.per_sample, run.objective.sample_loss)
                if self.mode == "online" and previous is not None:
                    fisher.values = {n: self.decay * previous.values[n].to(v) + v for n, v in fisher.values.items()}
                    fisher.samples += previous.samples
            self.fisher[key], self.anchor[key] = fisher, anchor_of(net)
            notes[key] = {**fisher.describe(), "mode": self.mode}
        run.record["fisher"] = notes["model"]
        if len(notes) > 1:
            run.record["fisher_networks"] = notes

    def name_by_drop(self, run) -> str:
        """Without NIS: the modality whose score on the task's own assessment frames fell most over the task,
        or "none" when none fell (scores usually rise while a task is learnt)."""
        named = name_noisy_modality(self.start_scores, run.scores(), mode=self.naming)
        run.record["named_without_nis"] = named
        return named

    def state_dict(self) -> dict:
        return {"fisher": {k: {"values": f.values, **f.describe()} for k, f in self.fisher.items()},
                "anchor": self.anchor}

    def load_state_dict(self, state: dict) -> None:
        self.fisher = {k: Fisher(s["values"], s["estimator"], s["samples"], s["beta"], tuple(s["branch"]))
                       for k, s in state["fisher"].items()}
        self.anchor = dict(state["anchor"])

