"""Shapley values of modalities (paper 001, Eq. 1; paper 000 Sec. 3): each modality's average marginal profit.

    phi_m = sum over S in M \\ {m} of |S|! (|M| - |S| - 1)! / |M|! * [v(S + m) - v(S)],
    v(S) = s(y, decode(features, present=S)),

where absent modalities are zero-padded at the feature level (``PoseModel.decode``). The encoders run once:
``modality_contributions`` takes features already computed, and evaluates ``decode`` on each of the 2^M
subsets (16 for four modalities). For many modalities, ``shapley_sampled`` averages marginal profits over
random permutations (the classic estimator) and reports the standard error of each mean.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from poise.contrib.profits import get_profit

EXACT_UP_TO = 10  # modalities; above this, permutation sampling


def shapley_exact(value, players) -> dict:
    """Exact Shapley values for a game ``value(frozenset) -> float`` over ``players`` (2^M evaluations)."""
    players = tuple(players)
    m = len(players)
    v = {frozenset(s): value(frozenset(s)) for k in range(m + 1) for s in itertools.combinations(players, k)}
    phi = {}
    for p in players:
        others = [q for q in players if q != p]
        total = 0.0
        for k in range(m):
            weight = math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m)
            for s in itertools.combinations(others, k):
                s = frozenset(s)
                total += weight * (v[s | {p}] - v[s])
        phi[p] = total
    return phi


def shapley_sampled(value, players, n_permutations: int = 200, seed: int = 0) -> tuple[dict, dict]:
    """Permutation-sampling estimate of the Shapley values and the standard error of each."""
    players = tuple(players)
    rng = np.random.default_rng(seed)
    cache = {}

    def v(s):
        if s not in cache:
            cache[s] = value(s)
        return cache[s]

    marginals = {p: [] for p in players}
    for _ in range(n_permutations):
        s = frozenset()
        for i in rng.permutation(len(players)):
            p = players[i]
            marginals[p].append(v(s | {p}) - v(s))
            s = s | {p}
    mean = {p: float(np.mean(x)) for p, x in marginals.items()}
    se = {p: float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan") for p, x in marginals.items()}
    return mean, se


@dataclass
class Contributions:
    """Per-modality Shapley scores, their standard errors (0 when exact) and the profit of every subset used."""

    scores: dict
    stderr: dict
    profit: str
    exact: bool
    values: dict = field(default_factory=dict, repr=False)  # frozenset(modalities) -> profit

    @property
    def full(self) -> float:
        return self.values[frozenset(self.scores)]


@torch.no_grad()
def modality_contributions(model, features: dict, gt: torch.Tensor, profit="pearson", n_permutations: int = 200,
                           seed: int = 0) -> Contributions:
    """Shapley contribution of each of ``model.modalities`` on one batch of cached ``features``."""
    score = get_profit(profit)
    values = {}

    def value(subset: frozenset) -> float:
        if subset not in values:
            values[subset] = score(gt, model.decode(features, present=tuple(subset)))
        return values[subset]

    players = tuple(model.modalities)
    name = profit if isinstance(profit, str) else getattr(profit, "__name__", "custom")
    if len(players) <= EXACT_UP_TO:
        phi = shapley_exact(value, players)
        return Contributions(phi, {p: 0.0 for p in players}, name, True, values)
    phi, se = shapley_sampled(value, players, n_permutations, seed)
    return Contributions(phi, se, name, False, values)


@torch.no_grad()
def batch_scores(model, batch: dict) -> dict:
    """{modality: Shapley-Pearson score} of ``model`` on one batch (with "gt"), in eval mode: one encoder pass,
    2^M decodes."""
    model.eval()
    return modality_contributions(model, model.encode(batch), batch["gt"]).scores
