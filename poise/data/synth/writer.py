"""Write a synthetic MM-Fi dataset in the exact on-disk format, one sequence per worker task.

``simulate(out, preset, seed)`` renders every (subject, action) of a preset: poses from ``scene``, then each
sensor model, then MM-Fi's files (``layout`` names them). It is

- deterministic: every sequence draws from generators seeded by (seed, subject, action, sensor), so the
  result does not depend on the number of workers or the order they finish in;
- resumable and idempotent: a sequence is written into a hidden folder and renamed when complete, and the
  manifest ``.poise_synthetic.json`` (dot-named so MM-Fi readers that list the root ignore it) records the
  preset and seed; re-running skips finished sequences, and a finished dataset is left as it is;
- bounded in memory: a worker holds one sequence at a time (about 250 MB peak while rendering, 25 MB of
  output), so ``full`` streams to disk.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import scipy.io
from tqdm import tqdm

from poise.data import layout
from poise.data.synth import annotation, lidar, mmwave, rgb, wifi
from poise.data.synth.presets import PRESETS
from poise.data.synth.scene import Performance
from poise.errors import PoiseError, disk_full, no_space_left

logger = logging.getLogger(__name__)
MANIFEST = ".poise_synthetic.json"
# Bump when the simulator's output changes, so stale datasets are not reused. 4: estimated labels, one sensor
# platform and a level camera, merged mmWave frames (docs/simulator.md, "Generator v4"). 5: the labels' whole-body
# error, mmWave angle errors that fall with SNR ("Generator v5").
GENERATOR_VERSION = 5


def _seq_rng(seed: int, subject: str, action: str, sensor: int) -> np.random.Generator:
    return np.random.default_rng([seed, int(subject[1:]), int(action[1:]), sensor])


def render(subject: str, action: str, seed: int) -> dict:
    """All of one sequence's data in memory: the ground truth (estimated, as MM-Fi's: ``annotation``) and the
    per-frame sensor outputs (of the true pose)."""
    perf = Performance.build(subject, action, seed)
    times = np.arange(layout.FRAMES_PER_SEQUENCE) / layout.FRAME_RATE_HZ
    joints, rotations = perf.pose(times)
    ends, radii = perf.capsules(joints, rotations)
    env = perf.env
    amp, phase = wifi.csi(perf, times, _seq_rng(seed, subject, action, 4))
    return {
        "gt": annotation.estimated(joints, _seq_rng(seed, subject, action, 5)),  # the sensors see ``joints``
        "rgb": rgb.detect(joints, rotations, ends, radii, env.focal, _seq_rng(seed, subject, action, 1)),
        "lidar": lidar.scan(ends, radii, env.lidar, env.floor_y, env.cam_rot, env.clutter,
                            _seq_rng(seed, subject, action, 2)),
        "mmwave": mmwave.scan(perf, times, _seq_rng(seed, subject, action, 3)),
        "wifi-csi": (amp, phase),
    }


def write_sequence(folder: Path, data: dict) -> None:
    """MM-Fi files of one sequence into ``folder`` (which must exist)."""
    np.save(folder / layout.GROUND_TRUTH, data["gt"].astype(np.float64))
    for modality in layout.MODALITIES:
        (folder / modality).mkdir()
    amp, phase = data["wifi-csi"]
    for i in range(len(data["gt"])):
        np.save(folder / "rgb" / layout.frame_name(i, "rgb"), data["rgb"][i].astype(np.float64))
        for modality in ("lidar", "mmwave"):
            np.ascontiguousarray(data[modality][i], dtype=np.float64).tofile(folder / modality / layout.frame_name(i, modality))
        write_mat(folder / "wifi-csi" / layout.frame_name(i, "wifi-csi"), {"CSIamp": amp[i], "CSIphase": phase[i]})


MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: poise simulate (synthetic MM-Fi)"


def write_mat(path: Path, arrays: dict) -> None:
    """A MATLAB 5 .mat file whose bytes depend only on ``arrays``: scipy writes the creation time into the
    116-byte header text, so two runs of one seed would differ; a fixed text (space-padded, as MATLAB pads it)
    makes a dataset checkable by checksum."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, arrays, do_compression=False)
    data = bytearray(buffer.getvalue())
    data[:116] = MAT_HEADER.ljust(116, b" ")
    path.write_bytes(bytes(data))


def _job(args) -> str:
    out, subject, action, seed = args
    final = out / layout.environment_of(subject) / subject / action
    if (final / layout.GROUND_TRUTH).is_file():  # written in full: the ground truth is the last file to land
        return "skipped"
    partial = final.parent / f".{action}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        write_sequence(partial, render(subject, action, seed))
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        if not disk_full(err):
            raise
        raise no_space_left(final, "free some space and run the same command again: the finished sequences are "
                                   "kept, this one is written again") from None
    if not final.exists():
        partial.rename(final)
        return "written"
    for path in sorted(partial.rglob("*"), key=lambda p: p.name == layout.GROUND_TRUTH):  # beside a user's files
        if path.is_file():
            target = final / path.relative_to(partial)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    shutil.rmtree(partial)
    return "written"


def _manifest(preset: str, seed: int, complete: bool) -> dict:
    p = PRESETS[preset]
    return {"generator": "poise", "version": GENERATOR_VERSION, "preset": preset, "seed": seed,
            "subjects": list(p.subjects), "actions": list(p.actions), "frames": layout.FRAMES_PER_SEQUENCE,
            "complete": complete}


def read_manifest(out) -> dict | None:
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PoiseError(f"{path} is damaged ({type(err).__name__}: {err}); poise cannot tell what it wrote here, so "
                         f"it will not touch the folder: choose another --out, or remove it yourself") from None
    keys = ("preset", "seed", "subjects", "actions", "frames")
    valid = isinstance(manifest, dict) and manifest.get("generator") == "poise" and all(k in manifest for k in keys)
    valid = valid and isinstance(manifest["frames"], int) and 0 < manifest["frames"] <= 10_000 and all(
        isinstance(n, str) and re.fullmatch(pattern, n) for key, pattern in (("subjects", r"S\d\d"), ("actions", r"A\d\d"))
        for n in manifest[key])  # names that cannot point outside --out
    if not valid:
        raise PoiseError(f"{path} is not a manifest poise wrote (it needs generator 'poise', {', '.join(keys)}, and "
                         f"subjects Sxx, actions Axx); choose another --out, or remove the folder yourself")
    return manifest


def provenance(root) -> dict:
    """What a run trains on, for its ``data.json``: the root, and the generator version, preset and seed when
    poise wrote it (None: not written by poise, e.g. the real MM-Fi)."""
    try:
        manifest = read_manifest(root)
    except PoiseError as err:  # a damaged manifest: training does not need it, the record says so
        return {"root": str(root), "generator": None, "manifest_error": str(err)}
    written = None if manifest is None else {k: manifest.get(k) for k in ("version", "preset", "seed")}
    return {"root": str(root), "generator": written}


def provenance_text(record: dict | None) -> str:
    """``provenance`` in words (None: a run from before runs recorded it)."""
    if record is None:
        return "not recorded (a run from before 2026-12-06)"
    g = record.get("generator")
    if g is None:
        return "a root with an unreadable poise manifest" if "manifest_error" in record else \
            "not written by poise (real MM-Fi?)"
    return f"poise generator v{g.get('version')}, preset {g.get('preset')}, seed {g.get('seed')}"


def sequence_folders(out: Path, manifest: dict) -> list[Path]:
    """The sequence folders the dataset of ``manifest`` consists of, E0x/Sxx/Axx under ``out``."""
    return [out / layout.environment_of(s) / s / a for s in manifest["subjects"] for a in manifest["actions"]]


def refuse_links(out: Path, folders) -> None:
    """Raise if a folder poise would write into or delete from is reached through a symbolic link under ``out``:
    poise never follows one into data it did not write."""
    for folder in folders:
        for path in (folder, *folder.parents):
            if path == out or out not in path.parents:
                break
            if path.is_symlink():
                raise FileExistsError(f"{path} is a symbolic link; poise writes and deletes only folders it made: "
                                      f"remove the link or choose another --out")


def remove_written(out: Path, manifest: dict) -> list[Path]:
    """Delete exactly the files the dataset of ``manifest`` wrote (and the reader's cache of it), then the folders
    left empty; returns what was kept because poise did not write it."""
    folders = sequence_folders(out, manifest)
    refuse_links(out, [*(f / m for f in folders for m in layout.MODALITIES),
                       *(f.parent / f".{f.name}.partial" for f in folders), out / ".poise_cache"])
    ours = [layout.GROUND_TRUTH, *(f"{m}/{layout.frame_name(i, m)}" for m in layout.MODALITIES
                                   for i in range(int(manifest["frames"])))]
    for folder in folders:
        for name in ours:
            (folder / name).unlink(missing_ok=True)
        shutil.rmtree(folder.parent / f".{folder.name}.partial", ignore_errors=True)
    shutil.rmtree(out / ".poise_cache", ignore_errors=True)
    kept = []
    for folder in folders:  # now-empty folders, deepest first, up to the environment
        for d in (*(folder / m for m in layout.MODALITIES), folder, folder.parent, folder.parent.parent):
            if d.is_dir() and not d.is_symlink():
                if any(d.iterdir()):
                    kept.extend(p for p in d.iterdir() if p.is_file() or p.is_symlink())
                else:
                    d.rmdir()
    return sorted(set(kept))


def simulate(out, preset: str = "demo", seed: int = 0, workers: int | None = None, force: bool = False,
             progress: bool = True) -> dict:
    """Write (or finish, or keep) the synthetic dataset ``preset`` under ``out``; returns counts."""
    if preset not in PRESETS:
        raise PoiseError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder: choose a folder for the dataset")
    if seed < 0:
        raise PoiseError(f"seed={seed} must be >= 0")
    if workers is not None and workers < 1:
        raise PoiseError(f"workers={workers} must be >= 1 (or None for one per CPU core)")
    old = read_manifest(out)
    wanted = _manifest(preset, seed, complete=False)
    same = old is not None and {k: v for k, v in old.items() if k != "complete"} == \
        {k: v for k, v in wanted.items() if k != "complete"}
    if out.exists() and any(out.iterdir()) and (force or not same):
        if old is None:
            raise FileExistsError(f"{out} holds files that poise did not write (no {MANIFEST}): choose another --out; "
                                  f"poise never deletes data it did not write (remove the folder yourself if you mean to)")
        if not force:
            raise FileExistsError(f"{out} already holds a {old['preset']} dataset with seed {old['seed']} (generator "
                                  f"v{old.get('version')}); choose another --out, or pass --force to replace the "
                                  f"files its manifest lists (and their .poise_cache)")
        kept = remove_written(out, old)  # the old data and the reader's cache of it, nothing else
        if kept:
            logger.warning("simulate: kept %d files it did not write, e.g. %s", len(kept), kept[0])
    refuse_links(out, [f / m for f in sequence_folders(out, wanted) for m in layout.MODALITIES])
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(wanted, indent=1))
    jobs = [(out, s, a, seed) for s in PRESETS[preset].subjects for a in PRESETS[preset].actions]
    workers = workers or min(os.cpu_count() or 1, len(jobs))
    counts = {"written": 0, "skipped": 0}
    bar = tqdm(total=len(jobs), desc=f"simulate {preset}", unit="seq", disable=not progress)
    if workers == 1:
        results = map(_job, jobs)
        for r in results:
            counts[r] += 1
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for r in pool.map(_job, jobs):
                counts[r] += 1
                bar.update()
    bar.close()
    (out / MANIFEST).write_text(json.dumps(_manifest(preset, seed, complete=True), indent=1))
    return counts
