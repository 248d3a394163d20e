"""What a continual run does in each task, from its config (``ContinualConfig``): the plugins of the Setting-1
loop that make up the run's method. The runner only calls their hooks.

- **Across the stream** (one instance, its state checkpointed at task boundaries): NIS
  (``poise.continual.nis.NIS``), EWC in its generic, online or adaptive form (``poise.continual.ewc.EWC``), and
  a two-network noisy-label rule (``poise.continual.peers``: Co-teaching, DivideMix).
- **Within a task** (a fresh instance per task, as the optimiser is): the balancing method ``method`` (any
  registered Setting-1 method) and re-learning (``poise.methods.relearn``, towards the parameters the task
  started from: towards the random initialisation in a later task would erase the earlier tasks).

Each strategy is built by its class's ``from_params`` from the config key of its name (parsed there already).
"""

from __future__ import annotations

from poise import methods
from poise.continual.config import ContinualConfig, parameters, strategy_class
from poise.methods.base import Method
from poise.methods.compose import Composite


def across_tasks(config: ContinualConfig, make_peer, reference_rows) -> list[Method]:
    """The strategies whose state spans the stream; ``make_peer()`` builds the second network if one is used;
    ``reference_rows``: the first task's held-back frames (NIS's clean reference)."""
    parts = []
    if config.nis:
        nis = strategy_class("nis", True).from_params(parameters("nis", config.nis))
        nis.reference_rows = reference_rows
        parts.append(nis)
    if config.peers:
        peers = strategy_class("peers", config.peers["mode"]).from_params(parameters("peers", config.peers))
        if getattr(peers, "forget_rate", 0.0) is None:  # Co-teaching's tau: the stream's noise rate (its rule)
            peers.forget_rate = float(config.ratio)
        peers.peer = make_peer()
        parts.append(peers)
    if config.ewc and config.ewc["lam"] > 0:
        parts.append(strategy_class("ewc", config.ewc["mode"]).from_params(config.ewc))
    return parts


def within_task(config: ContinualConfig) -> list[Method]:
    """Fresh instances of the per-task methods: the balancing method, then re-learning if on."""
    parts = [methods.get(config.method, **config.method_params)]
    if config.relearn:
        parts.append(methods.get("relearn", **parameters("relearn", config.relearn)))
    return parts


def task_method(config: ContinualConfig, streamwide: list[Method]) -> Composite:
    """The method one task trains with: the per-task methods and the stream's strategies as one plugin."""
    local = within_task(config)
    return Composite([*local, *streamwide], reference=local[0])
