"""What a continual run does in each task, from its config's switches (``ContinualConfig``): the plugins of
the Setting-1 loop that make up the run's method. The runner only calls their hooks.

- **Across the stream** (one instance, its state checkpointed at task boundaries): NIS
  (``poise.continual.nis.NIS``), EWC in its generic, online or adaptive form (``poise.continual.ewc.EWC``), and
  a two-network noisy-label rule (``poise.continual.peers``: Co-teaching, DivideMix).
- **Within a task** (a fresh instance per task, as the optimiser is): the balancing method ``balance`` (any
  registered Setting-1 method) and re-learning (``poise.methods.relearn``, towards the parameters the task
  started from: towards the random initialisation in a later task would erase the earlier tasks).
"""

from __future__ import annotations

from poise import methods
from poise.continual.config import ContinualConfig
from poise.continual.ewc import EWC
from poise.continual.nis import NIS
from poise.continual.peers import CoTeaching, DivideMix
from poise.methods.base import Method
from poise.methods.compose import Composite


def across_tasks(config: ContinualConfig, make_peer, reference_rows) -> list[Method]:
    """The strategies whose state spans the stream; ``make_peer()`` builds the second network if one is used;
    ``reference_rows``: the first task's held-back frames (NIS's clean reference)."""
    parts = []
    if config.nis:
        parts.append(NIS(gamma=config.gamma, naming=config.naming, threshold=dict(config.naming_threshold),
                         separate=config.separate, compare_gradient_stop=config.compare_gradient_stop,
                         reference_rows=reference_rows))
    if config.peers == "coteaching":
        parts.append(CoTeaching(forget_rate=float(config.ratio)))
    elif config.peers == "dividemix":
        parts.append(DivideMix(lambda_u=config.lambda_u, warmup=config.warmup))
    for part in parts:
        if hasattr(part, "peer"):
            part.peer = make_peer()
    if config.ewc != "none" and config.lam > 0:
        parts.append(EWC(lam=config.lam, mode=config.ewc, beta=config.beta, decay=config.ewc_decay,
                         per_sample=config.fisher == "per_sample", fisher_frames=config.fisher_frames,
                         naming=config.naming))
    return parts


def within_task(config: ContinualConfig) -> list[Method]:
    """Fresh instances of the per-task methods: the balancing method, then re-learning if on."""
    parts = [methods.get(config.balance, **config.balance_params)]
    if config.relearn:
        parts.append(methods.get("relearn", alpha_s=config.alpha_s, alpha_i=config.alpha_i,
                                 relearn_epoch=config.relearn_epoch))
    return parts


def task_method(config: ContinualConfig, streamwide: list[Method]) -> Composite:
    """The method one task trains with: the per-task methods and the stream's strategies as one plugin."""
    local = within_task(config)
    return Composite([*local, *streamwide], reference=local[0])
