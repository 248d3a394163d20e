"""3D skeleton pictures: predicted against ground-truth poses from several views (like paper 001's Fig. 6).

Poses are Human3.6M 17-joint arrays in the camera frame (x right, y down, z depth, metres); the plots draw them
upright (up = -y) in a cube of ``HALF_SIZE`` around the ground truth's pelvis, so that every panel has the same
scale and an error of 10 cm looks like 10 cm in every view.
"""

from __future__ import annotations

import numpy as np

from poise.data.layout import H36M_LEFT, H36M_PARENTS

VIEWS = {"front": (10, -90), "side": (10, 0), "oblique": (60, -60)}  # (elevation, azimuth) of the camera
HALF_SIZE = 1.0  # metres shown either side of the pelvis
TRUTH = "ground truth"


def _upright(pose: np.ndarray) -> np.ndarray:
    """Camera frame (x right, y down, z depth) -> plot frame (x right, depth, up)."""
    pose = np.asarray(pose, dtype=float)
    return np.stack([pose[..., 0], pose[..., 2], -pose[..., 1]], axis=-1)


def draw(ax, pose: np.ndarray, colour: str, label: str | None = None, style: str = "-") -> None:
    """One skeleton on a 3D axis: bones of the left side darker than the right's."""
    p = _upright(pose)
    for child, parent in enumerate(H36M_PARENTS):
        if parent < 0:
            continue
        alpha = 1.0 if child in H36M_LEFT else 0.6
        ax.plot(*zip(p[parent], p[child]), style, color=colour, lw=2, alpha=alpha,
                label=label if child == 1 else None)
    ax.scatter(*p.T, s=6, color=colour)


def frame_axes(ax, centre: np.ndarray, view: str) -> None:
    c = _upright(centre)
    for setter, value in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), c):
        setter(value - HALF_SIZE, value + HALF_SIZE)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(*VIEWS[view])
    ax.set_xticklabels([])
    ax.set_yticklabels([])
    ax.set_zticklabels([])
    ax.set_title(view, fontsize=8)


def skeletons_figure(frames: list, views=tuple(VIEWS)):
    """One row per frame, one column per view: ``frames`` holds (title, gt (17, 3), {label: pose (17, 3)}).

    The ground truth is black, each prediction has its own colour (dashed)."""
    from poise.plots import plt

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig = plt.figure(figsize=(3.0 * len(views), 3.0 * len(frames)))
    for r, (title, gt, predictions) in enumerate(frames):
        for c, view in enumerate(views):
            ax = fig.add_subplot(len(frames), len(views), r * len(views) + c + 1, projection="3d")
            draw(ax, gt, "black", TRUTH)
            for colour, (label, pose) in zip(colours, predictions.items()):
                draw(ax, pose, colour, label, "--")
            frame_axes(ax, gt[0], view)
            if c == 0:
                ax.text2D(0.0, 1.08, title, transform=ax.transAxes, fontsize=9)
            if r == 0 and c == len(views) - 1:
                ax.legend(fontsize=7, loc="upper right")
    return fig


def unimodal_figure(title: str, gt: np.ndarray, predictions: dict, view: str = "front"):
    """One panel per prediction (the fused model and each modality alone) on the same frame, each against the
    ground truth: what a collapsed branch predicts (a near-mean pose whatever the frame)."""
    from poise.plots import plt

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig = plt.figure(figsize=(2.8 * len(predictions), 3.2))
    for i, (colour, (label, pose)) in enumerate(zip(colours, predictions.items())):
        ax = fig.add_subplot(1, len(predictions), i + 1, projection="3d")
        draw(ax, gt, "black")
        draw(ax, pose, colour, style="--")
        frame_axes(ax, gt[0], view)
        error = float(np.linalg.norm(np.asarray(pose) - np.asarray(gt), axis=-1).mean() * 1000)
        ax.set_title(f"{label}: {error:.0f} mm", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig
