"""The task stream of paper 001's Setting 2 (denoising continual multi-modal learning), Sec. 4.1.

001: "We divide data belonging to the same action class but distinguishing between left and right hands into
one task of the incremental tasks, and for those action classes that do not differentiate between left and
right hands, we combine two similar action classes into one task. Protocol 1 has 7 tasks and Protocol 2
contains 6 tasks. [...] The initial task is noise-free." The paper lists no mapping (it defers to a
supplement we do not have); ours:

P1 (14 daily actions, 7 tasks): variants of one action class first, in action-id order, then the one merged
pair: (A02, A03) chest expansion horizontal/vertical, (A04, A05) twist, (A13, A14) raising hand, (A17, A18)
waving hand, (A20, A21) throwing, (A22, A23) kicking, (A19, A27) picking up things + bowing (both bend the
trunk forward and come back up).

P2 (13 rehabilitation actions, 6 tasks). Four left/right pairs are tasks by the rule: A09/A10 lunge toward
the left/right front, A15/A16 lunge toward the left/right side, A24/A25 body extension. That leaves A01, A06,
A07, A08, A11, A12, A26 for two tasks if the count is to be 6. Our choice:
- (A07, A08, A11) limb extension left / right / both: A11 is the same action class as A07/A08 (the paper's
  rule groups variants of one class), so it joins them instead of being paired with an unrelated action;
- (A01, A06) stretching-and-relaxing + mark time: the two in-place, low-displacement warm-up exercises
  (the weakest similarity of the mapping; any pairing of the leftovers has one such pair);
- (A12, A26) squat + jumping up: both are vertical whole-body motions driven by knee and hip flexion, the
  pelvis moving down and up.
Ordered as P1: the variant tasks in action-id order, then the merged pairs, so the clean first task of P2
is limb extension (three actions, the largest clean task).

P3 (all 27 actions) has no task stream in 001; asking for one is an error.
"""

from __future__ import annotations

import numpy as np
from poise.errors import PoiseError

TASKS: dict[str, list[tuple[str, ...]]] = {
    "P1": [
        ("A02", "A03"),  # chest expansion (horizontal / vertical)
        ("A04", "A05"),  # twist (left / right)
        ("A13", "A14"),  # raising hand (left / right)
        ("A17", "A18"),  # waving hand (left / right)
        ("A20", "A21"),  # throwing (toward left / right side)
        ("A22", "A23"),  # kicking (toward left / right side)
        ("A19", "A27"),  # picking up things + bowing (merged: trunk flexion)
    ],
    "P2": [
        ("A07", "A08", "A11"),  # limb extension (left / right / both)
        ("A09", "A10"),  # lunge (toward left-front / right-front)
        ("A15", "A16"),  # lunge (toward left side / right side)
        ("A24", "A25"),  # body extension (left / right)
        ("A01", "A06"),  # stretching and relaxing + mark time (merged: in-place warm-up)
        ("A12", "A26"),  # squat + jumping up (merged: vertical knee/hip flexion)
    ],
}


def _key(protocol: str) -> str:
    key = str(protocol).upper().replace("PROTOCOL", "P")
    if key not in TASKS:
        raise PoiseError(f"protocol={protocol!r} has no continual task stream: choose one of {sorted(TASKS)} "
                         f"(paper 001 defines tasks for P1 and P2 only)")
    return key


def tasks(protocol: str) -> list[tuple[str, ...]]:
    """The task stream of ``protocol`` (P1: 7 tasks, P2: 6), each a tuple of action ids (001 Sec. 4.1).

    Task 0 is the clean one (no corrupted modality in 001's Setting 2). P3 or an unknown name is a ValueError
    naming the valid protocols."""
    return list(TASKS[_key(protocol)])


def task_of_action(protocol: str) -> dict[str, int]:
    """``{action id: 0-based task number}`` for every action of ``protocol``."""
    return {a: t for t, group in enumerate(tasks(protocol)) for a in group}


def task_indices(dataset, protocol: str) -> list[np.ndarray]:
    """The dataset indices of each task, in task order (int64 arrays, ascending).

    ``dataset`` is an ``MMFiDataset`` (anything with ``sequences[i].action``, ``sequence_of(indices)`` and
    ``len``) built for the same protocol; an action of the dataset outside the protocol is a ValueError."""
    mapping = task_of_action(protocol)
    actions = [s.action for s in dataset.sequences]
    unknown = sorted(set(actions) - set(mapping))
    if unknown:
        raise PoiseError(f"the dataset has actions {unknown} that are not in protocol {protocol}'s tasks")
    task_of_sequence = np.array([mapping[a] for a in actions], dtype=np.int64)
    task = task_of_sequence[dataset.sequence_of(np.arange(len(dataset)))] if len(dataset) else np.zeros(0, np.int64)
    return [np.flatnonzero(task == t).astype(np.int64) for t in range(len(TASKS[_key(protocol)]))]

