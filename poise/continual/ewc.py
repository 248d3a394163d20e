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

import torch

from poise.fisher import empirical_fisher

DEFAULT_LAMBDA = 10_000.0  # 001 Sec. 4.1, for a loss in metres (see the module docstring)
DEFAULT_BETA = 0.3  # 001 Sec. 4.1
ESTIMATORS = ("per_sample", "batched")


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


def fisher_generic(model, batches, per_sample: bool = True) -> Fisher:
    """001 Eq. 7: the diagonal Fisher of the per-sample MPJPE over ``batches`` (dicts with "gt"), for every
    parameter that requires grad (``poise.fisher.empirical_fisher``: in eval mode; ``per_sample=False`` is the
    batched approximation)."""
    values, samples = empirical_fisher(model, batches, per_sample)
    return Fisher(values, "per_sample" if per_sample else "batched", samples)


def fisher_adaptive(model, batches, previous: Fisher, beta: float = DEFAULT_BETA, branch_params=(),
                    per_sample: bool = True) -> Fisher:
    """001 Eq. 8-9: beta * generic + (1 - beta) * ``previous`` on the noisy branch (``branch_params``, names
    from ``branch_names``), the generic Fisher (Eq. 7, same estimator) everywhere else.

    The mean over samples of Eq. 9's F_i = beta g_i^2 + (1 - beta) I_prev is exactly this, since I_prev does
    not depend on i. ``previous`` must hold every branch parameter (with the same shape)."""
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta={beta!r} must be in [0, 1] (001 uses 0.3)")
    previous_values = previous.values if isinstance(previous, Fisher) else previous
    branch = set(branch_params)
    generic = fisher_generic(model, batches, per_sample)
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
    F * (theta - theta*)^2 / 2, with theta* from ``anchor`` (``anchor_of`` at the end of the previous task).
    A differentiable scalar; the total loss (Eq. 12) is ``mpjpe + lam * penalty`` (``DEFAULT_LAMBDA``)."""
    values = fisher.values if isinstance(fisher, Fisher) else fisher
    params = dict(model.named_parameters())
    total = None
    for n, f in values.items():
        if n not in params:
            raise ValueError(f"the Fisher has {n!r}, which is not a parameter of the model")
        if n not in anchor:
            raise ValueError(f"the anchor has no entry for {n!r}: take it with anchor_of(model)")
        p = params[n]
        term = (f.to(p) * (p - anchor[n].to(p)).square()).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros((), device=next(model.parameters()).device)
    return total / 2
