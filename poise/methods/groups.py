"""Superior and inferior modalities: K-Means with k = 2 on the contribution scores (papers 000 and 001).

For one-dimensional scores, 2-means has an exact solution: sort the scores and take the split point with the
smallest within-group sum of squares (Lloyd's iterations from any start can only end at one of these splits,
and this picks the best). The group with the higher mean is superior. Ties between equal scores keep them
together; with fewer than two distinct scores every modality is superior (there is nothing to balance).
"""

from __future__ import annotations

import numpy as np


def split_groups(scores: dict) -> tuple[list, list]:
    """(superior, inferior) modality lists from ``{modality: score}``, by exact 1-D 2-means."""
    names = sorted(scores, key=lambda m: scores[m])
    values = np.array([scores[m] for m in names], dtype=float)
    if not np.isfinite(values).all():
        raise ValueError(f"contribution scores must be finite to group modalities, got {scores}")
    best, cut = np.inf, None
    for k in range(1, len(values)):
        if values[k] == values[k - 1]:
            continue  # never split equal scores
        low, high = values[:k], values[k:]
        sse = ((low - low.mean()) ** 2).sum() + ((high - high.mean()) ** 2).sum()
        if sse < best:
            best, cut = sse, k
    if cut is None:
        return list(scores), []
    keep = [m for m in scores]  # report in the caller's order
    superior = set(names[cut:])
    return [m for m in keep if m in superior], [m for m in keep if m not in superior]
