"""RGB: what a 2D pose detector (HRNet-like) reports on a 640 x 480 image: 17 COCO keypoints in pixels.

MM-Fi ships detector keypoints, not images. The model: COCO keypoints placed on the body (eyes and ears
from the head's orientation; COCO hips sit higher and wider than Human3.6M's hip joints), projected by a
pinhole camera, then the detector's errors:
- jitter: Student-t (heavy-tailed) noise of ``JITTER_PX`` pixels, growing with image-plane speed (blur);
- a slowly drifting per-joint bias (the detector's systematic error on this person and lighting);
- occluded joints: a joint hidden behind a body capsule from the camera's view gets a large error;
- left/right swaps: in a few frames the detector swaps a limb's left and right keypoints.
"""

from __future__ import annotations

import numpy as np

from poise.data.layout import COCO_FLIP, IMAGE_SIZE
from poise.data.synth.lidar import ray_capsule_hits

JITTER_PX = 2.5
BLUR_PX_PER_PX = 0.08  # extra jitter per pixel of motion between frames
BIAS_PX = 3.0
OCCLUDED_PX = 14.0
SWAP_RATE = 0.012  # per frame, per limb pair (arms, legs)
H36M_FOR_COCO = {5: 11, 6: 14, 7: 12, 8: 15, 9: 13, 10: 16, 11: 4, 12: 1, 13: 5, 14: 2, 15: 6, 16: 3}


def coco_keypoints_3d(joints: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """(n, 17, 3) COCO keypoints in the camera frame from H36M joints and bone rotations."""
    n = joints.shape[0]
    out = np.zeros((n, 17, 3))
    for coco, h36m in H36M_FOR_COCO.items():
        out[:, coco] = joints[:, h36m]
    head = rotations[:, 10]  # head bone frame: columns are its left, up, forward axes
    left, up, fwd = head[..., 0], head[..., 1], head[..., 2]
    centre = 0.5 * (joints[:, 9] + joints[:, 10])
    out[:, 0] = centre + 0.10 * fwd - 0.03 * up  # nose
    out[:, 1] = centre + 0.08 * fwd + 0.015 * up + 0.032 * left  # left eye
    out[:, 2] = centre + 0.08 * fwd + 0.015 * up - 0.032 * left
    out[:, 3] = centre + 0.075 * left - 0.01 * fwd  # left ear
    out[:, 4] = centre - 0.075 * left - 0.01 * fwd
    pelvis_up = rotations[:, 0][..., 1]
    for coco, h36m in ((11, 4), (12, 1)):  # detector hips: higher and a little wider
        outward = joints[:, h36m] - joints[:, 0]
        out[:, coco] = joints[:, h36m] + 0.06 * pelvis_up + 0.25 * outward
    return out


def project(points: np.ndarray, focal: float) -> np.ndarray:
    """Pinhole projection of camera-frame points (..., 3) to pixels (..., 2), principal point centred."""
    w, h = IMAGE_SIZE
    z = np.maximum(points[..., 2:3], 1e-3)
    return points[..., :2] * focal / z + np.array([w / 2, h / 2])


# Capsules a COCO keypoint belongs to (never hide it): head ones for the face, adjacent limbs elsewhere.
_OWN = np.zeros((17, 18), bool)
for _k, _caps in {0: (4, 5), 1: (4, 5), 2: (4, 5), 3: (4, 5), 4: (4, 5), 5: (1, 3, 6), 6: (1, 3, 9),
                  7: (6, 7), 8: (9, 10), 9: (7, 8), 10: (10, 11), 11: (0, 2, 12), 12: (0, 2, 15),
                  13: (12, 13), 14: (15, 16), 15: (13, 14), 16: (16, 17)}.items():
    _OWN[_k, list(_caps)] = True


def detect(joints: np.ndarray, rotations: np.ndarray, ends: np.ndarray, radii: np.ndarray, focal: float,
           rng: np.random.Generator) -> np.ndarray:
    """(n, 17, 2) float64 detector keypoints (pixels) for a sequence of poses."""
    n = joints.shape[0]
    kp3d = coco_keypoints_3d(joints, rotations)
    px = project(kp3d, focal)
    speed = np.linalg.norm(np.diff(px, axis=0, prepend=px[:1]), axis=-1, keepdims=True)
    sigma = JITTER_PX + BLUR_PX_PER_PX * speed
    noise = rng.standard_t(df=4, size=(n, 17, 2)) / np.sqrt(2.0) * sigma
    # Bias: a random walk low-pass filtered over ~3 s, scaled to BIAS_PX.
    walk = np.cumsum(rng.normal(0, 1, size=(n, 17, 2)), axis=0)
    kernel = np.ones(31) / 31
    drift = np.apply_along_axis(lambda v: np.convolve(v - v.mean(), kernel, mode="same"), 0, walk)
    drift *= BIAS_PX / max(drift.std(), 1e-9)
    hidden = occluded(kp3d, ends, radii)
    wrong = rng.normal(0, OCCLUDED_PX, size=(n, 17, 2))
    out = px + noise + drift + hidden[..., None] * wrong
    for pair in ((5, 7, 9), (11, 13, 15)):  # arm chain, leg chain (left indices)
        swap = rng.random(n) < SWAP_RATE
        idx = np.array(pair)
        out[np.ix_(swap, np.r_[idx, np.array(COCO_FLIP)[idx]])] = out[np.ix_(swap, np.r_[np.array(COCO_FLIP)[idx], idx])]
    return np.clip(out, 0.0, np.array(IMAGE_SIZE, float) - 1)  # a detector reports pixels inside the image


def occluded(kp3d: np.ndarray, ends: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(n, 17) bool: is the keypoint behind another body capsule, seen from the camera at the origin."""
    n = kp3d.shape[0]
    dist = np.linalg.norm(kp3d, axis=-1)
    dirs = kp3d / dist[..., None]
    hidden = np.zeros((n, 17), bool)
    for f in range(n):
        t = ray_capsule_hits(np.zeros(3), dirs[f], ends[f], radii)  # (17, 18)
        t[_OWN] = np.inf  # a keypoint's own limb does not hide it
        hidden[f] = t.min(1) < dist[f] - 0.03
    return hidden
