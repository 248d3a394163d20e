"""The MM-Fi train/test splits, exactly as the official toolbox's ``decode_config`` defines them.

- S1 ``random_split``: for the k-th action of the protocol (k from 0), ``np.random.seed(random_seed + k)``
  and a permutation of the 40 subjects S01..S40; the first floor(ratio * 40) train, the rest test. Each action
  holds out a different set of subjects, so one subject can be in train for one action and in test for another.
- S2 ``cross_subject_split``: test S05 S10 S15 S20 S25 S30 S35 S40, train the other 32, every protocol action.
- S3 ``cross_scene_split`` (cross-environment): train S01-S30 (E01-E03), test S31-S40 (E04).

A split is a pair of sorted lists of (subject, action). ``restrict`` intersects it with the sequences on disk
(a partial dataset) and refuses to return an empty side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import layout
from poise.errors import PoiseError

SPLITS = {"S1": "random_split", "S2": "cross_subject_split", "S3": "cross_scene_split"}
CROSS_SUBJECT_TEST = ("S05", "S10", "S15", "S20", "S25", "S30", "S35", "S40")
CROSS_SCENE_TEST = layout.SUBJECTS[30:]  # E04


def resolve_split(split: str) -> str:
    """'S1'/'S2'/'S3' from a split name; also accepts the toolbox names (random_split, cross_subject_split,
    cross_scene_split) and 'cross_environment_split'."""
    key = str(split).strip()
    aliases = {v: k for k, v in SPLITS.items()} | {"cross_environment_split": "S3"}
    key = aliases.get(key.lower(), key.upper())
    if key not in SPLITS:
        raise PoiseError(f"unknown split {split!r}: choose S1 (random), S2 (cross-subject) or S3 (cross-environment)"
                         f", or the toolbox names {sorted(aliases)}")
    return key


def random_split_subjects(k: int, random_seed: int = 0, ratio: float = 0.8) -> tuple[list[str], list[str]]:
    """(train, test) subjects of the k-th protocol action under S1: the toolbox's seeded permutation.

    ``RandomState(seed).permutation`` is the legacy MT19937 stream that ``np.random.seed`` + ``permutation``
    draw from, without touching numpy's global state. Lists keep the toolbox's order (S01..S40).
    """
    idx = np.random.RandomState(random_seed + k).permutation(len(layout.SUBJECTS))
    n_train = int(np.floor(ratio * len(layout.SUBJECTS)))
    train, test = set(idx[:n_train].tolist()), set(idx[n_train:].tolist())
    return ([s for i, s in enumerate(layout.SUBJECTS) if i in train],
            [s for i, s in enumerate(layout.SUBJECTS) if i in test])


def make_split(protocol: str = "P1", split: str = "S1", random_seed: int = 0,
               ratio: float = 0.8) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, test) lists of (subject, action) pairs for a protocol and split, over all 40 subjects."""
    actions = layout.resolve_actions(protocol)
    split = resolve_split(split)
    if not 0.0 < ratio < 1.0:
        raise PoiseError(f"ratio={ratio!r} must lie strictly between 0 and 1 (the toolbox uses 0.8)")
    train, test = [], []
    for k, action in enumerate(actions):
        if split == "S1":
            tr, te = random_split_subjects(k, random_seed, ratio)
        else:
            held_out = CROSS_SUBJECT_TEST if split == "S2" else CROSS_SCENE_TEST
            tr = [s for s in layout.SUBJECTS if s not in held_out]
            te = list(held_out)
        train += [(s, action) for s in tr]
        test += [(s, action) for s in te]
    return sorted(train), sorted(test)


@dataclass
class Split:
    """A split restricted to the sequences present: the pairs kept, and how many the full split had."""

    train: list
    test: list
    absent_train: int
    absent_test: int

    def pairs(self, part: str) -> list:
        if part not in ("train", "test"):
            raise PoiseError(f"part={part!r} is not valid: use 'train' or 'test'")
        return self.train if part == "train" else self.test

    def summary(self) -> str:
        return (f"train {len(self.train)} sequences ({self.absent_train} of the split absent from disk), "
                f"test {len(self.test)} sequences ({self.absent_test} absent)")


def restrict(protocol: str, split: str, present, random_seed: int = 0, ratio: float = 0.8) -> Split:
    """The split intersected with ``present`` (an iterable of (subject, action) on disk).

    Raises ValueError, naming the split, protocol and subjects present, when train or test would be empty:
    e.g. S3 on data without any E04 subject has nothing to test on.
    """
    present = set(present)
    train, test = make_split(protocol, split, random_seed, ratio)
    kept = Split([p for p in train if p in present], [p for p in test if p in present], 0, 0)
    kept.absent_train, kept.absent_test = len(train) - len(kept.train), len(test) - len(kept.test)
    for part in ("train", "test"):
        if not kept.pairs(part):
            subjects = sorted({s for s, _ in present})
            actions = sorted({a for _, a in present})
            raise PoiseError(
                f"split {resolve_split(split)} of protocol {protocol} has no {part} sequence on disk: the data holds "
                f"subjects {subjects} and actions {actions}. Use a split whose {part} subjects are present (S2 tests "
                f"on {list(CROSS_SUBJECT_TEST)}, S3 on S31-S40), another protocol, or generate more subjects")
    return kept
