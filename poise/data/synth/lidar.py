"""LiDAR: a 64-channel spinning scanner (Ouster OS1-64 Gen1-like) cast against capsules around the bones.

Each beam is a ray at a fixed elevation (64 channels over 33.2 degrees) and azimuth (1024 columns a turn);
it returns the nearest capsule it hits, so self-occlusion comes for free. Then:
- range noise: Gaussian, ``RANGE_NOISE_M`` along the beam;
- dropout: each return is lost with probability ``DROPOUT`` (dark clothing, grazing angles);
- background: the cloud is cropped to a box around the subject (as MM-Fi's are); floor returns inside the
  box survive ground removal with probability ``FLOOR_KEEP``; static clutter near the subject adds a few
  returns; and a few stray points fall anywhere in the box (MM-Fi issue #29 reports such points).
Points are reported in the scanner's own frame: x forward, y left, z up (metres, float64).

Speed: a ray is only tested against capsules whose angular bounding box contains it, so a frame costs a
few thousand ray-capsule tests, not channels x columns x capsules.
"""

from __future__ import annotations

import numpy as np

CHANNELS = 64
ELEVATION_DEG = (-16.6, 16.6)
COLUMNS = 1024
RANGE_NOISE_M = 0.012
DROPOUT = 0.04
FLOOR_KEEP = 0.08
STRAY_POINTS = 2.0  # expected stray points per frame
CROP_HALF_WIDTH_M = 0.9

_D_AZ = 2 * np.pi / COLUMNS
_EL0 = np.deg2rad(ELEVATION_DEG[0])
_D_EL = np.deg2rad(ELEVATION_DEG[1] - ELEVATION_DEG[0]) / (CHANNELS - 1)


def _dot(u, v):
    return u[..., 0] * v[..., 0] + u[..., 1] * v[..., 1] + u[..., 2] * v[..., 2]


def intersect(ro, rd, pa, pb, r):
    """Distance along unit rays (ro, rd) to capsules (pa, pb, r), all broadcast; inf where missed.

    The standard ray-capsule test: the infinite cylinder around pa-pb, clipped to the segment, then the
    spherical cap at the end the ray passed beyond.
    """
    ba, oa = pb - pa, ro - pa
    baba, bard, baoa = _dot(ba, ba), _dot(ba, rd), _dot(ba, oa)
    rdoa, oaoa = _dot(rd, oa), _dot(oa, oa)
    a = baba - bard * bard
    b = baba * rdoa - baoa * bard
    c = baba * oaoa - baoa * baoa - r * r * baba
    h = b * b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-b - np.sqrt(h)) / a
        y = baoa + t_side * bard
        side_ok = (h >= 0) & (a > 1e-12) & (y > 0) & (y < baba) & (t_side > 0)
        oc = np.where((y <= 0)[..., None], oa, ro - pb)
        bc = _dot(rd, oc)
        hc = bc * bc - (_dot(oc, oc) - r * r)
        t_cap = -bc - np.sqrt(hc)
        cap_ok = (hc >= 0) & (t_cap > 0)
    return np.where(side_ok, t_side, np.where(cap_ok, t_cap, np.inf))


def ray_capsule_hits(origin: np.ndarray, dirs: np.ndarray, ends: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(R, C) distances from ``origin`` along unit ``dirs`` (R, 3) to capsules ``ends`` (C, 2, 3), ``radii``."""
    return intersect(origin, dirs[:, None], ends[None, :, 0], ends[None, :, 1], radii[None])


def beam_direction(channel: np.ndarray, column: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 3) of beams in the scanner frame."""
    el = _EL0 + channel * _D_EL
    az = column * _D_AZ
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)


def _candidate_pairs(ends_s: np.ndarray, radii: np.ndarray):
    """Beams (frame, capsule, channel, column) inside each capsule's angular bounding box."""
    n, c = ends_s.shape[:2]
    d = np.linalg.norm(ends_s, axis=-1)  # (n, c, 2)
    az = np.arctan2(ends_s[..., 1], ends_s[..., 0])
    el = np.arcsin(np.clip(ends_s[..., 2] / d, -1, 1))
    pad = np.arcsin(np.clip(radii[None] / d.min(-1), 0, 1)) + 0.5 * _D_AZ  # (n, c)
    j0 = np.ceil((az.min(-1) - pad) / _D_AZ).astype(int)
    j1 = np.floor((az.max(-1) + pad) / _D_AZ).astype(int)
    i0 = np.clip(np.ceil((el.min(-1) - pad - _EL0) / _D_EL), 0, CHANNELS).astype(int)
    i1 = np.clip(np.floor((el.max(-1) + pad - _EL0) / _D_EL), -1, CHANNELS - 1).astype(int)
    w, h = np.maximum(j1 - j0 + 1, 0), np.maximum(i1 - i0 + 1, 0)
    counts = (w * h).ravel()
    owner = np.repeat(np.arange(n * c), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    wo = w.ravel()[owner]
    chan = i0.ravel()[owner] + local // np.maximum(wo, 1)
    col = j0.ravel()[owner] + local % np.maximum(wo, 1)
    return owner // c, owner % c, chan, col


def scan(ends: np.ndarray, radii: np.ndarray, pose, floor_y: float, cam_rot: np.ndarray, clutter: np.ndarray,
         rng: np.random.Generator) -> list[np.ndarray]:
    """Point clouds (list of (N_i, 3) float64, scanner frame) for capsule sequences ``ends`` (n, C, 2, 3).

    ``pose`` is the scanner's Pose in the camera frame; ``floor_y`` the floor height in the level frame
    (camera frame rotated back by ``cam_rot``).
    """
    n = ends.shape[0]
    ends_s = pose.to_sensor(ends)
    frame, cap, chan, col = _candidate_pairs(ends_s, radii)
    rd = beam_direction(chan, col)
    t = intersect(np.zeros(3), rd, ends_s[frame, cap, 0], ends_s[frame, cap, 1], radii[cap])
    col_lo = col.min() if col.size else 0
    width = (col.max() - col_lo + 1) if col.size else 1
    nearest = np.full((n, CHANNELS, width), np.inf)
    np.minimum.at(nearest, (frame, chan, col - col_lo), t)

    # Crop box around the subject, in the level frame (x right, y down, z depth).
    pelvis_w = ends[:, 0, 0] @ cam_rot  # capsule 0 starts at the pelvis; C -> W is p @ R
    origin_w = pose.origin @ cam_rot
    axes_w = cam_rot.T @ pose.axes
    grid_c, grid_j = np.meshgrid(np.arange(CHANNELS), np.arange(width) + col_lo, indexing="ij")
    beams = beam_direction(grid_c, grid_j)  # (CHANNELS, width, 3) scanner frame
    beams_w = beams @ axes_w.T
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = (floor_y - origin_w[1]) / beams_w[..., 1]  # the same beams every frame
    floor_w = origin_w + t_floor[..., None] * beams_w
    near_box = (np.abs(floor_w[None, ..., 0] - pelvis_w[:, None, None, 0]) < CROP_HALF_WIDTH_M) & \
               (np.abs(floor_w[None, ..., 2] - pelvis_w[:, None, None, 2]) < CROP_HALF_WIDTH_M)
    floor_hit = near_box & (t_floor > 0) & ~np.isfinite(nearest) & (rng.random(nearest.shape) < FLOOR_KEEP)
    clouds = []
    for f in range(n):
        ch, cj = np.nonzero(np.isfinite(nearest[f]))
        r = nearest[f, ch, cj] + rng.normal(0, RANGE_NOISE_M, ch.size)
        keep = rng.random(ch.size) >= DROPOUT
        pts = [beams[ch[keep], cj[keep]] * r[keep, None]]
        # Floor: beams that missed the body and reach the floor inside the crop box.
        fc, fj = np.nonzero(floor_hit[f])
        pts.append(beams[fc, fj] * (t_floor[fc, fj] + rng.normal(0, RANGE_NOISE_M, fc.size))[:, None])
        # Static clutter near the subject and stray points in the crop box.
        near = clutter[np.abs((clutter @ cam_rot)[:, 0] - pelvis_w[f, 0]) < CROP_HALF_WIDTH_M]
        for c in near:
            pts.append(pose.to_sensor(c + rng.normal(0, 0.04, size=(rng.integers(3, 9), 3))))
        k = rng.poisson(STRAY_POINTS)
        box = pelvis_w[f] + rng.uniform(-1, 1, size=(k, 3)) * np.array([CROP_HALF_WIDTH_M, 1.0, CROP_HALF_WIDTH_M])
        pts.append(pose.to_sensor(box @ cam_rot.T))
        clouds.append(np.concatenate(pts).astype(np.float64))
    return clouds
