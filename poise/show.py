"""``poise show``: what every sensor recorded for one frame of an MM-Fi sequence, real or synthetic.

One figure per frame: the RGB keypoints on the 640 x 480 image plane (COCO skeleton), the ground-truth skeleton
(camera frame, drawn upright), the LiDAR cloud and the mmWave points coloured by Doppler (each in its own sensor
frame, as the files hold them: MM-Fi does not register them to the camera), and the WiFi CSI amplitude and phase
as subcarrier x packet heatmaps per antenna (the raw file values: NaN/inf left blank, nothing cleaned). A range
of frames becomes a GIF with fixed axes, so that motion is visible.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from poise.data import layout
from poise.data.mmfi import MMFiFormatError, read_csi_raw, read_ground_truth, read_points, read_rgb
from poise.errors import PoiseError
from poise.report.skeleton import draw, frame_axes

COCO_EDGES = ((0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12),
              (11, 13), (13, 15), (12, 14), (14, 16))  # the COCO keypoint skeleton, 0-based


def sequence_dir(root, subject: str, action: str) -> Path:
    """root/E??/S??/A??, checked, with an error that says what is there instead."""
    root = Path(root)
    if not root.is_dir():
        raise PoiseError(f"{root}: no such MM-Fi root; write the synthetic one with `poise simulate --out {root}`")
    if subject not in layout.SUBJECTS or action not in layout.ACTIONS:
        raise PoiseError(f"--subject {subject} --action {action}: MM-Fi subjects are S01..S40, actions A01..A27")
    path = root / layout.environment_of(subject) / subject / action
    if not path.is_dir():
        here = sorted(p.name for p in path.parent.iterdir() if p.is_dir()) if path.parent.is_dir() else []
        raise PoiseError(f"{path}: no such sequence" + (f"; {subject} has {', '.join(here)}" if here else
                                                         f"; {root} has no subject {subject}"))
    return path


def read_shown(path: Path, frame: int) -> dict:
    """The raw content of 1-based ``frame`` of the sequence at ``path``: each modality whose file exists."""
    gt = read_ground_truth(path / layout.GROUND_TRUTH)
    if not 1 <= frame <= len(gt):
        raise PoiseError(f"--frame {frame}: {path} has frames 1..{len(gt)} (1-based, as the file names)")
    out = {"gt": gt[frame - 1]}
    for m in layout.MODALITIES:
        file = path / m / layout.frame_name(frame - 1, m)
        if not file.is_file():
            continue
        if m == "rgb":
            out[m] = read_rgb(file)
        elif m == "wifi-csi":
            out[m] = {k: np.where(np.isfinite(v), v, np.nan) for k, v in read_csi_raw(file).items()}
        else:
            out[m] = read_points(file, m)
    return out


def _limits(clouds: list) -> tuple[np.ndarray, np.ndarray]:
    points = np.concatenate([c[:, :3] for c in clouds if len(c)] or [np.zeros((1, 3))])
    lo, hi = np.percentile(points, 1, axis=0), np.percentile(points, 99, axis=0)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 0.5) * 1.1
    return centre - half, centre + half


def draw_frame(fig, shown: dict, title: str, limits: dict) -> None:
    """Fill ``fig`` with the panels of one frame (``limits``: fixed 3D limits per point modality)."""
    grid = fig.add_gridspec(2, 12, height_ratios=(1.25, 1), left=0.05, right=0.97, top=0.9, bottom=0.07,
                            wspace=0.6, hspace=0.3)
    ax = fig.add_subplot(grid[0, 0:3])
    width, height = layout.IMAGE_SIZE
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # image rows grow downward
    ax.set_aspect("equal")
    ax.set_title("RGB keypoints (image plane)", fontsize=9)
    if "rgb" in shown:
        kp = shown["rgb"]
        for a, b in COCO_EDGES:
            ax.plot(*kp[[a, b]].T, color="tab:blue", lw=1.5)
        ax.scatter(*kp.T, s=8, color="tab:red", zorder=3)
    else:
        ax.text(0.5, 0.5, "no rgb file", ha="center", transform=ax.transAxes)

    ax = fig.add_subplot(grid[0, 3:6], projection="3d")
    draw(ax, shown["gt"], "black")
    frame_axes(ax, shown["gt"][0], "front")
    ax.set_title("ground truth (camera frame)", fontsize=9)

    for col, m in ((6, "lidar"), (9, "mmwave")):
        ax = fig.add_subplot(grid[0, col:col + 3], projection="3d")
        points = shown.get(m)
        if points is not None and len(points):
            colour = points[:, 3] if m == "mmwave" else points[:, 2]
            art = ax.scatter(*points[:, :3].T, c=colour, s=4 if m == "lidar" else 18,
                             edgecolors="none" if m == "lidar" else "black", linewidths=0.4,
                             cmap="coolwarm" if m == "mmwave" else "viridis",
                             vmin=-1.5 if m == "mmwave" else None, vmax=1.5 if m == "mmwave" else None)
            if m == "mmwave":
                fig.colorbar(art, ax=ax, shrink=0.6, pad=0.1, label="Doppler (m/s)")
        lo, hi = limits[m]
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_zlim(lo[2], hi[2])
        ax.set_box_aspect((1, 1, 1))
        ax.set_xlabel("x", fontsize=7)
        ax.set_ylabel("y", fontsize=7)
        ax.set_zlabel("z", fontsize=7)
        ax.tick_params(labelsize=6)
        n = 0 if points is None else len(points)
        ax.set_title(f"{m}: {n} points (sensor frame)" if points is not None else f"no {m} file", fontsize=9)

    csi = shown.get("wifi-csi", {})
    for i, key in enumerate(layout.CSI_KEYS):
        finite = csi[key][np.isfinite(csi[key])] if key in csi else np.zeros(1)
        scale = ((float(finite.min()), float(finite.max())) if i == 0 and finite.size else (-np.pi, np.pi))
        for antenna in range(layout.CSI_SHAPE[0]):
            ax = fig.add_subplot(grid[1, 6 * i + 2 * antenna:6 * i + 2 * antenna + 2])
            if key in csi:  # one colour scale for the three antennas
                image = ax.imshow(csi[key][antenna], aspect="auto", cmap="magma" if i == 0 else "twilight",
                                  interpolation="nearest", vmin=scale[0], vmax=scale[1])
                if antenna == layout.CSI_SHAPE[0] - 1:
                    fig.colorbar(image, ax=ax, shrink=0.8)
            ax.set_title(f"{'amplitude' if i == 0 else 'phase'}, antenna {antenna + 1}", fontsize=8)
            ax.set_xlabel("packet", fontsize=7)
            if antenna == 0:
                ax.set_ylabel("subcarrier", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=11)


GIF_FRAMES = 30  # a GIF's default length after its first frame


def show(root, subject: str, action: str, frame: int = 1, out=None, gif: bool = False, to: int | None = None,
         step: int = 1, overwrite: bool = False) -> Path:
    """Draw ``frame`` (1-based) of root's ``subject``/``action`` into ``out`` (PNG), or with ``gif`` frames
    ``frame..to`` (default: 30 more, up to the sequence's last) every ``step`` into a GIF; returns the path."""
    from poise.plots import plt

    path = sequence_dir(root, subject, action)
    if gif:
        last = len(read_ground_truth(path / layout.GROUND_TRUTH))
        to = min(frame + GIF_FRAMES, last) if to is None else to
        if to <= frame:
            raise PoiseError(f"--to {to} is not after --frame {frame}: a GIF needs a range of frames")
    elif to is not None:
        raise PoiseError("--to sets the last frame of a --gif; add --gif, or drop --to")
    frames = list(range(frame, (to if gif else frame) + 1, max(step, 1)))
    out = Path(out) if out else Path(f"show-{subject}-{action}-{frame:03d}" + (f"-{to:03d}.gif" if gif else ".png"))
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out, or pass --overwrite to replace it")
    try:
        shown = [read_shown(path, f) for f in frames]
    except MMFiFormatError as err:  # the reader's advice names --on-error, which drawing has not
        raise PoiseError(re.split(r"[;:] regenerate", str(err))[0] + "; this frame cannot be drawn: choose "
                         "another --frame, or regenerate the sequence") from None
    limits = {m: _limits([s[m] for s in shown if m in s]) for m in ("lidar", "mmwave")}
    titles = [f"{path.parent.parent.name} {subject} {action}, frame {f}" for f in frames]
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = plt.figure(figsize=(16, 8.5))
    if not gif:
        draw_frame(fig, shown[0], titles[0], limits)
        fig.savefig(out, dpi=90)
        plt.close(fig)
        return out
    from matplotlib.animation import PillowWriter

    writer = PillowWriter(fps=5)
    with writer.saving(fig, str(out), dpi=60):
        for s, title in zip(shown, titles):
            fig.clear()
            draw_frame(fig, s, title, limits)
            writer.grab_frame()
    plt.close(fig)
    return out
