"""A packed, memory-mapped copy of the frames an MM-Fi dataset reads, so an epoch is not 300k file opens.

Layout of one cache folder (``<location>/<key>/``), one store per modality, all ``.npy`` read with
``mmap_mode="r"``; a row is one frame that passed the structural checks of ``mmfi.scan``:

    frames.npy          (R, 2) int32    sequence id (position in meta["sequences"]), 0-based frame index
    valid.npy           (R,)   bool     False for frames found bad while building (on_error="skip")
    gt.npy              (R, 17, 3) float32
    rgb.npy             (R, 17, 2) float32
    lidar.npy           (P, 3) float32  all clouds concatenated; frame r is lidar[offsets[r]:offsets[r+1]]
    lidar_offsets.npy   (R + 1,) int64
    mmwave.npy / mmwave_offsets.npy     the same with 5 columns
    wifi-csi.npy        (R, C, 3, 114, 10) float32, already cleaned (C = 2 with CSI phase)
    meta.json           version, key, options, sequence names, the build's ReadReport (in all, and per sequence)

Every value is produced by the same ``mmfi.read_*`` functions the per-file path uses, so cached reads
equal uncached reads bit for bit.

The key is a sha256 of: a format version, the options (modalities, CSI phase, error policy), and for every
data file of the selected sequences its (relative path, size, mtime_ns), the relative path being implied by
(sequence name, modality, frame index). Stat-based, like make and rsync, rather than hashing the bytes: the
full dataset is ~1.3M files and ~30 GB, so hashing content would cost as much as reading the whole dataset,
which is what the cache exists to avoid; the stats come for free from the scan that validates the tree. A
change that keeps both the size and the nanosecond mtime of a file is not detected (deliberate mtime
tampering, or a filesystem with coarse timestamps): pass ``rebuild=True`` then.

Building writes into a temporary folder next to the destination and renames it into place at the end, so an
interrupted build leaves no folder under the key, and a folder under the key is always complete.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import socket
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from hashlib import sha256
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import layout
from .mmfi import MMFiFormatError, ReadReport, Sequence, read_ground_truth, read_sequence
from poise.errors import PoiseError

logger = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: a read report per sequence, so each part reports only its own frames
CACHE_DIRNAME = ".poise_cache"
_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def fingerprint(sequences: list[Sequence], modalities, csi_phase: bool, on_error: str) -> str:
    """The cache key: sha256 over format version, options and every selected file's (path, size, mtime_ns)."""
    h = sha256()
    options = {"version": CACHE_VERSION, "modalities": list(modalities), "csi_phase": bool(csi_phase),
               "on_error": on_error}
    h.update(json.dumps(options, sort_keys=True).encode())
    for seq in sequences:
        h.update(f"|{seq.name}/{layout.GROUND_TRUTH}:{seq.gt_stat[0]}:{seq.gt_stat[1]}".encode())
        h.update(np.asarray(seq.frames, dtype=np.int64).tobytes())
        for modality in modalities:
            h.update(f"|{seq.name}/{modality}".encode())
            h.update(seq.sizes[modality].astype(np.int64).tobytes())
            h.update(seq.mtimes[modality].astype(np.int64).tobytes())
    return h.hexdigest()[:32]


def cache_locations(root, cache_dir=None) -> list[Path]:
    """Where caches live, in search order: ``cache_dir`` if given, else ``root/.poise_cache`` then
    ``$XDG_CACHE_HOME/poise`` (default ``~/.cache/poise``)."""
    if cache_dir is not None:
        return [Path(cache_dir)]
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "poise"
    return [Path(root) / CACHE_DIRNAME, user]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}-{secrets.token_hex(4)}"
        probe.mkdir()
        probe.rmdir()
        return True
    except OSError:
        return False


class DamagedCache(PoiseError):
    """A cache folder that is incomplete, truncated or of another format version: ``open_cache`` rebuilds it
    (and says so with ``problem`` alone); anyone else is told to delete it."""

    def __init__(self, problem: str, folder):
        self.problem, self.folder = problem, folder
        super().__init__(f"{problem}; delete {folder} and it will be rebuilt")

    def __reduce__(self):  # from a bench worker to its parent
        return type(self), (self.problem, self.folder)


class PackedCache:
    """One built cache folder, opened read-only; arrays are memory-mapped on first access (per process)."""

    def __init__(self, path):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        try:
            self.meta = json.loads(meta_path.read_text())
            self.sequences = list(self.meta["sequences"])
            self.modalities = tuple(self.meta["modalities"])
            self.report = ReadReport.from_dict(self.meta["report"])
            self.reports = {name: ReadReport.from_dict(d) for name, d in self.meta["reports"].items()}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DamagedCache(f"{meta_path}: not a complete poise cache ({type(err).__name__})", self.path) from None
        if self.meta.get("version") != CACHE_VERSION:
            raise DamagedCache(f"{self.path}: cache format version {self.meta.get('version')}, this poise reads "
                               f"{CACHE_VERSION}", self.path)
        self.frames = self._load("frames")
        self.valid = self._load("valid")
        rows = len(self.frames)
        for name in self._names():  # every store's length against the frame table, so a truncated one is named
            n = len(self._load(name, mmap_mode="r"))
            if name in layout.POINT_COLUMNS:
                expected = int(self._load(f"{name}_offsets", mmap_mode="r")[-1])  # all clouds, concatenated
            else:
                expected = rows + 1 if name.endswith("_offsets") else rows
            if n != expected or len(self.valid) != rows:
                raise DamagedCache(f"{self.path / (name + '.npy')}: {n} rows where the cache needs {expected}",
                                   self.path)
        self._arrays = None

    def report_of(self, names) -> ReadReport:
        """What the build skipped and noticed in the sequences called ``names`` (e.g. one split's part)."""
        report = ReadReport()
        for name in names:
            if name in self.reports:
                report.merge(self.reports[name])
        return report

    def _names(self) -> list[str]:
        names = ["gt", *self.modalities]
        return names + [f"{m}_offsets" for m in self.modalities if m in layout.POINT_COLUMNS]

    def _load(self, name: str, mmap_mode=None) -> np.ndarray:
        path = self.path / f"{name}.npy"
        try:
            return np.load(path, mmap_mode=mmap_mode)
        except (OSError, ValueError, EOFError) as err:  # missing, truncated ("mmap length is greater ..."), garbage
            raise DamagedCache(f"{path}: damaged cache array ({err})", self.path) from None

    def __getstate__(self):  # memmaps are reopened in each DataLoader worker, never pickled
        state = self.__dict__.copy()
        state["_arrays"] = None
        return state

    def array(self, name: str) -> np.ndarray:
        if self._arrays is None:
            # Plain ndarray views of the maps: indexing them skips np.memmap's per-call overhead.
            self._arrays = {n: np.asarray(self._load(n, mmap_mode="r")) for n in self._names()}
        return self._arrays[name]

    def close(self) -> None:
        """Unmap the arrays (they are mapped again on the next read)."""
        self._arrays = None

    def __len__(self) -> int:
        return len(self.frames)

    # Readers by rows (an int array: fancy indexing copies).
    def gt(self, rows) -> np.ndarray:
        return self.array("gt")[rows]

    def rgb(self, rows) -> np.ndarray:
        return self.array("rgb")[rows]

    def csi(self, rows) -> np.ndarray:
        return self.array("wifi-csi")[rows]

    def ragged(self, modality: str, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All of ``modality``'s points (the map), and the start and count of each row's cloud in it."""
        offsets = self.array(f"{modality}_offsets")
        starts = offsets[rows]
        return self.array(modality), starts, offsets[np.asarray(rows) + 1] - starts

    def points(self, modality: str, row: int) -> np.ndarray:
        """Frame ``row``'s cloud as a read-only view of the map (copy it to keep it)."""
        offsets = self.array(f"{modality}_offsets")
        return self.array(modality)[offsets[row]:offsets[row + 1]]


def open_cache(root, sequences: list[Sequence], modalities, csi_phase: bool = False, on_error: str = "raise",
               cache_dir=None, rebuild: bool = False, workers: int | None = None, progress: bool = True) -> PackedCache:
    """The cache for these sequences and options: opened if one exists under its key, else built first."""
    key = fingerprint(sequences, modalities, csi_phase, on_error)
    locations = cache_locations(root, cache_dir)
    damaged = set()
    if not rebuild:
        for location in locations:
            if (location / key).is_dir():
                try:
                    return PackedCache(location / key)
                except DamagedCache as err:
                    logger.warning("rebuilding a damaged cache (%s)", err.problem)
                    damaged.add(location / key)
    for location in locations:
        if _writable(location):
            _remove_stale_builds(location)
            dest = location / key
            if (rebuild or dest in damaged or dest.is_dir() and not (dest / "meta.json").is_file()) and dest.exists():
                shutil.rmtree(dest)  # poise's own folder under its key: a finished build always has meta.json
            build(dest, sequences, modalities, csi_phase, on_error, workers=workers, progress=progress)
            return PackedCache(dest)
    raise PermissionError(f"no writable cache location among {[str(p) for p in locations]}: pass cache_dir= a "
                          f"writable folder, or cache=False to read the files directly")


def _remove_stale_builds(location: Path) -> None:
    """Delete temp folders of this machine's builds whose process is gone (killed hard, so its cleanup never
    ran). Builds of other machines sharing the folder are left alone: their pids mean nothing here."""
    for tmp in location.glob(".tmp-*"):
        parts = tmp.name.split("-", 4)  # ".tmp", key, pid, token, host
        if len(parts) != 5 or not parts[2].isdigit() or parts[4] != _HOST:
            continue
        try:
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (PermissionError, OverflowError):  # alive (another user's), or not a pid at all
            pass


def _read_for_cache(seq: Sequence, modalities, csi_phase: bool, on_error: str):
    """Everything one sequence contributes to the cache, read with the per-file functions (runs in workers)."""
    report = ReadReport()
    gt = read_ground_truth(seq.gt_path)[seq.frames]
    _, frames = read_sequence(seq, modalities, csi_phase, on_error, report)
    return gt, frames, report


def _ordered_map(pool, fn, items, args, ahead: int):
    """``pool.map`` with at most ``ahead`` results in flight, so a slow writer never piles sequences up in RAM."""
    items = iter(items)
    pending = deque(pool.submit(fn, item, *args) for item in islice(items, ahead))
    while pending:
        result = pending.popleft().result()
        for item in islice(items, 1):
            pending.append(pool.submit(fn, item, *args))
        yield result


def build(dest, sequences: list[Sequence], modalities, csi_phase: bool = False, on_error: str = "raise",
          workers: int | None = None, progress: bool = True) -> None:
    """Read every kept frame of ``sequences`` and write the cache folder ``dest`` atomically (temp + rename).

    ``workers`` processes read sequences in parallel (None: up to 8 when there are many sequences; 0: none).
    Under ``on_error="skip"`` a frame found bad is written as zeros with ``valid`` False, and the build's
    report is stored in meta.json.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{dest.name}-{os.getpid()}-{secrets.token_hex(4)}-{_HOST}"
    tmp.mkdir()
    try:
        _write(tmp, dest.name, sequences, modalities, csi_phase, on_error, workers, progress)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not (dest / "meta.json").is_file():  # not just another process finishing the same build first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


FREE_SPACE_MARGIN = 256 * 2 ** 20  # bytes left over after a build, for everything else that writes there


def _size(n: int) -> str:
    return f"{n / 2 ** 30:.2f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:.1f} MiB"


def check_free_space(folder: Path, needed: int) -> None:
    """Refuse a build the disk cannot hold, before writing: the stores are memory-mapped, and a write into a
    mapped file on a full disk kills the process (SIGBUS) instead of raising."""
    free = shutil.disk_usage(folder).free
    if free < needed + FREE_SPACE_MARGIN:
        raise PoiseError(f"no space left for the MM-Fi cache in {folder.parent}: it needs {_size(needed)} and "
                         f"{_size(free)} is free. Free some space there (caches of other modality sets "
                         f"beside it can go), or, from Python, build it on another disk (MMFiDataset(cache_dir=...)) "
                         f"or read the files directly (cache=False)")


def _write(tmp: Path, key: str, sequences, modalities, csi_phase, on_error, workers, progress) -> None:
    seq_ids = np.concatenate([np.full(len(s.frames), i, np.int32) for i, s in enumerate(sequences)])
    frame_ids = np.concatenate([np.asarray(s.frames, np.int32) for s in sequences])
    n_rows = len(frame_ids)
    starts = np.concatenate([[0], np.cumsum([len(s.frames) for s in sequences])])
    np.save(tmp / "frames.npy", np.stack([seq_ids, frame_ids], axis=1))
    valid = np.ones(n_rows, dtype=bool)

    shapes = {"gt": (n_rows, 17, 3)}
    offsets = {}
    for m in modalities:
        if m == "rgb":
            shapes[m] = (n_rows, *layout.RGB_SHAPE)
        elif m == "wifi-csi":
            shapes[m] = (n_rows, 2 if csi_phase else 1, *layout.CSI_SHAPE)
        else:  # point clouds: sizes are known from the scan, so the concatenated store is allocated exactly
            counts = np.concatenate([s.n_points(m)[s.frames] for s in sequences])
            offsets[m] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            np.save(tmp / f"{m}_offsets.npy", offsets[m])
            shapes[m] = (int(offsets[m][-1]), layout.POINT_COLUMNS[m])
    check_free_space(tmp, sum(4 * int(np.prod(shape)) for shape in shapes.values()))
    stores = {name: np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=np.float32, shape=shape)
              for name, shape in shapes.items()}

    if workers is None:
        workers = min(8, os.cpu_count() or 1) if len(sequences) >= 8 else 0
    report, reports = ReadReport(), {}
    args = (modalities, csi_phase, on_error)
    pool = ProcessPoolExecutor(workers) if workers > 0 else None
    try:
        results = (_ordered_map(pool, _read_for_cache, sequences, args, ahead=2 * workers) if pool
                   else (_read_for_cache(s, *args) for s in sequences))
        bar = tqdm(total=n_rows, unit="frame", desc="building MM-Fi cache", disable=not progress)
        for i, (gt, frames, seq_report) in enumerate(results):
            report.merge(seq_report)
            if not seq_report.clean or seq_report.info:
                reports[sequences[i].name] = seq_report.to_dict()
            a, b = starts[i], starts[i + 1]
            stores["gt"][a:b] = gt
            for j, frame in enumerate(frames):
                row = a + j
                if frame is None:
                    valid[row] = False
                    continue
                for m in modalities:
                    if m in offsets:
                        lo, hi = offsets[m][row], offsets[m][row + 1]
                        if len(frame[m]) != hi - lo:
                            raise MMFiFormatError(
                                f"{sequences[i].file(m, int(sequences[i].frames[j]))} changed while the cache was "
                                f"being built ({len(frame[m])} points, {hi - lo} at scan time); build again",
                                sequences[i].file(m, int(sequences[i].frames[j])), m, "changed during build")
                        stores[m][lo:hi] = frame[m]
                    else:
                        stores[m][row] = frame[m]
            bar.update(b - a)
        bar.close()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    for array in stores.values():
        array.flush()
    del stores
    np.save(tmp / "valid.npy", valid)
    meta = {"version": CACHE_VERSION, "key": key, "modalities": list(modalities), "csi_phase": bool(csi_phase),
            "on_error": on_error, "sequences": [s.name for s in sequences], "rows": int(n_rows),
            "report": report.to_dict(), "reports": reports}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
