"""Splits as the MM-Fi toolbox's decode_config defines them (research/mmfi.md section 2)."""

import numpy as np
import pytest

from poise.data import layout
from poise.data.splits import make_split, random_split_subjects, resolve_split, restrict

# Test subjects of the S1 random split for seed s (research/mmfi.md, checked against X-Fi's printed train_form).
S1_TABLE = {
    0: "01 04 07 10 20 22 24 39",
    1: "01 06 09 10 12 13 16 38",
    2: "08 09 12 16 19 23 32 36",
    9: "02 23 28 29 30 34 39 40",
    13: "03 11 14 17 19 26 27 35",
    18: "03 06 09 18 20 25 35 39",
    25: "05 09 16 24 26 27 29 40",
    26: "02 05 07 14 18 20 27 33",
}


def subjects(numbers: str) -> list[str]:
    return [f"S{n}" for n in numbers.split()]


@pytest.mark.parametrize("seed", sorted(S1_TABLE))
def test_random_split_matches_toolbox_table(seed):
    train, test = random_split_subjects(seed)
    assert test == subjects(S1_TABLE[seed])
    assert len(train) == 32 and set(train).isdisjoint(test) and set(train) | set(test) == set(layout.SUBJECTS)


def test_random_split_is_the_legacy_global_stream():
    """Same draw as the toolbox's np.random.seed(s); np.random.permutation(40)."""
    state = np.random.get_state()
    try:
        np.random.seed(7)
        idx = np.random.permutation(40)
    finally:
        np.random.set_state(state)
    assert random_split_subjects(7)[1] == sorted(layout.SUBJECTS[i] for i in idx[32:])


@pytest.mark.parametrize("protocol", ["P1", "P2", "P3"])
def test_s1_seeds_each_action_by_its_position(protocol):
    train, test = make_split(protocol, "S1")
    for k, action in enumerate(layout.resolve_actions(protocol)):
        test_k = sorted(s for s, a in test if a == action)
        train_k = sorted(s for s, a in train if a == action)
        assert test_k == random_split_subjects(k)[1]
        assert len(train_k) == 32 and set(train_k).isdisjoint(test_k)
    # P3's last action A27 is position 26, seed 26.
    if protocol == "P3":
        assert sorted(s for s, a in test if a == "A27") == subjects(S1_TABLE[26])


def test_s1_random_seed_shifts_every_action():
    train, test = make_split("P1", "S1", random_seed=1)
    assert sorted(s for s, a in test if a == "A02") == subjects(S1_TABLE[1])  # k=0 -> seed 1
    assert sorted(s for s, a in test if a == "A03") == subjects(S1_TABLE[2])  # k=1 -> seed 2


def test_s1_subject_can_be_train_for_one_action_and_test_for_another():
    train, test = make_split("P1", "S1")
    assert ("S01", "A02") in test and ("S02", "A02") in train
    both = {s for s, _ in train} & {s for s, _ in test}
    assert "S01" in both


def test_s2_cross_subject():
    train, test = make_split("P2", "S2")
    held = {"S05", "S10", "S15", "S20", "S25", "S30", "S35", "S40"}
    assert {s for s, _ in test} == held
    assert {s for s, _ in train} == set(layout.SUBJECTS) - held
    assert {a for _, a in test} == set(layout.PROTOCOLS["P2"]) == {a for _, a in train}
    assert len(train) == 32 * 13 and len(test) == 8 * 13


def test_s3_cross_environment():
    train, test = make_split("P3", "S3")
    assert {s for s, _ in train} == {f"S{i:02d}" for i in range(1, 31)}
    assert {s for s, _ in test} == {f"S{i:02d}" for i in range(31, 41)}
    assert {layout.environment_of(s) for s, _ in test} == {"E04"}


def test_split_names():
    assert resolve_split("random_split") == "S1"
    assert resolve_split("cross_subject_split") == "S2"
    assert resolve_split("cross_scene_split") == resolve_split("s3") == "S3"
    assert make_split("protocol1", "cross_scene_split") == make_split("P1", "S3")
    with pytest.raises(ValueError, match="unknown split"):
        resolve_split("S4")
    with pytest.raises(ValueError, match="ratio"):
        make_split("P1", "S1", ratio=1.0)


def test_restrict_to_partial_data():
    present = {("S05", "A02"), ("S12", "A02"), ("S33", "A02"), ("S05", "A01")}
    split = restrict("P1", "S3", present)
    assert split.train == [("S05", "A02"), ("S12", "A02")] and split.test == [("S33", "A02")]
    assert split.absent_train == 30 * 14 - 2 and split.absent_test == 10 * 14 - 1
    with pytest.raises(ValueError, match=r"split S2 of protocol P1 has no test sequence.*'S12'"):
        restrict("P1", "S2", {("S12", "A02"), ("S33", "A02")})
