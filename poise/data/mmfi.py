"""Read an MM-Fi tree: index its sequences, validate them, and read one frame file at a time.

Two levels of checking, so that opening a dataset stays cheap and every bad file is still named:
- ``scan`` (index time) checks structure: the E??/S??/A?? tree, a subject in its environment, each
  requested modality folder present, ``ground_truth.npy`` of shape (F, 17, 3) and finite, frame files
  frame001..frameF in every folder, and .bin byte sizes (``os.stat``, no reading).
- ``read_*`` (read time) checks content: .npy/.mat readable, keys and shapes, NaN/inf in keypoints and point
  clouds. CSI may legitimately hold -inf/NaN: ``clean_csi`` repairs it and the repair is counted as info.

Errors are ``MMFiFormatError`` naming the file or folder and saying what to do. With ``on_error="skip"`` a bad
frame (or a sequence whose folder or ground truth is unusable) is left out instead, counted per modality and
reason in a ``ReadReport`` and announced with one ``warnings.warn`` line: nothing is dropped silently.
Info notes (empty point files at scan time; CSI frames that needed NaN/inf filling, counted whenever a whole
sequence is read: cache build, or the per-file skip pass) are kept in the report without a warning.

Differences from the official toolbox, on purpose: an empty mmWave file is a frame with 0 points (the toolbox
drops the whole frame), and ``clean_csi`` never divides by zero or leaves NaN.
"""

from __future__ import annotations

import errno
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io

from . import layout
from poise.errors import PoiseError

ON_ERROR = ("raise", "skip")
GT_KEY = "gt"  # the report's name for the ground truth, next to the modality names
N_EXAMPLES = 3  # example paths kept per (modality, reason) in a report

_ENV_RE = re.compile(r"E\d\d")
_SUBJECT_RE = re.compile(r"S\d\d")
_ACTION_RE = re.compile(r"A\d\d")
_FRAME_RE = re.compile(r"frame(\d+)(\.\w+)")


class MMFiFormatError(PoiseError):
    """The MM-Fi tree does not match the format. ``path``, ``modality`` and ``reason`` say where and why."""

    def __init__(self, message: str, path=None, modality: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.modality = modality
        self.reason = reason

    def __reduce__(self):  # keep path/modality/reason when raised in a worker process
        return type(self), (str(self), self.path, self.modality, self.reason)


# ----------------------------------------------------------------------------------------------------------------
# Report


@dataclass
class ReadReport:
    """What the reader left out (``on_error="skip"``) and what it noticed but kept (info).

    ``skipped`` and ``info`` count frames per (modality, reason); ``skipped_sequences`` lists whole sequences
    left out, with the reason; ``examples`` keeps the first few paths of each kind. ``str(report)`` prints it.
    """

    skipped: Counter = field(default_factory=Counter)
    info: Counter = field(default_factory=Counter)
    skipped_sequences: list = field(default_factory=list)  # [(sequence name, reason)]
    examples: dict = field(default_factory=dict)  # (kind, modality, reason) -> [path, ...]
    frames_skipped: int = 0  # distinct frames left out (a frame may be bad in several modalities)

    def skip(self, modality: str, reason: str, path) -> None:
        self.skipped[(modality, reason)] += 1
        self._example("skipped", modality, reason, path)

    def note(self, modality: str, reason: str, path) -> None:
        self.info[(modality, reason)] += 1
        self._example("info", modality, reason, path)

    def skip_sequence(self, name: str, reason: str) -> None:
        self.skipped_sequences.append((name, reason))

    def _example(self, kind, modality, reason, path) -> None:
        paths = self.examples.setdefault((kind, modality, reason), [])
        if len(paths) < N_EXAMPLES:
            paths.append(str(path))

    @property
    def clean(self) -> bool:
        """True when nothing was skipped (info notes do not count)."""
        return not self.skipped and not self.skipped_sequences

    def merge(self, other: "ReadReport") -> "ReadReport":
        """Add ``other``'s counts to this report (in place) and return it."""
        self.skipped.update(other.skipped)
        self.info.update(other.info)
        self.skipped_sequences.extend(other.skipped_sequences)
        self.frames_skipped += other.frames_skipped
        for key, paths in other.examples.items():
            mine = self.examples.setdefault(key, [])
            mine.extend(paths[: max(0, N_EXAMPLES - len(mine))])
        return self

    def summary(self) -> str:
        """One line: what was skipped and noticed."""
        parts = []
        if self.skipped_sequences:
            parts.append(f"{len(self.skipped_sequences)} sequences skipped")
        if self.skipped or self.frames_skipped:
            parts.append(f"{self.frames_skipped} frames skipped ("
                         + ", ".join(f"{m} {r}: {n}" for (m, r), n in sorted(self.skipped.items())) + ")")
        if self.info:
            parts.append("info: " + ", ".join(f"{m} {r}: {n}" for (m, r), n in sorted(self.info.items())))
        return "MM-Fi read report: " + ("; ".join(parts) if parts else "all frames read, nothing to report")

    def __str__(self) -> str:
        lines = [self.summary()]
        for name, reason in self.skipped_sequences:
            lines.append(f"  skipped sequence {name}: {reason}")
        for kind, counter in (("skipped", self.skipped), ("info", self.info)):
            for (modality, reason), n in sorted(counter.items()):
                examples = self.examples.get((kind, modality, reason), [])
                lines.append(f"  {kind:7s} {modality:8s} {reason}: {n} frames, e.g. {', '.join(examples)}")
        return "\n".join(lines)

    def warn(self, stacklevel: int = 2, where: str = "") -> None:
        """Emit the one-line summary (of ``where``, e.g. a split's part) as a warning when anything was skipped
        or noticed."""
        if not self.clean or self.info:
            warnings.warn((f"{where}: " if where else "") + self.summary() + " (see the dataset's .report for the "
                          "files)", stacklevel=stacklevel + 1)

    def to_dict(self) -> dict:
        """JSON-ready form (the cache stores it)."""
        return {
            "skipped": [[m, r, n] for (m, r), n in sorted(self.skipped.items())],
            "info": [[m, r, n] for (m, r), n in sorted(self.info.items())],
            "skipped_sequences": [list(x) for x in self.skipped_sequences],
            "examples": [[k, m, r, p] for (k, m, r), p in sorted(self.examples.items())],
            "frames_skipped": self.frames_skipped,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ReadReport":
        return cls(
            skipped=Counter({(m, r): n for m, r, n in d["skipped"]}),
            info=Counter({(m, r): n for m, r, n in d["info"]}),
            skipped_sequences=[tuple(x) for x in d["skipped_sequences"]],
            examples={(k, m, r): list(p) for k, m, r, p in d["examples"]},
            frames_skipped=int(d["frames_skipped"]),
        )


# ----------------------------------------------------------------------------------------------------------------
# Index


@dataclass
class Sequence:
    """One E??/S??/A?? folder: where it is, how many frames, which frames passed the structural checks.

    ``sizes`` / ``mtimes`` hold, per requested modality, the byte size and mtime (ns) of frame001..frameF
    (-1 where a file is missing); the cache fingerprint is built from them and ``gt_stat``.
    """

    env: str
    subject: str
    action: str
    path: Path
    n_frames: int
    frames: np.ndarray  # sorted 0-based indices of the frames kept after structural checks
    sizes: dict = field(default_factory=dict, repr=False)
    mtimes: dict = field(default_factory=dict, repr=False)
    gt_stat: tuple = (0, 0)

    @property
    def name(self) -> str:
        return f"{self.env}/{self.subject}/{self.action}"

    @property
    def gt_path(self) -> Path:
        return self.path / layout.GROUND_TRUTH

    def file(self, modality: str, index: int) -> Path:
        """Path of 0-based frame ``index`` of ``modality``."""
        return self.path / modality / layout.frame_name(index, modality)

    def n_points(self, modality: str) -> np.ndarray:
        """Points per frame of a point-cloud modality, from the byte sizes (valid for kept frames)."""
        return self.sizes[modality] // (8 * layout.POINT_COLUMNS[modality])


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise PoiseError(f"on_error={on_error!r} is not valid: use 'raise' (stop at the first bad file) or "
                         f"'skip' (leave bad frames out and report them)")
    return on_error


def check_modalities(modalities) -> tuple[str, ...]:
    """Validate a modality list (a string is one modality); returns a tuple in layout.MODALITIES order."""
    if isinstance(modalities, str):
        modalities = (modalities,)
    modalities = tuple(modalities)
    unknown = [m for m in modalities if m not in layout.MODALITIES]
    if unknown:
        raise PoiseError(f"unknown modalities {unknown}: choose from {list(layout.MODALITIES)}")
    if not modalities:
        raise PoiseError(f"modalities is empty: give at least one of {list(layout.MODALITIES)}")
    return tuple(m for m in layout.MODALITIES if m in modalities)


def broken_link(path: Path) -> str | None:
    """Why ``path`` cannot be followed, when it is a symbolic link that loops or points at nothing (else None)."""
    if not path.is_symlink():
        return None
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python 3.11 reports a loop so
        return "is a symbolic link that loops back on itself"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link that loops back on itself"
        if err.errno == errno.ENOENT:
            return f"is a symbolic link to {os.readlink(path)!r}, which does not exist"
        return f"is a symbolic link to {os.readlink(path)!r} that cannot be followed ({err.strerror})"
    return None


REPLACE_LINK = "replace the link with it, or remove it"


def _link_message(path: Path, problem: str, what: str, then: str = REPLACE_LINK) -> str:
    """The one wording of a broken link: which path, what is wrong with it, what it should be, what to do."""
    return f"{path} {problem}; it should be {what}: {then}"


def _check_link(path: Path, what: str) -> None:
    """Raise when ``path`` is a broken symbolic link, naming it and ``what`` it should be."""
    problem = broken_link(path)
    if problem:
        raise MMFiFormatError(_link_message(path, problem, what), path=path, reason="broken link")


def _visible_dirs(path: Path, pattern: re.Pattern, wanted=lambda name: True, on_error: str = "raise",
                  report: ReadReport | None = None) -> list[str]:
    """Sorted sub-folder names of ``path`` matching ``pattern`` (names starting with '.' are ignored). A wanted
    name that is a broken symbolic link is an error (or, under skip, a reported skip), not a folder silently
    passed over; one the selection does not want is left alone."""
    with os.scandir(path) as it:
        entries = [e for e in it if not e.name.startswith(".") and pattern.fullmatch(e.name)]
    for e in entries:
        if e.is_symlink() and wanted(e.name) and (problem := broken_link(path / e.name)):
            message = _link_message(path / e.name, problem, "a folder")
            _fail(on_error, message, path / e.name, None, "broken link")
            if report is not None:
                report.skip_sequence(str(path / e.name), message)
    return sorted(e.name for e in entries if _is_dir(e))


def _is_dir(entry: os.DirEntry) -> bool:
    """``entry.is_dir()``, False for a link that cannot be followed (is_dir raises on a loop)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def scan(root, actions=None, subjects=None, modalities=layout.MODALITIES, on_error: str = "raise",
         report: ReadReport | None = None) -> list[Sequence]:
    """Index the sequences under ``root``, restricted to ``actions`` / ``subjects`` (None: all present).

    Runs the structural checks (see the module docstring). Returns the sequences sorted by name. Under
    ``on_error="skip"`` problems go to ``report`` instead of raising.
    """
    on_error = check_on_error(on_error)
    modalities = check_modalities(modalities)
    report = ReadReport() if report is None else report
    root = Path(root)
    _check_link(root, "the folder that holds E01..E04")
    if not root.is_dir():
        raise MMFiFormatError(f"MM-Fi root {str(root)!r} does not exist or is not a folder: pass the folder that "
                              f"holds E01..E04 (or generate one with `poise simulate`)", path=root)
    actions = None if actions is None else set(actions)
    subjects = None if subjects is None else set(subjects)

    found = []
    def wanted_env(env):
        return subjects is None or any(layout.environment_of(s) == env for s in subjects if s in layout.SUBJECTS)

    for env in _visible_dirs(root, _ENV_RE, wanted_env, on_error, report):
        for subject in _visible_dirs(root / env, _SUBJECT_RE, lambda s: subjects is None or s in subjects, on_error,
                                     report):
            if subject not in layout.SUBJECTS:
                raise MMFiFormatError(f"{root / env / subject}: unknown subject {subject!r} (MM-Fi subjects are "
                                      f"S01..S40); remove or rename the folder", path=root / env / subject)
            if layout.environment_of(subject) != env:
                raise MMFiFormatError(
                    f"{root / env / subject}: subject {subject} belongs in {layout.environment_of(subject)}, not "
                    f"{env} (E01 = S01-S10, E02 = S11-S20, E03 = S21-S30, E04 = S31-S40); move the folder",
                    path=root / env / subject)
            if subjects is not None and subject not in subjects:
                continue
            for action in _visible_dirs(root / env / subject, _ACTION_RE, lambda a: actions is None or a in actions,
                                        on_error, report):
                if action not in layout.ACTIONS:
                    raise MMFiFormatError(f"{root / env / subject / action}: unknown action {action!r} (MM-Fi "
                                          f"actions are A01..A27); remove or rename the folder",
                                          path=root / env / subject / action)
                if actions is None or action in actions:
                    found.append((env, subject, action))
    if not found:
        what = []
        if actions is not None:
            what.append(f"actions {sorted(actions)}")
        if subjects is not None:
            what.append(f"subjects {sorted(subjects)}")
        raise MMFiFormatError(
            f"no E??/S??/A?? sequences found under {str(root)!r}"
            + (f" for {' and '.join(what)}" if what else "")
            + ": pass the folder that holds E01..E04, or a protocol/subjects that the data contains", path=root)

    sequences = []
    for env, subject, action in found:
        seq = _index_sequence(root / env / subject / action, env, subject, action, modalities, on_error, report)
        if seq is not None:
            sequences.append(seq)
    return sequences


def _fail(on_error, message, path, modality, reason):
    """Raise unless the policy is to skip (the caller then records the problem in its report)."""
    if on_error == "raise":
        raise MMFiFormatError(message, path=path, modality=modality, reason=reason)


def _index_sequence(path: Path, env, subject, action, modalities, on_error, report) -> Sequence | None:
    name = f"{env}/{subject}/{action}"
    # Ground truth: shape and finiteness (small, so read it whole).
    gt_path = path / layout.GROUND_TRUTH
    try:
        gt = read_ground_truth(gt_path)
    except MMFiFormatError as err:
        if on_error == "raise":
            raise
        report.skip_sequence(name, str(err))
        return None
    n_frames = gt.shape[0]
    keep = np.ones(n_frames, dtype=bool)
    bad_gt = ~np.isfinite(gt).all(axis=(1, 2))
    if bad_gt.any():
        first = int(np.flatnonzero(bad_gt)[0])
        _fail(on_error, f"{gt_path}: {int(bad_gt.sum())} frames hold NaN/inf coordinates (first: frame "
              f"{first + 1}); regenerate the sequence, or pass --on-error skip (on_error: skip in a config) to leave those frames out",
              gt_path, GT_KEY, "non-finite values")
        for i in np.flatnonzero(bad_gt):
            report.skip(GT_KEY, "non-finite values", f"{gt_path}[{i}]")
        keep &= ~bad_gt
    st = gt_path.stat()
    seq = Sequence(env, subject, action, path, n_frames, np.empty(0, np.int64), gt_stat=(st.st_size, st.st_mtime_ns))

    for modality in modalities:
        folder = path / modality
        if problem := broken_link(folder):
            message = _link_message(folder, problem, f"the {modality!r} folder")
            _fail(on_error, message, folder, modality, "broken link")
            report.skip_sequence(name, message)
            return None
        if not folder.is_dir():
            message = (f"{folder}: missing folder {modality!r}; drop {modality!r} from modalities or regenerate "
                       f"the sequence")
            _fail(on_error, message, folder, modality, "missing folder")
            report.skip_sequence(name, message)
            return None
        ext = layout.EXTENSIONS[modality]
        sizes = np.full(n_frames, -1, dtype=np.int64)
        mtimes = np.zeros(n_frames, dtype=np.int64)
        extra, broken = [], set()
        with os.scandir(folder) as it:
            for entry in it:
                m = _FRAME_RE.fullmatch(entry.name)
                if entry.name.startswith(".") or m is None or m.group(2) != ext:
                    continue
                index = int(m.group(1)) - 1
                if 0 <= index < n_frames and entry.name == layout.frame_name(index, modality):
                    if entry.is_symlink() and (problem := broken_link(folder / entry.name)):  # left missing: dropped below
                        _fail(on_error, _link_message(folder / entry.name, problem, f"frame {index + 1}'s file",
                                                      "replace the link with it, or pass --on-error skip to leave "
                                                      "the frame out"), folder / entry.name, modality, "broken link")
                        report.skip(modality, "broken link", str(folder / entry.name))
                        broken.add(index)
                        continue
                    st = entry.stat()
                    sizes[index], mtimes[index] = st.st_size, st.st_mtime_ns
                else:
                    extra.append(entry.name)
        missing = np.flatnonzero(sizes < 0)
        if extra and not len(missing):  # every frame is there, plus files the ground truth has no frame for
            strays = sorted(extra)
            _fail(on_error,
                  f"{folder / strays[0]}: a frame file beyond the {n_frames} frames of {layout.GROUND_TRUTH}"
                  + (f" (and {len(strays) - 1} more: {', '.join(strays[1:4])}{' ...' if len(strays) > 4 else ''})"
                     if len(strays) > 1 else "")
                  + "; move it out of the folder (a stray copy?), or pass --on-error skip to ignore it",
                  folder / strays[0], modality, "stray frame file")
        if len(missing) or extra:
            n_files = n_frames - len(missing) + len(extra)
            detail = []
            if len(missing):
                detail.append("missing " + ", ".join(layout.frame_name(i, modality) for i in missing[:5])
                              + (" ..." if len(missing) > 5 else ""))
            if extra:
                detail.append("no ground truth for " + ", ".join(sorted(extra)[:5])
                              + (" ..." if len(extra) > 5 else ""))
            _fail(on_error,
                  f"{name}/{modality} has {n_files} frame files, {layout.GROUND_TRUTH} has {n_frames} frames "
                  f"({'; '.join(detail)}) in {folder}; regenerate the sequence, or pass --on-error skip (on_error: skip in a config) to leave "
                  f"the unmatched frames out", folder, modality, "frame count mismatch")
            for i in missing:
                if i not in broken:  # already reported as a broken link
                    report.skip(modality, "missing file", seq.file(modality, i))
            for e in extra:
                report.note(modality, "frame file without ground truth, ignored", folder / e)
            keep[missing] = False
        if modality in layout.POINT_COLUMNS:
            row_bytes = 8 * layout.POINT_COLUMNS[modality]
            truncated = (sizes >= 0) & (sizes % row_bytes != 0)
            for i in np.flatnonzero(truncated):
                _fail(on_error,
                      f"{seq.file(modality, i)}: truncated .bin ({sizes[i]} bytes is not a multiple of {row_bytes} "
                      f"= 8 bytes x {layout.POINT_COLUMNS[modality]} float64 columns); regenerate the sequence, or "
                      f"pass --on-error skip (on_error: skip in a config) to leave the frame out", seq.file(modality, i), modality, "truncated .bin")
                report.skip(modality, "truncated .bin", seq.file(modality, i))
            keep &= ~truncated
            for i in np.flatnonzero(keep & (sizes == 0)):
                report.note(modality, "empty file (0 points)", seq.file(modality, i))
        seq.sizes[modality], seq.mtimes[modality] = sizes, mtimes
    # A frame counts once in frames_skipped however many modalities it failed in.
    report.frames_skipped += int((~keep).sum())
    seq.frames = np.flatnonzero(keep)
    return seq


# ----------------------------------------------------------------------------------------------------------------
# Per-file reading (content checks)


MAX_FRAMES = 100_000  # frames in one ground_truth.npy (MM-Fi: 297): a larger one is damaged or not MM-Fi's
MAX_POINTS = 200_000  # points in one frame's cloud (MM-Fi: about 1.1k LiDAR, tens of mmWave points)


def _npy_shape(path, what: str, key: str) -> np.ndarray:
    """A ``.npy`` opened memory-mapped: its declared shape and dtype can be checked before anything is read."""
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as err:  # noqa: BLE001 - any failure to parse is a format error naming the file
        raise MMFiFormatError(f"{path}: unreadable .npy ({err}); regenerate the sequence{what}", path, key,
                              "unreadable .npy") from err


def read_ground_truth(path) -> np.ndarray:
    """``ground_truth.npy`` as float32 (F, 17, 3), metres. Checks the shape; NaN rows are left to the caller."""
    path = Path(path)
    _check_link(path, f"the sequence's {layout.GROUND_TRUTH}")
    if not path.is_file():
        raise MMFiFormatError(f"{path}: missing {layout.GROUND_TRUTH}; every sequence folder needs one "
                              f"((297, 17, 3) float, metres): regenerate the sequence", path, GT_KEY, "missing file")
    gt = _npy_shape(path, "", GT_KEY)
    if gt.ndim == 3 and gt.shape[0] > MAX_FRAMES:
        raise MMFiFormatError(f"{path}: ground truth declares {gt.shape[0]:,} frames, more than any MM-Fi sequence "
                              f"({layout.FRAMES_PER_SEQUENCE}; at most {MAX_FRAMES:,} read); regenerate the sequence",
                              path, GT_KEY, "wrong shape")
    if gt.ndim != 3 or gt.shape[1:] != (17, 3) or gt.shape[0] == 0 or not np.issubdtype(gt.dtype, np.number):
        raise MMFiFormatError(f"{path}: ground truth has shape {gt.shape} and dtype {gt.dtype}, expected (F, 17, 3) "
                              f"numbers (F = {layout.FRAMES_PER_SEQUENCE} in MM-Fi); regenerate the sequence",
                              path, GT_KEY, "wrong shape")
    return np.array(gt, dtype=np.float32)


def read_rgb(path) -> np.ndarray:
    """One ``rgb/frameNNN.npy``: float32 (17, 2) COCO keypoints in pixels."""
    kp = _npy_shape(path, ", or pass --on-error skip (on_error: skip in a config)", "rgb")
    if kp.shape != layout.RGB_SHAPE or not np.issubdtype(kp.dtype, np.number):
        raise MMFiFormatError(f"{path}: rgb keypoints have shape {kp.shape} and dtype {kp.dtype}, expected "
                              f"{layout.RGB_SHAPE} numbers (COCO keypoints in pixels); regenerate the sequence, or "
                              f"pass --on-error skip (on_error: skip in a config)", path, "rgb", "wrong shape")
    if not np.isfinite(kp).all():
        raise MMFiFormatError(f"{path}: rgb keypoints hold NaN/inf; regenerate the sequence, or pass "
                              f"--on-error skip", path, "rgb", "non-finite values")
    return np.array(kp, dtype=np.float32)


def read_points(path, modality: str) -> np.ndarray:
    """One ``lidar`` or ``mmwave`` ``frameNNN.bin``: raw float64 rows -> float32 (N, C); an empty file is N = 0."""
    columns = layout.POINT_COLUMNS[modality]
    size = Path(path).stat().st_size
    if size > MAX_POINTS * 8 * columns:
        raise MMFiFormatError(f"{path}: {size:,} bytes is {size // (8 * columns):,} points, more than a frame of "
                              f"any MM-Fi sensor holds (at most {MAX_POINTS:,} read); regenerate the sequence, or "
                              f"pass --on-error skip", path, modality, "oversized .bin")
    raw = Path(path).read_bytes()
    if len(raw) % (8 * columns):
        raise MMFiFormatError(f"{path}: truncated .bin ({len(raw)} bytes is not a multiple of {8 * columns} = 8 bytes "
                              f"x {columns} float64 columns); regenerate the sequence, or pass --on-error skip (on_error: skip in a config)",
                              path, modality, "truncated .bin")
    points = np.frombuffer(raw, dtype=np.float64).reshape(-1, columns)
    if not np.isfinite(points).all():
        raise MMFiFormatError(f"{path}: point cloud holds NaN/inf; regenerate the sequence, or pass "
                              f"--on-error skip", path, modality, "non-finite values")
    return points.astype(np.float32)


def clean_csi(x, normalise: bool = True) -> np.ndarray:
    """Repair one CSI frame (antennas x subcarriers x packets) the way the toolbox means to, without its failures.

    inf -> NaN; in each packet (last axis) NaNs take the mean of that packet's finite values; a packet with
    none takes the mean of the whole frame's finite values; a frame with none becomes zeros. Then, when
    ``normalise``, min-max to [0, 1] over the whole frame; a constant frame becomes zeros (no division by zero).
    Computed in float64, returned as float32, never NaN.
    """
    x = np.array(x, dtype=np.float64)  # a copy: the caller's array is left alone
    finite = np.isfinite(x)
    if not finite.all():
        if not finite.any():
            return np.zeros(x.shape, dtype=np.float32)
        x[~finite] = 0.0
        axes = tuple(range(x.ndim - 1))
        counts = finite.sum(axis=axes)
        packet_mean = x.sum(axis=axes) / np.maximum(counts, 1)
        packet_mean[counts == 0] = x[finite].mean()
        x = np.where(finite, x, packet_mean)
    if normalise:
        lo, hi = x.min(), x.max()
        if not hi > lo:
            return np.zeros(x.shape, dtype=np.float32)
        x = (x - lo) / (hi - lo)
    return x.astype(np.float32)


def read_csi(path, phase: bool = False, report: ReadReport | None = None) -> np.ndarray:
    """One ``wifi-csi/frameNNN.mat`` -> float32 (C, 3, 114, 10), cleaned by ``clean_csi``.

    Channel 0 is ``CSIamp``, min-max normalised per frame as in the toolbox. With ``phase``, channel 1 is
    ``CSIphase``: cleaned the same way (inf/NaN filled) but NOT min-max normalised, so it stays in radians.
    Why: phase is an angle, already O(1); a per-frame min-max would map the same angle to different values in
    different frames and erase the cross-frame phase relations a model could use. Frames that needed filling
    are counted in ``report`` as info.
    """
    keys = layout.CSI_KEYS if phase else layout.CSI_KEYS[:1]
    channels = []
    for key, value in read_csi_raw(path, keys).items():
        if report is not None and not np.isfinite(value).all():
            report.note("wifi-csi", f"{key} NaN/inf filled", path)
        channels.append(clean_csi(value, normalise=(key == "CSIamp")))
    return np.stack(channels)


def read_csi_raw(path, keys=layout.CSI_KEYS) -> dict:
    """The arrays ``keys`` of one ``wifi-csi/frameNNN.mat`` as stored (NaN/inf kept), each checked to be real
    (3, 114, 10); a file that is not so is an error naming it."""
    try:
        declared = {name: shape for name, shape, _ in scipy.io.whosmat(path)}  # headers only: nothing expanded
        for key in keys:
            if key in declared and tuple(declared[key]) != layout.CSI_SHAPE:
                raise MMFiFormatError(f"{path}: {key} has shape {tuple(declared[key])} (as declared; not read), "
                                      f"expected real {layout.CSI_SHAPE} (antennas x subcarriers x packets); "
                                      f"regenerate the sequence, or pass --on-error skip", path, "wifi-csi",
                                      "wrong shape")
        mat = scipy.io.loadmat(path, variable_names=keys)
    except MMFiFormatError:
        raise
    except Exception as err:  # noqa: BLE001
        raise MMFiFormatError(f"{path}: unreadable .mat ({type(err).__name__}: {err}); MM-Fi CSI files are MATLAB v5 "
                              f"files with keys {layout.CSI_KEYS}: regenerate the sequence, or pass --on-error skip (on_error: skip in a config)",
                              path, "wifi-csi", "unreadable .mat") from err
    out = {}
    for key in keys:
        if key not in mat:
            found = sorted(name for name, _, _ in scipy.io.whosmat(path))  # all keys, not just those loaded
            raise MMFiFormatError(f"{path}: missing key {key!r} (found {found}); regenerate the sequence, or pass "
                                  f"--on-error skip", path, "wifi-csi", "missing key")
        value = mat[key]
        if value.shape != layout.CSI_SHAPE or not np.issubdtype(value.dtype, np.number) or np.iscomplexobj(value):
            raise MMFiFormatError(f"{path}: {key} has shape {value.shape} and dtype {value.dtype}, expected real "
                                  f"{layout.CSI_SHAPE} (antennas x subcarriers x packets); regenerate the sequence, "
                                  f"or pass --on-error skip (on_error: skip in a config)", path, "wifi-csi", "wrong shape")
        out[key] = value
    return out


def read_frame(seq: Sequence, index: int, modalities, csi_phase: bool = False,
               report: ReadReport | None = None) -> dict:
    """All requested modalities of one frame, as float32 arrays keyed by modality (no ground truth)."""
    out = {}
    for modality in modalities:
        path = seq.file(modality, index)
        if modality == "rgb":
            out[modality] = read_rgb(path)
        elif modality == "wifi-csi":
            out[modality] = read_csi(path, phase=csi_phase, report=report)
        else:
            out[modality] = read_points(path, modality)
    return out


def read_sequence(seq: Sequence, modalities, csi_phase: bool = False, on_error: str = "raise",
                  report: ReadReport | None = None):
    """Read every kept frame of ``seq``: returns (frames, list of per-frame dicts, None for frames found bad).

    Content errors raise, or under ``on_error="skip"`` are counted in ``report`` (every bad modality of the
    frame, once each) and that frame becomes None. The cache builder and the per-file dataset's validation pass
    both use this, so they agree on which frames exist.
    """
    report = ReadReport() if report is None else report
    out = []
    for index in seq.frames:
        if on_error == "raise":
            out.append(read_frame(seq, int(index), modalities, csi_phase, report))
            continue
        frame, bad = {}, False
        for modality in modalities:
            try:
                frame.update(read_frame(seq, int(index), (modality,), csi_phase, report))
            except MMFiFormatError as err:
                report.skip(modality, err.reason or "unreadable", err.path)
                bad = True
        report.frames_skipped += bad
        out.append(None if bad else frame)
    return seq.frames, out
