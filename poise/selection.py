"""Which frames a run reads and trains on: the datasets of a config, the training subjects (``train_subjects``)
and the held-out sequences (``holdout``, and a stream's ``reference_holdout``), each drawn from the seed."""

from __future__ import annotations


import numpy as np

from poise import distributed
from poise.config import TrainConfig
from poise.data.dataset import MMFiDataset
from poise.errors import PoiseError


HOLDOUT_SEED = 7  # the held-out sequences are drawn from (seed, HOLDOUT_SEED)

SUBJECTS_SEED = 11  # the training subjects of ``train_subjects`` are drawn from (seed, SUBJECTS_SEED)


def load_datasets(config: TrainConfig, progress: bool = True, rebuild_cache: bool = False) -> tuple[MMFiDataset, MMFiDataset]:
    kw = dict(protocol=config.protocol, split=config.split, modalities=config.modalities,
              lidar_points=config.lidar_points, mmwave_points=config.mmwave_points, seed=config.seed,
              rgb_window=config.rgb_window, on_error=config.on_error, progress=progress)
    # One rebuild: the parts share the cache, and under torchrun the other ranks open what rank 0 built.
    rebuild_cache = rebuild_cache and distributed.is_main()
    train = MMFiDataset(config.data, part="train", frame_stride=config.train_stride, rebuild_cache=rebuild_cache, **kw)
    test = MMFiDataset(config.data, part="test", **kw)
    if len(train) == 0 or len(test) == 0:
        raise PoiseError(f"{config.data}: split {config.split} of protocol {config.protocol} leaves {len(train)} "
                         f"training and {len(test)} test frames; use a root with more subjects or another split")
    return train, test


def sequences_by_action(train: MMFiDataset, rows: np.ndarray) -> tuple[np.ndarray, dict]:
    """(the sequence of each of ``rows``, {action: its sequences among them}, actions in sorted order)."""
    sequence = train.sequence_of(rows)
    by_action: dict = {}
    for i in np.unique(sequence):
        by_action.setdefault(train.sequences[i].action, []).append(i)
    return sequence, {action: np.array(by_action[action]) for action in sorted(by_action)}


def subject_rows(train: MMFiDataset, per_action: int, seed: int) -> np.ndarray:
    """The training frames of ``per_action`` of each action's training subjects (0: all of them), drawn from the
    seed as the first ``per_action`` of one permutation, so that smaller sets are nested in larger ones: for
    measuring how a model's error falls as it sees more people. The test split is unchanged."""
    rows = np.arange(len(train))
    if not per_action:
        return rows
    sequence, by_action = sequences_by_action(train, rows)
    rng = np.random.default_rng([seed, SUBJECTS_SEED])
    keep = []
    for action, mine in by_action.items():
        if len(mine) < per_action:
            raise PoiseError(f"config key 'train_subjects' = {per_action}: action {action} has only {len(mine)} "
                             f"training subjects here; use at most {len(mine)}, or 0 for all of them")
        keep.extend(rng.permutation(mine)[:per_action].tolist())
    return rows[np.isin(sequence, keep)]


def holdout_rows(train: MMFiDataset, fraction: float, seed: int, rows=None,
                 key: str = "holdout") -> tuple[np.ndarray, np.ndarray]:
    """(trained rows, held-out rows) of ``rows`` (default: every training frame): ``fraction`` of each action's
    training *sequences* (whole sequences, drawn from the seed; at least one per action when ``fraction`` > 0,
    never all of them) set aside as a validation set. Stratified by action, as the test split is (S1 holds
    subjects out per action), so that the validation error weighs every action as the test error does. ``key``:
    the config key errors name."""
    rows = np.arange(len(train)) if rows is None else np.asarray(rows, dtype=np.int64)
    if not fraction:
        return rows, rows[:0]
    sequence, by_action = sequences_by_action(train, rows)
    rng = np.random.default_rng([seed, HOLDOUT_SEED])
    held = []
    for mine in by_action.values():
        n = min(max(1, int(round(fraction * len(mine)))), len(mine) - 1)
        held.extend(rng.choice(mine, n, replace=False).tolist())
    if not held:
        raise PoiseError(f"config key {key!r} = {fraction}: every action has a single training sequence here, so "
                         f"none can be held out; use {key}: 0 or a root with more subjects")
    is_val = np.isin(sequence, held)
    return rows[~is_val], rows[is_val]
