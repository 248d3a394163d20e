"""The diagonal empirical Fisher of the per-sample loss: one implementation for AWC (paper 000) and for
(adaptive) EWC (paper 001).

    F_ii = 1/|D| sum over samples n in D of (dL_n / dtheta_i)^2,     L_n = MPJPE of sample n (metres; the run's
                                                                     ``objective.sample_loss`` on other targets),

which is 001 Eq. 7. Two estimators:

- ``per_sample=True`` (the default) is Eq. 7 exactly: each sample's own gradient, vectorised over the batch
  with ``torch.func`` (vmap of grad; exact in eval mode, where samples do not interact, and about 3x faster
  on CPU than a backward per sample). Its scale does not depend on the batch size, so a penalty strength such
  as AWC's alpha or EWC's lambda means the same at any batch size.
- ``per_sample=False`` is the cheaper "batched" approximation most EWC code uses (Avalanche's ``EWCPlugin``):
  the squared gradient of each batch's MEAN loss, weighted by the batch size. Since
  mean_b(g)^2 = mean_b(g^2) - var_b(g), it drops the within-batch variance of the gradients, so it is smaller
  than Eq. 7 (equal with batches of one sample) and shrinks as batches grow (we measured 112-227x smaller at
  batch 32 on the demo data); van de Ven (2025, arXiv 2502.11756) shows the choice changes EWC's results.

Computed in eval mode (dropout off, batch norm on its running statistics; the model's mode is restored).

``quadratic_penalty`` is the one penalty both build on: sum_i F_ii (theta_i - theta*_i)^2 / 2 (Kirkpatrick's
EWC term; 000's AWC weighs it per modality, 001's EWC sums it over the model).
"""

from __future__ import annotations

import warnings

import torch

from poise.metrics import sample_mpjpe
from poise.runtime import to_device


def empirical_fisher(model, batches, per_sample: bool = True, names=None, sample_loss=sample_mpjpe) -> tuple[dict, int]:
    """``({parameter name: F shaped like it}, number of samples)`` over ``batches`` (dicts with "gt"), for the
    parameters in ``names`` (default: every parameter that requires grad; a frozen one gets no entry, one the
    loss does not reach gets zeros); ``sample_loss(pred, target) -> (B,)``: the per-sample loss (MPJPE)."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad and (names is None or n in names)}
    if names is not None and len(params) != len(set(names)):
        unknown = sorted(set(names) - set(params))
        raise ValueError(f"no trainable parameter named {unknown[:5]} in the model")
    if not params:
        raise ValueError("no parameter requires grad: nothing to estimate a Fisher for")
    tensors = list(params.values())
    values = {n: torch.zeros_like(p) for n, p in params.items()}
    device = tensors[0].device
    total = 0
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            batch = to_device(batch, device)
            b = len(batch["gt"])
            if not b:
                continue
            if per_sample:
                for n, g in per_sample_grads(model, params, batch, sample_loss).items():
                    values[n] += g.square().sum(0)
            else:
                with torch.enable_grad():
                    loss = sample_loss(model(batch), batch["gt"]).mean()
                grads = torch.autograd.grad(loss, tensors, allow_unused=True)
                for n, g in zip(params, grads):
                    if g is not None:
                        values[n] += b * g.square()
            total += b
    finally:
        model.train(was_training)
    if not total:
        raise ValueError("batches held no sample: a Fisher needs at least one")
    return {n: v / total for n, v in values.items()}, total


def per_sample_grads(model, params: dict, batch: dict, sample_loss=sample_mpjpe) -> dict:
    """``{name: (B, *shape)}`` gradients of each sample's loss with respect to ``params`` (name -> parameter),
    by ``torch.func.vmap`` over the batch's tensors (other parameters and buffers held fixed)."""
    from torch.func import functional_call, grad, vmap

    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in params}  # no graph through them
    fixed.update(model.named_buffers())
    tensors = {k: v for k, v in batch.items() if torch.is_tensor(v)}

    def loss(theta, sample):
        one = {k: v.unsqueeze(0) for k, v in sample.items()}
        return sample_loss(functional_call(model, (theta, fixed), (one,)), one["gt"]).sum()

    theta = {n: p.detach() for n, p in params.items()}
    with warnings.catch_warnings():  # attention has no vmap batching rule on CPU yet: slower, still exact
        warnings.filterwarnings("ignore", message="There is a performance drop")
        with torch.enable_grad():
            return vmap(grad(loss), in_dims=(None, 0))(theta, tensors)


def quadratic_penalty(params, anchors, fishers) -> torch.Tensor:
    """sum over parameters of F * (theta - theta*)^2 / 2: ``params``, ``anchors`` (theta*) and ``fishers`` (F) are
    matching sequences of tensors (differentiable in ``params``; 0 for empty sequences)."""
    total = None
    for p, a, f in zip(params, anchors, fishers, strict=True):
        term = (f.to(p) * (p - a.to(p)).square()).sum()
        total = term if total is None else total + term
    return torch.zeros(()) if total is None else total / 2
