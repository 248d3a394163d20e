"""EWC (Kirkpatrick et al., PNAS 2017) and paper 001's adaptive EWC (Eq. 7-9, 11-12).

- Generic Fisher, 001 Eq. 7: I(theta) = 1/|D| sum_i (dL_i/dtheta)^2, the diagonal empirical Fisher of the
  per-sample loss L_i = MPJPE of sample i (001 Eq. 10, metres). Two estimators (``fisher_generic``):
  ``per_sample=True`` is Eq. 7 exactly (one backward per sample); ``per_sample=False`` is the cheaper
  "batched" approximation most EWC code uses (Avalanche's ``EWCPlugin``): the squared gradient of each
  batch's MEAN loss, weighted by the batch size. Since mean_b(g)^2 = mean_b(g^2) - var_b(g), it drops the
  within-batch variance of the gradients, so it is smaller than Eq. 7 (equal with batches of one sample) and
  shrinks as batches grow; van de Ven (2025, arXiv 2502.11756) shows the choice changes EWC's results.
  The ``Fisher`` records which estimator made it.
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

import warnings

import torch

from poise.continual.nis import sample_mpjpe
from poise.train import to_device

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
    """001 Eq. 7: the diagonal Fisher of the per-sample MPJPE over ``batches`` (dicts with "gt").

    Computed in eval mode (dropout off, BatchNorm on its running statistics, the model's mode restored), for
    every parameter that requires grad (a frozen parameter gets no entry; one the loss does not reach gets
    zeros). ``per_sample=True``: each sample's own gradient, vectorised over the batch with ``torch.func``
    (vmap of grad; exact, since in eval mode samples do not interact, and about 3x faster on CPU than a
    backward per sample, which the tests compare it with); ``per_sample=False``: one
    backward per batch of the batch-mean loss, squared, weighted by the batch size (see the module docstring
    for how this differs)."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("no parameter requires grad: nothing to estimate a Fisher for")
    names, tensors = list(params), list(params.values())
    values = {n: torch.zeros_like(p) for n, p in params.items()}
    device = tensors[0].device
    total = 0
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            batch = to_device(batch, device)
            if per_sample:
                b = len(batch["gt"])
                for n, g in _per_sample_grads(model, params, batch).items():
                    values[n] += g.square().sum(0)
                total += b
                continue
            with torch.enable_grad():
                losses = sample_mpjpe(model(batch), batch["gt"])
            b = losses.shape[0]
            if b:
                grads = torch.autograd.grad(losses.mean(), tensors, allow_unused=True)
                for n, g in zip(names, grads):
                    if g is not None:
                        values[n] += b * g.square()
            total += b
    finally:
        model.train(was_training)
    if not total:
        raise ValueError("batches held no sample: a Fisher needs at least one")
    return Fisher({n: v / total for n, v in values.items()}, "per_sample" if per_sample else "batched", total)


def _per_sample_grads(model, params: dict, batch: dict) -> dict:
    """{name: (B, *shape)} gradients of each sample's MPJPE w.r.t. ``params``, by ``torch.func.vmap`` over the
    batch's tensors (the model in eval mode; other parameters and buffers held fixed)."""
    from torch.func import functional_call, grad, vmap

    fixed = {n: p for n, p in model.named_parameters() if n not in params}
    fixed.update(model.named_buffers())
    tensors = {k: v for k, v in batch.items() if torch.is_tensor(v)}

    def loss(theta, sample):
        one = {k: v.unsqueeze(0) for k, v in sample.items()}
        return sample_mpjpe(functional_call(model, (theta, fixed), (one,)), one["gt"]).sum()

    theta = {n: p.detach() for n, p in params.items()}
    with warnings.catch_warnings():  # attention has no vmap batching rule on CPU yet: slower, still exact
        warnings.filterwarnings("ignore", message="There is a performance drop")
        with torch.enable_grad():
            return vmap(grad(loss), in_dims=(None, 0))(theta, tensors)


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
