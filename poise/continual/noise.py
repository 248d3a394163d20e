"""Noise injection for paper 001's Setting 2: in each task after the first, one modality of a fraction of the
samples is corrupted, with *raw* or *unaligned* noise (001 Sec. 4.1; the paper defers the generation details
to a supplement we do not have, so the definitions below are ours).

``raw``: the sensor data itself is replaced by what a failing sensor delivers; nothing of the true body is left.
- ``rgb`` (2D keypoints, pixels): detector failure: every keypoint (every frame of an ``rgb_window``) at an
  independent uniform position in the 640 x 480 image.
- ``lidar`` (x, y, z): the cloud is replaced by clutter: as many points as the clean cloud has, uniform in
  the scene box the task's clean clouds occupy (per column, the 0.5 % and 99.5 % quantiles of the valid points
  of up to 256 evenly spaced task samples: ``clutter_ranges``). The mask is kept (valid points stay a
  prefix, padding stays zero).
- ``mmwave`` (x, y, z, Doppler, intensity): the same clutter model on all five columns (false alarms with
  Doppler and intensity uniform in the task's observed ranges). An empty radar frame gets half the cloud size
  of false alarms (its mask gains them), so every corrupted sample is actually corrupted.
- ``wifi-csi``: a jammed receiver: the CSI is complex white Gaussian noise n ~ CN(0, 1); channel 0
  (amplitude) is |n| (Rayleigh), min-max normalised per frame to [0, 1] exactly as the reader does; a phase
  channel, when present, is arg(n), uniform in [-pi, pi).

``unaligned``: the modality's data of the sample comes from another frame, so it no longer matches the label
(a desynchronised sensor): a frame of the same sequence at least ``min_gap`` frames away (default 30 = 3 s at
10 Hz, longer than a repetition of most MM-Fi actions' fast phases), drawn uniformly among the task's samples;
when the sequence has none that far, a sample of another sequence of the task; when the task has one sequence
only and it is too short, any other sample. Actions repeat, so the source is often a near-duplicate pose (on
the demo data a median 76 mm MPJPE from the true one).
``unaligned_far``: the stronger variant (a sensor stream mixed up with another recording): a frame of a
sequence of *another action* of the task, drawn uniformly; when the task has one action, a frame of another
sequence (another subject); when it has one sequence, any other sample.
The data is read clean from the dataset (``dataset.batch``), so a source that is itself corrupted still gives
its clean data. ``NoisyView.source_distances`` says how far each source's pose is from the true one.

Which samples: exactly ``round(ratio * n)`` of the task's n indices (Python's ``round``), a permutation drawn
from ``seed``. Every random draw is keyed by (seed, modality, sample index) only, so a sample is corrupted the
same way whatever batch it is in, in every epoch; rows not corrupted are returned bit-identical.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from poise.choices import NOISE_KINDS as KINDS  # the kinds, defined once
from poise.data import layout
from poise.data.mmfi import clean_csi

UNALIGNED = ("unaligned", "unaligned_far")  # the kinds that take a modality from another frame
MODALITIES = layout.MODALITIES
POINT_MODALITIES = ("lidar", "mmwave")
MIN_GAP_FRAMES = 30  # 3 s at MM-Fi's 10 Hz
RANGE_SAMPLES = 256  # task samples read to estimate the clutter box
RANGE_QUANTILE = 0.005  # box = [q, 1 - q] quantiles per column, robust to MM-Fi's stray points
EMPTY_CLOUD_FILL = 0.5  # an empty cloud gets this fraction of the cloud size as clutter
_CODE = {m: i for i, m in enumerate(MODALITIES)}
_SELECT, _RAW, _SOURCE = 0, 1, 2  # random streams


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
    """What to corrupt in one task (001 Sec. 4.1): ``kind`` (one of ``KINDS``), the one ``modality``,
    the fraction ``ratio`` of samples (001 uses 0.2 and 0.4; any 0 < ratio < 1), and the ``seed``."""

    kind: str
    modality: str
    ratio: float
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not a noise kind: choose one of {', '.join(KINDS)}")
        if self.modality not in MODALITIES:
            raise ValueError(f"modality={self.modality!r} is not a modality: choose one of {', '.join(MODALITIES)}")
        try:
            ratio = float(self.ratio)
        except (TypeError, ValueError):
            ratio = math.nan
        if not 0.0 < ratio < 1.0:  # also rejects NaN
            raise ValueError(f"ratio={self.ratio!r} must be a number with 0 < ratio < 1 (001 uses 0.2 and 0.4)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be an integer >= 0")
        object.__setattr__(self, "ratio", ratio)
        object.__setattr__(self, "seed", int(self.seed))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _rng(spec: NoiseSpec, stream: int, index: int) -> np.random.Generator:
    """The generator of one sample's draws: keyed by (seed, stream, modality, index) only."""
    return np.random.default_rng([spec.seed, stream, _CODE[spec.modality], int(index)])


def clutter_ranges(dataset, indices, modality: str, samples: int = RANGE_SAMPLES,
                   quantile: float = RANGE_QUANTILE) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per column of ``modality``'s clouds over the task: the ``quantile`` and 1 - ``quantile``
    quantiles of the valid points of up to ``samples`` evenly spaced task samples (read with
    ``dataset.batch``). The box raw clutter is drawn in, in the sensor's own coordinates (MM-Fi gives no
    extrinsics, so the box is taken from the data rather than from a room model)."""
    if modality not in POINT_MODALITIES:
        raise ValueError(f"modality={modality!r}: clutter ranges exist for {', '.join(POINT_MODALITIES)} only")
    indices = np.unique(np.asarray(indices, dtype=np.int64))
    if not len(indices):
        raise ValueError("indices is empty: clutter ranges need at least one task sample")
    pick = np.unique(indices[np.linspace(0, len(indices) - 1, min(samples, len(indices))).round().astype(np.int64)])
    batch = dataset.batch(pick)
    points = batch[modality][batch[f"{modality}_mask"]].double().numpy()
    if not len(points):
        raise ValueError(f"the {len(pick)} task samples read have no valid {modality} point: cannot place clutter; "
                         f"pass ranges= explicitly")
    return np.quantile(points, quantile, axis=0), np.quantile(points, 1 - quantile, axis=0)


def frames_of(dataset, indices, chunk: int = 1024) -> np.ndarray:
    """The frame number of each dataset index, read through the public ``dataset.batch`` (its "frame" key),
    ``chunk`` samples at a time."""
    indices = np.asarray(indices, dtype=np.int64)
    parts = [np.asarray(dataset.batch(indices[s:s + chunk])["frame"], dtype=np.int64)
             for s in range(0, len(indices), chunk)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _as_indices(indices) -> np.ndarray:
    return np.asarray(indices.cpu() if torch.is_tensor(indices) else indices, dtype=np.int64).reshape(-1)


class NoisyView:
    """One task's corruption (001 Setting 2): which samples, and ``corrupt(batch)`` to apply it.

    ``indices``: the task's dataset indices (unique; stored sorted in ``self.indices``). ``corrupted``: bool
    per ``self.indices``, exactly ``round(ratio * n)`` True. ``dataset`` (an ``MMFiDataset``, or anything with
    ``batch`` / ``sequence_of``) is needed for unaligned noise (to read the source frames) and, unless
    ``ranges`` = (low, high) per column is given, for raw lidar/mmwave noise (``clutter_ranges``).
    ``sequences`` / ``frames`` / ``actions`` (aligned with ``indices`` as given) spare reading them from
    ``dataset``.
    See the module docstring for what each kind does to each modality.
    """

    def __init__(self, spec: NoiseSpec, indices, dataset=None, *, ranges=None, sequences=None, frames=None,
                 actions=None, min_gap: int = MIN_GAP_FRAMES):
        if not isinstance(spec, NoiseSpec):
            raise TypeError(f"spec must be a NoiseSpec, got {type(spec).__name__}")
        given = np.asarray(indices, dtype=np.int64).reshape(-1)
        if not len(given):
            raise ValueError("indices is empty: a task needs at least one sample")
        if (given < 0).any():
            raise ValueError("indices must be dataset indices >= 0")
        order = np.argsort(given, kind="stable")
        self.indices = given[order]
        if (np.diff(self.indices) == 0).any():
            raise ValueError("indices has duplicates: pass each task sample once")
        self.spec, self.dataset, self.min_gap = spec, dataset, int(min_gap)
        n = len(self.indices)
        chosen = np.random.default_rng([spec.seed, _SELECT]).permutation(n)[:round(spec.ratio * n)]
        self.corrupted = np.zeros(n, dtype=bool)
        self.corrupted[chosen] = True

        self.ranges = None
        if spec.kind == "raw" and spec.modality in POINT_MODALITIES:
            if ranges is None:
                if dataset is None:
                    raise ValueError(f"raw {spec.modality} noise draws clutter in the task's scene box: pass "
                                     f"ranges=(low, high) or dataset= to estimate it")
                ranges = clutter_ranges(dataset, self.indices, spec.modality)
            low, high = (np.asarray(r, dtype=np.float64).reshape(-1) for r in ranges)
            columns = layout.POINT_COLUMNS[spec.modality]
            if low.shape != (columns,) or high.shape != (columns,) or not (high >= low).all():
                raise ValueError(f"ranges for {spec.modality} must be (low, high), each {columns} numbers with "
                                 f"high >= low; got {low.tolist()}, {high.tolist()}")
            self.ranges = (low, high)

        self.sources = None
        if spec.kind in UNALIGNED:
            if dataset is None:
                raise ValueError("unaligned noise reads other frames: pass dataset=")
            if n < 2:
                raise ValueError("unaligned noise needs a task of at least 2 samples")
            seqs = (np.asarray(dataset.sequence_of(self.indices)) if sequences is None
                    else np.asarray(sequences).reshape(-1)[order])
            if spec.kind == "unaligned":  # frame numbers (read through whole batches): only this kind needs them
                other = frames_of(dataset, self.indices) if frames is None else np.asarray(frames).reshape(-1)[order]
            else:
                other = (np.array([dataset.sequences[q].action for q in seqs]) if actions is None
                         else np.asarray(actions).reshape(-1)[order])
            if len(seqs) != n or len(other) != n:
                raise ValueError(f"sequences and {'frames' if spec.kind == 'unaligned' else 'actions'} must have "
                                 f"one entry per index ({n})")
            self.sources = (self._choose_sources(seqs, other.astype(np.int64)) if spec.kind == "unaligned"
                            else self._choose_far_sources(seqs, other))

    def _choose_sources(self, seqs: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Source index per position (-1 where not corrupted): see the module docstring."""
        n = len(self.indices)
        by_seq = np.lexsort((frames, seqs))  # positions grouped by sequence, frames ascending within
        s_sorted, f_sorted = seqs[by_seq], frames[by_seq]
        sources = np.full(n, -1, dtype=np.int64)
        for p in np.flatnonzero(self.corrupted):
            rng = _rng(self.spec, _SOURCE, self.indices[p])
            a = np.searchsorted(s_sorted, seqs[p], "left")
            b = np.searchsorted(s_sorted, seqs[p], "right")
            fr = f_sorted[a:b]
            lo = np.searchsorted(fr, frames[p] - self.min_gap, "right")  # fr[:lo] <= f - gap
            hi = np.searchsorted(fr, frames[p] + self.min_gap, "left")  # fr[hi:] >= f + gap
            far = lo + (len(fr) - hi)
            if far:
                j = int(rng.integers(far))
                q = by_seq[a + (j if j < lo else hi + j - lo)]
            elif n - (b - a):  # another sequence of the task
                j = int(rng.integers(n - (b - a)))
                q = by_seq[j if j < a else j + (b - a)]
            else:  # one short sequence: any other sample
                j = int(rng.integers(n - 1))
                q = j if j < p else j + 1
            sources[p] = self.indices[q]
        return sources

    def _choose_far_sources(self, seqs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``unaligned_far``'s source index per position (-1 where not corrupted): see the module docstring."""
        n = len(self.indices)
        sources = np.full(n, -1, dtype=np.int64)
        for p in np.flatnonzero(self.corrupted):
            rng = _rng(self.spec, _SOURCE, self.indices[p])
            pool = np.flatnonzero(actions != actions[p])
            if not len(pool):
                pool = np.flatnonzero(seqs != seqs[p])
            if not len(pool):
                pool = np.delete(np.arange(n), p)
            sources[p] = self.indices[pool[int(rng.integers(len(pool)))]]
        return sources

    def source_distances(self) -> dict:
        """How far the corrupted samples' sources are from the truth (unaligned kinds; reads ground truth only):
        per corrupted sample, the MPJPE between the source frame's pose and the sample's own, absolute and
        root-relative (pelvis-aligned), in mm. {} for raw noise."""
        if self.sources is None:
            return {}
        from poise.metrics import M_TO_MM, joint_errors

        true = torch.as_tensor(np.asarray(self.dataset.poses(self.corrupted_indices)), dtype=torch.float64)
        source = torch.as_tensor(np.asarray(self.dataset.poses(self.sources[self.corrupted])), dtype=torch.float64)
        return {key: (joint_errors(source, true, root_relative=relative).mean(-1) * M_TO_MM).tolist()
                for key, relative in (("mpjpe_mm", False), ("root_relative_mm", True))}

    @property
    def corrupted_indices(self) -> np.ndarray:
        """The dataset indices whose ``spec.modality`` is corrupted."""
        return self.indices[self.corrupted]

    def _positions(self, indices) -> np.ndarray:
        idx = _as_indices(indices)
        pos = np.searchsorted(self.indices, idx)
        bad = (pos >= len(self.indices)) | (self.indices[np.minimum(pos, len(self.indices) - 1)] != idx)
        if bad.any():
            raise ValueError(f"indices {idx[bad][:10].tolist()} are not samples of this task's view")
        return pos

    def is_corrupted(self, indices) -> np.ndarray:
        """Bool per index: is its ``spec.modality`` corrupted? (Every index must be a task sample.)"""
        return self.corrupted[self._positions(indices)]

    def corrupt(self, batch: dict, indices=None) -> dict:
        """``batch`` (an ``MMFiDataset.batch`` dict) with ``spec.modality`` corrupted in the rows whose index
        (``indices``, default ``batch["index"]``) is corrupted. A new dict: the modality's tensor (and mask) are
        copies, every other entry is the caller's object, and clean rows are bit-identical."""
        m = self.spec.modality
        if m not in batch:
            raise KeyError(f"the batch has no {m!r} entry to corrupt (keys: {sorted(batch)})")
        if indices is None and "index" not in batch:
            raise ValueError("the batch has no 'index' entry: pass indices= (the dataset index of each row)")
        idx = _as_indices(batch["index"] if indices is None else indices)
        if len(idx) != batch[m].shape[0]:
            raise ValueError(f"{len(idx)} indices for a batch of {batch[m].shape[0]} rows")
        rows = np.flatnonzero(self.corrupted[self._positions(idx)])
        out = dict(batch)
        if not len(rows):
            return out
        key = f"{m}_mask" if m in POINT_MODALITIES else None
        x = batch[m].clone()
        mask = batch[key].clone() if key else None
        if self.spec.kind in UNALIGNED:
            source = self.dataset.batch(self.sources[self._positions(idx[rows])])
            if tuple(source[m].shape[1:]) != tuple(x.shape[1:]):
                raise ValueError(f"source {m} rows have shape {tuple(source[m].shape[1:])}, the batch's "
                                 f"{tuple(x.shape[1:])}: build the view on the dataset the batch comes from")
            x[torch.as_tensor(rows, device=x.device)] = source[m].to(x)
            if key:
                mask[torch.as_tensor(rows, device=x.device)] = source[key].to(mask)
        else:
            for r in rows.tolist():
                rng = _rng(self.spec, _RAW, idx[r])
                if key:
                    points, valid = self._clutter(rng, mask[r].cpu().numpy(), tuple(x.shape[1:]))
                    x[r], mask[r] = torch.from_numpy(points).to(x), torch.from_numpy(valid).to(mask)
                else:
                    x[r] = torch.from_numpy(self._raw(rng, tuple(x.shape[1:]))).to(x)
        out[m] = x
        if key:
            out[key] = mask
        return out

    def _raw(self, rng: np.random.Generator, shape: tuple) -> np.ndarray:
        """Raw noise of one rgb or wifi-csi row of ``shape``."""
        if self.spec.modality == "rgb":  # (..., 17, 2) pixels: uniform in the image
            return rng.random(shape) * np.array(layout.IMAGE_SIZE, dtype=np.float64)
        # wifi-csi (C, 3, 114, 10): complex white noise; amplitude normalised like the reader, phase its angle
        noise = rng.standard_normal(shape[1:]) + 1j * rng.standard_normal(shape[1:])
        out = np.empty(shape)
        out[0] = clean_csi(np.abs(noise), normalise=True)
        out[1:] = np.angle(noise)
        return out

    def _clutter(self, rng: np.random.Generator, valid: np.ndarray, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        """Raw noise of one lidar/mmwave row: clutter points uniform in ``self.ranges``, in the valid slots."""
        n, columns = shape
        valid = valid.copy()
        count = int(valid.sum())
        if not count:  # an empty cloud (mmWave): false alarms appear
            count = max(1, round(EMPTY_CLOUD_FILL * n))
            valid[:count] = True
        low, high = self.ranges
        points = np.zeros(shape)
        points[valid] = low + (high - low) * rng.random((count, columns))
        return points, valid

    def record(self) -> dict:
        """What was corrupted, as plain JSON-able values: the spec, the task's indices, the corrupted indices,
        and (unaligned) each corrupted index's source index or (raw lidar/mmwave) the clutter box."""
        rec = {"spec": self.spec.to_dict(), "indices": self.indices.tolist(),
               "corrupted": self.corrupted_indices.tolist()}
        if self.ranges is not None:
            rec["ranges"] = {"low": self.ranges[0].tolist(), "high": self.ranges[1].tolist()}
        if self.sources is not None:
            rec["min_gap"] = self.min_gap
            rec["sources"] = [[int(i), int(s)] for i, s in zip(self.corrupted_indices, self.sources[self.corrupted])]
        return rec

    def __repr__(self) -> str:
        s = self.spec
        return (f"NoisyView({s.kind} noise on {s.modality}, {int(self.corrupted.sum())} of {len(self.indices)} "
                f"samples, seed {s.seed})")
