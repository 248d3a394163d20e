"""``MMFiDataset``: the frames of one protocol/split/part as fixed-size float32 tensors, from the packed cache or
straight from the files (the slow path, and the reference the cache is tested against)."""

from __future__ import annotations

import threading

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from . import layout
from .cache import open_cache
from .mmfi import (ReadReport, check_modalities, check_on_error, read_csi, read_ground_truth, read_points,
                   read_rgb, read_sequence, scan)
from .splits import Split, restrict
from poise.errors import PoiseError

PARTS = ("train", "test", "all")
_STREAM = {"lidar": 0, "mmwave": 1}  # separate random streams per point-cloud modality
_METADATA = ("env", "subject", "action", "frame", "index")


_MASK64 = (1 << 64) - 1
_STATE = threading.local()


def _mix64(z: int) -> int:
    """SplitMix64's finaliser: a bijective mixer of 64-bit integers."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def hash_key(key, h: int = 0x9E3779B97F4A7C15) -> int:
    """A 64-bit hash of a tuple of integers, chained from ``h`` (so a common prefix can be hashed once)."""
    for v in key:
        h = _mix64(h ^ (int(v) & _MASK64))
    return h


def sample_keys(key, k: int) -> np.ndarray:
    """``k`` pseudo-random uint64 values determined by ``key`` alone (a tuple of ints, or its ``hash_key``).

    The hash seeds the 128-bit state of a PCG64 generator whose raw output is returned: a few microseconds a
    call (seeding through SeedSequence costs several times more, and this runs for every point cloud of every
    item), and the same values on any machine and numpy version (no distribution code involved).
    """
    h = key if isinstance(key, int) else hash_key(key)
    bits = getattr(_STATE, "pcg", None)
    if bits is None:
        bits = _STATE.pcg = np.random.PCG64(0)
    bits.state = {"bit_generator": "PCG64", "state": {"state": (h << 64) | _mix64(h + 1), "inc": 1},
                  "has_uint32": 0, "uinteger": 0}
    return bits.random_raw(k)


def fixed_size(points: np.ndarray, n: int, key, out=None, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """A cloud of any size as exactly ``n`` points plus a mask.

    More than ``n`` points: the ``n`` whose ``sample_keys(key, k)`` are smallest, i.e. a uniform draw without
    replacement, kept in sensor order; ``n`` or fewer: all kept, zero-padded, mask False on the padding (an
    empty cloud is all padding). Returns (float32 (n, C), bool (n,)), written into ``out`` / ``mask`` when
    given (they must be zeros / False on entry).
    """
    k, columns = points.shape
    out = np.zeros((n, columns), dtype=np.float32) if out is None else out
    mask = np.zeros(n, dtype=bool) if mask is None else mask
    if k > n:
        keys = sample_keys(key, k)
        threshold = np.partition(keys, n - 1)[n - 1]  # the n-th smallest key; ties have probability ~k^2/2^64
        out[:] = points.take(np.flatnonzero(keys <= threshold)[:n], axis=0)  # flatnonzero: sensor order
        mask[:] = True
    else:
        out[:k] = points
        mask[:k] = True
    return out, mask


class _FileSource:
    """Reads the files of one frame per row: the per-file path (no cache). Same interface as PackedCache."""

    def __init__(self, sequences, seq_ids, frame_ids, csi_phase):
        self.sequences, self.seq_ids, self.frame_ids, self.csi_phase = sequences, seq_ids, frame_ids, csi_phase

    def _where(self, row):
        return self.sequences[self.seq_ids[row]], int(self.frame_ids[row])

    def gt(self, rows):
        return np.stack([read_ground_truth(seq.gt_path)[f] for seq, f in map(self._where, rows)])

    def rgb(self, rows):
        return np.stack([read_rgb(seq.file("rgb", f)) for seq, f in map(self._where, rows)])

    def points(self, modality, row):
        seq, f = self._where(row)
        return read_points(seq.file(modality, f), modality)

    def csi(self, rows):
        return np.stack([read_csi(seq.file("wifi-csi", f), phase=self.csi_phase) for seq, f in map(self._where, rows)])


class MMFiDataset(Dataset):
    """Frames of an MM-Fi tree for one protocol (P1/P2/P3), split (S1/S2/S3) and part ("train", "test", or
    "all" for every sequence of the protocol on disk).

    Each item is a dict:
    - ``"gt"``: float32 (17, 3), metres, Human3.6M order.
    - ``"rgb"``: float32 (17, 2) pixels, COCO order; with ``rgb_window`` = w > 0, (2w + 1, 17, 2), the same
      sequence's frames f-w..f+w, edges replicated (a neighbour outside the sequence, or left out as bad,
      is replaced by the nearest frame toward f).
    - ``"lidar"``: float32 (lidar_points, 3) with ``"lidar_mask"`` bool (lidar_points,).
    - ``"mmwave"``: float32 (mmwave_points, 5) (x, y, z, Doppler, intensity) with ``"mmwave_mask"``.
    - ``"wifi-csi"``: float32 (C, 3, 114, 10): C = 1 (amplitude, cleaned and min-max normalised per frame),
      or C = 2 with ``csi_phase`` (phase in radians, cleaned, not normalised; see ``mmfi.read_csi``).
    - metadata: ``"env"``, ``"subject"``, ``"action"`` (str), ``"frame"`` (0-based int), ``"index"`` (int).

    Fixed-size rule for point clouds (so the default collate works): a cloud with more than n points gives n
    points drawn without replacement; one with n or fewer is kept whole and zero-padded, mask False on the
    padding; an empty mmWave frame is all padding. The draw depends only on (seed, epoch, modality, item
    index): call ``set_epoch(epoch)`` before each epoch for fresh draws (the DataLoader's workers see the
    change unless ``persistent_workers=True``). Cached and per-file reads therefore give identical tensors.

    Data stays in sensor units (pixels, metres, radians); normalising is the model's job.

    The DataLoader fetches a batch through ``__getitems__`` (one fancy index per array). From the cache a frame
    costs ~50 us, mostly point sampling and collation, so ``num_workers=0`` is usually fastest: worker processes
    cost more to ship each batch through shared memory than the read itself (measured 3x slower with 2 workers).

    ``cache=True`` reads from the packed memory-mapped cache (``poise.data.cache``), built on first use under
    ``cache_dir`` (default ``root/.poise_cache``, else ``~/.cache/poise``); ``cache=False`` reads the files.
    ``on_error="skip"`` leaves bad frames out and reports them in ``self.report`` (with ``cache=False`` this
    costs one validation pass over the files at construction). ``subjects`` restricts to some subjects;
    ``split_seed`` / ``split_ratio`` are the toolbox's ``random_seed`` / ``ratio`` of S1. ``frame_stride`` = k
    keeps frames 0, k, 2k, ... of each sequence (MM-Fi's 10 Hz frames are close to duplicates of their
    neighbours, so a stride trades little information for k times shorter epochs).
    """

    def __init__(self, root, protocol: str = "P1", split: str = "S1", part: str = "train",
                 modalities=layout.MODALITIES, rgb_window: int = 0, lidar_points: int = 1024, mmwave_points: int = 64,
                 csi_phase: bool = False, cache: bool = True, cache_dir=None, on_error: str = "raise", seed: int = 0,
                 subjects=None, split_seed: int = 0, split_ratio: float = 0.8, rebuild_cache: bool = False,
                 progress: bool = True, workers: int | None = None, frame_stride: int = 1):
        self.modalities = check_modalities(modalities)
        self.on_error = check_on_error(on_error)
        if part not in PARTS:
            raise PoiseError(f"part={part!r} is not valid: use one of {PARTS}")
        for name, value in (("rgb_window", rgb_window), ("lidar_points", lidar_points),
                            ("mmwave_points", mmwave_points), ("frame_stride", frame_stride)):
            if not isinstance(value, (int, np.integer)) or value < (0 if name == "rgb_window" else 1):
                raise PoiseError(f"{name}={value!r} must be an integer >= {0 if name == 'rgb_window' else 1}")
        if subjects is not None:
            subjects = [subjects] if isinstance(subjects, str) else list(subjects)
            unknown = [s for s in subjects if s not in layout.SUBJECTS]
            if unknown:
                raise PoiseError(f"unknown subjects {unknown}: MM-Fi subjects are S01..S40")
        self.rgb_window, self.lidar_points, self.mmwave_points = int(rgb_window), int(lidar_points), int(mmwave_points)
        self.csi_phase, self.seed, self.epoch = bool(csi_phase), int(seed), 0
        self.protocol, self.part = protocol, part

        self.report = ReadReport()
        self.sequences = scan(root, layout.resolve_actions(protocol), subjects, self.modalities, on_error, self.report)
        present = {(s.subject, s.action) for s in self.sequences}
        self.split: Split | None = None
        if part == "all":
            selected = present
        else:
            self.split = restrict(protocol, split, present, split_seed, split_ratio)
            selected = set(self.split.pairs(part))

        # Rows: every frame kept by the scan, sequence by sequence (the cache's row order too).
        seq_ids = np.concatenate([np.full(len(s.frames), i, np.int64) for i, s in enumerate(self.sequences)])
        frame_ids = np.concatenate([np.asarray(s.frames, np.int64) for s in self.sequences])
        in_part = np.array([(s.subject, s.action) in selected for s in self.sequences])[seq_ids]
        if cache:
            self.cache = open_cache(root, self.sequences, self.modalities, self.csi_phase, on_error, cache_dir,
                                    rebuild=rebuild_cache, workers=workers, progress=progress)
            assert np.array_equal(self.cache.frames, np.stack([seq_ids, frame_ids], axis=1)), "cache rows mismatch"
            valid = self.cache.valid.copy()
            self.report.merge(self.cache.report_of(s.name for s in self.sequences if (s.subject, s.action) in selected))
            self._source = self.cache
        else:
            self.cache = None
            valid = np.ones(len(frame_ids), dtype=bool)
            if on_error == "skip":  # find the frames the cache builder would leave out
                start = 0
                for i, seq in enumerate(self.sequences):
                    if (seq.subject, seq.action) in selected:
                        _, frames = read_sequence(seq, self.modalities, self.csi_phase, "skip", self.report)
                        valid[start:start + len(frames)] = [f is not None for f in frames]
                    start += len(seq.frames)
            self._source = _FileSource(self.sequences, seq_ids, frame_ids, self.csi_phase)
        self._seq_ids, self._frame_ids = seq_ids, frame_ids
        self._rows = np.flatnonzero(valid & in_part & (frame_ids % frame_stride == 0))
        # Frame index -> row of a kept frame (-1 where none), all sequences end to end: for the rgb window.
        self._seq_base = np.concatenate([[0], np.cumsum([s.n_frames for s in self.sequences])])
        self._n_frames = np.array([s.n_frames for s in self.sequences], dtype=np.int64)
        self._row_of = np.full(self._seq_base[-1], -1, np.int64)
        kept = np.flatnonzero(valid)
        self._row_of[self._seq_base[seq_ids[kept]] + frame_ids[kept]] = kept
        if not self.report.clean:
            self.report.warn(where=f"{root} {protocol} {split} {part} part" if part != "all" else f"{root}")

    def __len__(self) -> int:
        return len(self._rows)

    def sequence_of(self, indices) -> np.ndarray:
        """The sequence (an index into ``self.sequences``) of each dataset index."""
        return self._seq_ids[self._rows[np.asarray(indices, dtype=np.int64)]]

    def poses(self, indices) -> np.ndarray:
        """The ground-truth poses (N, 17, 3), metres, of the frames at ``indices`` (no sensor data read)."""
        return self._source.gt(self._rows[np.asarray(indices, dtype=np.int64).reshape(-1)])

    def set_epoch(self, epoch: int) -> None:
        """Select the point-sampling draws of this epoch (deterministic given seed, epoch and item index)."""
        self.epoch = int(epoch)

    def _window_rows(self, rows: np.ndarray) -> np.ndarray:
        """(B, 2w + 1) rows of frames f-w..f+w of each row's sequence, clamped to the sequence; a neighbour
        left out (skip policy) is replaced by the nearest kept frame toward f."""
        seq, f = self._seq_ids[rows, None], self._frame_ids[rows, None]
        d = np.arange(-self.rgb_window, self.rgb_window + 1)[None, :]
        j = np.clip(f + d, 0, self._n_frames[seq] - 1)
        step = np.where(j < f, 1, -1)
        found = self._row_of[self._seq_base[seq] + j]
        while (found < 0).any():  # terminates: f itself is kept
            j = np.where(found < 0, j + step, j)
            found = self._row_of[self._seq_base[seq] + j]
        return found

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices) -> list[dict]:
        """Items for a list of indices, read in one batch (the DataLoader calls this when it exists)."""
        batch = self.batch(indices)
        lists = {k: batch.pop(k) for k in _METADATA}
        lists["frame"], lists["index"] = lists["frame"].tolist(), lists["index"].tolist()
        arrays = {k: v.unbind(0) for k, v in batch.items()}
        return [{**{k: v[b] for k, v in arrays.items()}, **{k: v[b] for k, v in lists.items()}}
                for b in range(len(lists["index"]))]

    def batch(self, indices) -> dict:
        """The items at ``indices`` already collated: a tensor per array with a leading batch axis, and lists
        for the metadata. Equal to ``default_collate([self[i] for i in indices])``, several times faster."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) and not ((indices >= -len(self)) & (indices < len(self))).all():
            raise IndexError(f"index out of range for a dataset of {len(self)} frames: {indices.tolist()}")
        indices = indices % max(len(self), 1)
        rows = self._rows[indices]
        arrays = {"gt": self._source.gt(rows)}
        for m in self.modalities:
            if m == "rgb":
                arrays[m] = (self._source.rgb(self._window_rows(rows).reshape(-1)).reshape(len(rows), -1, 17, 2)
                             if self.rgb_window else self._source.rgb(rows))
            elif m == "wifi-csi":
                arrays[m] = self._source.csi(rows)
        for m in self.modalities:
            if m in _STREAM:
                arrays[m], arrays[f"{m}_mask"] = self._fixed_size_batch(m, indices, rows)
        out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        seqs = [self.sequences[i] for i in self._seq_ids[rows].tolist()]
        out.update(env=[s.env for s in seqs], subject=[s.subject for s in seqs], action=[s.action for s in seqs],
                   frame=torch.from_numpy(self._frame_ids[rows].copy()), index=torch.from_numpy(indices.copy()))
        return out

    def _fixed_size_batch(self, m: str, indices: np.ndarray, rows: np.ndarray):
        """``fixed_size`` for a batch: from the cache, clouds that fit are copied straight from its ragged
        store; only clouds that need sampling (and every per-file cloud) go through ``fixed_size``."""
        n = self.lidar_points if m == "lidar" else self.mmwave_points
        points = np.zeros((len(rows), n, layout.POINT_COLUMNS[m]), dtype=np.float32)
        mask = np.zeros((len(rows), n), dtype=bool)
        prefix = hash_key((self.seed, self.epoch, _STREAM[m]))  # key = (seed, epoch, stream, index)
        loop = range(len(rows))
        if hasattr(self._source, "ragged"):  # clouds that fit: one slice copy each, no sampling
            data, starts, counts = self._source.ragged(m, rows)
            fits = counts <= n
            for b, start, count in zip(np.flatnonzero(fits).tolist(), starts[fits].tolist(), counts[fits].tolist()):
                points[b, :count] = data[start:start + count]
                mask[b, :count] = True
            loop = np.flatnonzero(~fits).tolist()
        for b in loop:
            fixed_size(self._source.points(m, int(rows[b])), n, hash_key((int(indices[b]),), prefix),
                       out=points[b], mask=mask[b])
        return points, mask

    def loader(self, batch_size: int = 32, shuffle: bool = False, seed: int = 0, drop_last: bool = False,
               num_workers: int = 0, **kwargs) -> DataLoader:
        """A DataLoader yielding ``batch`` dicts: the fast way to iterate (no per-item split and re-stack).
        ``shuffle`` draws a new order each epoch from a generator seeded by ``seed``."""
        sampler = (RandomSampler(self, generator=torch.Generator().manual_seed(seed)) if shuffle
                   else SequentialSampler(self))
        return DataLoader(_Batches(self), sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None,
                          collate_fn=_as_is, num_workers=num_workers, **kwargs)

    def __repr__(self) -> str:
        return (f"MMFiDataset({self.protocol}, part={self.part!r}, {len(self)} frames of {len(self.sequences)} "
                f"sequences, modalities={list(self.modalities)}, cache={self.cache is not None}"
                + (f"; split: {self.split.summary()})" if self.split else ")"))


def _as_is(batch):
    """The loader's collate: ``batch`` is collated already (a module-level function, so workers can pickle it)."""
    return batch


class _Batches(Dataset):
    """``dataset.batch`` behind the Dataset interface: index it with a list of indices (a BatchSampler's)."""

    def __init__(self, dataset: MMFiDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices) -> dict:
        return self.dataset.batch(indices)
