"""Fixtures that write small MM-Fi trees (random but valid content, the real on-disk format) into tmp folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from poise.data import layout

# Subjects in three environments: S05 is an S2 test subject, S12 is an S1 test subject for A03 (seed 1),
# S33 (E04) is the S3 test subject.
SUBJECTS = ("S05", "S12", "S33")
ACTIONS = ("A02", "A03")  # the first two P1 actions: S1 seeds 0 and 1


def write_sequence(path: Path, n_frames: int, rng: np.random.Generator, modalities=layout.MODALITIES) -> None:
    """One sequence folder: ground truth, and per modality ``n_frames`` files with varied content.

    LiDAR clouds have 0..60 points (some above, some below a small ``lidar_points``), mmWave 0..12 with about
    one frame in five empty, CSI amplitude with scattered -inf/NaN and, now and then, an all-NaN packet.
    """
    path.mkdir(parents=True, exist_ok=True)
    gt = rng.normal([0.0, 0.0, 3.0], 0.3, size=(n_frames, 17, 3))
    np.save(path / layout.GROUND_TRUTH, gt)
    for m in modalities:
        (path / m).mkdir(exist_ok=True)
    for i in range(n_frames):
        if "rgb" in modalities:
            np.save(path / "rgb" / layout.frame_name(i, "rgb"), rng.uniform(0, 480, size=(17, 2)))
        if "lidar" in modalities:
            n = int(rng.integers(1, 61))
            rng.normal(0, 1, size=(n, 3)).tofile(path / "lidar" / layout.frame_name(i, "lidar"))
        if "mmwave" in modalities:
            n = 0 if rng.random() < 0.2 else int(rng.integers(1, 13))
            rng.normal(0, 1, size=(n, 5)).tofile(path / "mmwave" / layout.frame_name(i, "mmwave"))
        if "wifi-csi" in modalities:
            amp = rng.uniform(5, 40, size=layout.CSI_SHAPE)
            phase = rng.uniform(-np.pi, np.pi, size=layout.CSI_SHAPE)
            if rng.random() < 0.3:
                amp[tuple(rng.integers(0, s, size=4) for s in layout.CSI_SHAPE)] = -np.inf
            if rng.random() < 0.1:
                amp[..., int(rng.integers(0, 10))] = np.nan
            if rng.random() < 0.1:
                phase[0, int(rng.integers(0, 114)), 0] = np.inf
            scipy.io.savemat(path / "wifi-csi" / layout.frame_name(i, "wifi-csi"), {"CSIamp": amp, "CSIphase": phase})


def write_tree(root: Path, subjects=SUBJECTS, actions=ACTIONS, n_frames=layout.FRAMES_PER_SEQUENCE, seed=0,
               modalities=layout.MODALITIES) -> Path:
    """An MM-Fi tree root/E??/S??/A??/ for the given subjects x actions, plus the clutter a real root has
    (an ignored 'depth' folder, dot files)."""
    rng = np.random.default_rng(seed)
    for subject in subjects:
        for action in actions:
            seq = root / layout.environment_of(subject) / subject / action
            write_sequence(seq, n_frames, rng, modalities)
            (seq / "depth").mkdir(exist_ok=True)
            (seq / "rgb" / ".DS_Store").write_bytes(b"junk")
    (root / ".poise_synthetic.json").write_text("{}")
    (root / "E01" / ".hidden").mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def mmfi_root(tmp_path_factory) -> Path:
    """A full-length tree (297 frames), 3 subjects in 3 environments x 2 actions. Treat as read-only: build
    caches with ``cache_dir`` under your own tmp_path."""
    return write_tree(tmp_path_factory.mktemp("mmfi"))


@pytest.fixture
def small_root(tmp_path) -> Path:
    """A short tree (5 frames a sequence), yours to damage: 2 subjects x 1 action."""
    return write_tree(tmp_path / "mmfi", subjects=("S01", "S33"), actions=("A02",), n_frames=5, seed=1)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The simulator's tiny preset (seed 3), written once per test session."""
    from poise.data.synth import writer

    root = tmp_path_factory.mktemp("tiny")
    writer.simulate(root, preset="tiny", seed=3, progress=False)
    return root


@pytest.fixture(scope="session")
def stream_root(tmp_path_factory):
    """The simulator's tiny-continual preset: S01, S02 (train) and S05 (S2 test) x tasks 0 and 1 of P1 and P2."""
    from poise.data.synth import writer

    root = tmp_path_factory.mktemp("stream")
    writer.simulate(root, preset="tiny-continual", seed=4, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tiny, tmp_path_factory):
    from poise.data.dataset import MMFiDataset

    return MMFiDataset(tiny, protocol="P1", part="all", lidar_points=128, progress=False,
                       cache_dir=tmp_path_factory.mktemp("tiny_cache"))


@pytest.fixture
def fake_batch():
    """A function making a random batch of all four modalities, shaped as ``MMFiDataset.batch`` gives it."""
    import torch

    def make(b: int = 5) -> dict:
        g = torch.Generator().manual_seed(0)
        return {
            "rgb": torch.rand(b, 17, 2, generator=g) * 480,
            "lidar": torch.randn(b, 32, 3, generator=g), "lidar_mask": torch.ones(b, 32, dtype=torch.bool),
            "mmwave": torch.randn(b, 8, 5, generator=g), "mmwave_mask": torch.rand(b, 8, generator=g) > 0.3,
            "wifi-csi": torch.rand(b, 1, 3, 114, 10, generator=g),
        }
    return make
