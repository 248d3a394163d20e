"""``poise info``: what an MM-Fi root holds, and what the reader finds wrong with it, file by file.

The full check reads every frame of every sequence with the reader's own functions (``read_sequence`` under
``on_error="skip"``), so it reports exactly what training would skip or stop at; ``full=False`` checks only the
structure (folders, names, sizes), which ``scan`` does anyway.
"""

from __future__ import annotations

import json

import numpy as np
from tqdm.auto import tqdm

from poise.data import layout, mmfi
from poise.data.cache import CACHE_VERSION, cache_locations
from poise.errors import PoiseError


def dataset_summary(root, full: bool = True, progress: bool = True) -> tuple[str, bool]:
    """A human-readable summary of ``root`` (what is there, sizes, caches, and the read report naming damaged
    files) and whether every file read cleanly."""
    from poise.data.synth.writer import read_manifest

    report = mmfi.ReadReport()
    sequences = mmfi.scan(root, on_error="skip", report=report)
    lines = [f"MM-Fi root {root}"]
    try:
        manifest = read_manifest(root)
    except PoiseError as err:
        manifest = None
        lines.append(f"  synthetic manifest: {err}")
    if manifest:
        state = "complete" if manifest.get("complete") else "INCOMPLETE (re-run `poise simulate` to finish it)"
        lines.append(f"  synthetic: preset {manifest['preset']}, seed {manifest['seed']}, generator "
                     f"v{manifest.get('version')}, {state}")
    if not sequences:
        lines.append("  no readable sequence (see the report below)")
    else:
        lines += _contents(sequences)
    if full and sequences:
        for seq in tqdm(sequences, desc="reading every frame", unit="seq", disable=not progress):
            mmfi.read_sequence(seq, layout.MODALITIES, on_error="skip", report=report)
    lines += _caches(root)
    lines.append(("  full check (every frame read): " if full else "  structure only (--quick): ") + str(report))
    return "\n".join(lines), report.clean and bool(sequences)


def _contents(sequences) -> list[str]:
    envs = sorted({s.env for s in sequences})
    subjects = sorted({s.subject for s in sequences})
    actions = sorted({s.action for s in sequences})
    frames = sum(len(s.frames) for s in sequences)
    lines = [f"  {len(sequences)} sequences: {len(envs)} environments ({', '.join(envs)}), {len(subjects)} "
             f"subjects, {len(actions)} actions ({', '.join(actions)})",
             f"  {frames} frames ({frames / layout.FRAME_RATE_HZ / 60:.1f} min at {layout.FRAME_RATE_HZ:.0f} Hz)"]
    for protocol, acts in layout.PROTOCOLS.items():
        lines.append(f"  protocol {protocol}: {sum(s.action in acts for s in sequences)} sequences")
    for modality in ("lidar", "mmwave"):
        pts = np.concatenate([s.n_points(modality)[s.frames] for s in sequences])
        lines.append(f"  {modality:7s} points/frame: mean {pts.mean():.1f}, median {np.median(pts):.0f}, "
                     f"max {pts.max()}, empty frames {int((pts == 0).sum())} ({100 * (pts == 0).mean():.1f}%)")
    gt = np.concatenate([mmfi.read_ground_truth(s.gt_path) for s in sequences])
    pelvis = gt[:, 0]
    finite = np.isfinite(pelvis).all(1)
    if finite.any():
        mean, std = (", ".join(f"{v:.2f}" for v in a) for a in (pelvis[finite].mean(0), pelvis[finite].std(0)))
        lines.append(f"  ground truth (metres, camera frame): pelvis mean ({mean}), std ({std})"
                     + (f" over the {int(finite.sum())} finite frames" if not finite.all() else ""))
    return lines


def _caches(root) -> list[str]:
    """The packed caches in ``root/.poise_cache`` with their sizes and what they hold: caches of other options
    or of an older format are never used again and can be deleted."""
    location = cache_locations(root)[0]
    if not location.is_dir():
        return []
    lines = []
    for folder in sorted(p for p in location.iterdir() if p.is_dir() and not p.name.startswith(".")):
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        try:
            meta = json.loads((folder / "meta.json").read_text())
            what = (f"format {meta['version']}{'' if meta['version'] == CACHE_VERSION else ' (old: unused)'}, "
                    f"{meta['rows']} frames of {len(meta['sequences'])} sequences, {', '.join(meta['modalities'])}")
        except (OSError, ValueError, KeyError, TypeError):
            what = "damaged or unfinished (rebuilt when next needed)"
        lines.append(f"  cache {folder}: {size / 2**30:.2f} GiB, {what}")
    return lines
