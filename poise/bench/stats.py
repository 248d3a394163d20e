"""Statistics over seeds for the bench tables: mean +- sample std, differences paired seed by seed, and whether
a paired difference stands out from seed noise (a two-sided 95 % t-interval on its mean)."""

from __future__ import annotations

import math

import numpy as np


def mean_sd(values) -> tuple[float, float]:
    values = np.asarray(list(values), dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan


def fmt(values, digits: int = 1) -> str:
    values = list(values)
    if not values:
        return "–"
    mean, sd = mean_sd(values)
    return f"{mean:.{digits}f}" + ("" if math.isnan(sd) else f" ± {sd:.{digits}f}")


def select(rows, **where) -> list:
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def _by_seed(rows, key: str, **where) -> dict:
    return {r["seed"]: r[key] for r in select(rows, **where)}


def paired(rows, key: str, a: dict, b: dict) -> list:
    """a - b of ``key`` for each seed both have."""
    x, y = _by_seed(rows, key, **a), _by_seed(rows, key, **b)
    return [x[s] - y[s] for s in sorted(set(x) & set(y))]


def t_half_width(sd: float, n: int) -> float:
    """Half-width of the two-sided 95 % t-interval of a mean of ``n`` values of std ``sd``."""
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def half_width(diffs: list) -> float:
    """Half-width of the two-sided 95 % t-interval of the mean of ``diffs`` (nan for fewer than 2)."""
    n = len(diffs)
    return t_half_width(mean_sd(diffs)[1], n) if n >= 2 else math.nan


def seeds_for(sd: float, target: float, most: int = 1000) -> int | None:
    """The fewest seeds n >= 2 whose paired differences of std ``sd`` give a 95 % half-width of at most
    ``target`` (None: more than ``most``)."""
    return next((n for n in range(2, most + 1) if t_half_width(sd, n) <= target), None)


def diff_text(diffs: list) -> str:
    mean, sd = mean_sd(diffs)
    n = len(diffs)
    tail = "" if math.isnan(sd) else f" ± {sd:.1f}"
    return f"{mean:+.1f}{tail} mm (paired over {n} seed{'s' if n != 1 else ''})"


def noise_clause(diffs: list) -> str:
    """``""`` when the 95 % t-interval of the mean paired difference excludes 0, otherwise a clause saying it
    does not (or that one seed gives no estimate of the noise at all)."""
    if len(diffs) < 2:
        return "; one seed: no noise estimate"
    mean, half = float(np.mean(diffs)), half_width(diffs)
    if abs(mean) > half:
        return ""
    return f"; within seed noise (95 % t-interval {mean:+.1f} ± {half:.1f} mm includes 0)"


def verdict(diffs: list) -> str:
    """"better" / "worse" (interval excludes 0, lower = better), "noise", or "one seed"."""
    if len(diffs) < 2:
        return "one seed"
    mean, half = float(np.mean(diffs)), half_width(diffs)
    if abs(mean) <= half:
        return "noise"
    return "better" if mean < 0 else "worse"
