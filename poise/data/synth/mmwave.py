"""mmWave: a TI IWR6843-like FMCW radar's detected point cloud (x, y, z, Doppler, intensity).

The radar sees scattering centres on the body surface, not joints. Per frame:
1. scatterers: points drawn on the capsules' surfaces, kept where the surface faces the radar and no other
   capsule blocks the line of sight; each returns power ~ area x cos(incidence) / R^4 (radar equation),
   with Swerling-I fluctuation (exponential) from frame to frame;
2. Doppler: the scatterer's velocity (from the pose 20 ms either side) along the line of sight;
   **positive = moving away from the radar**;
3. static clutter removal: the zero-Doppler bin is discarded, so still parts of the body vanish and a
   subject holding still gives few or no points (some frames are empty, as in MM-Fi);
4. range-Doppler processing: range quantised to ``RANGE_RES_M``, velocity to ``VEL_RES_MPS``; all
   scatterers in one range-Doppler cell merge into one detection at their power-weighted centroid (two
   hands at the same range and speed become one point between them); a cell is detected when its power
   beats a CFAR threshold;
5. angle estimation with few virtual antennas: range stays accurate, the angles do not. The error of an angle
   estimate falls with the detection's SNR as 1/sqrt(SNR) (Skolnik's accuracy rule, beamwidth / (1.6
   sqrt(2 SNR)), the Cramer-Rao bound's form) and grows with the beamwidth of the array it is measured on:
   ``AZ_ELEMENTS`` virtual antennas in azimuth (about 13 degrees), ``EL_ELEMENTS`` in elevation (about 51), on
   top of ``ANGLE_FLOOR_DEG`` from the channels' residual phase calibration. A strong detection is placed to
   about a degree in azimuth, a weak one or a ghost to several; elevation is always the worse;
6. ghosts (floor multipath: the mirror image of a detection below the floor, longer range, weaker) and
   false alarms (uniform in the field of view, random Doppler);
7. the detection list is capped at ``MAX_POINTS`` strongest points (the radar's output budget).
Then, as MM-Fi's clouds were "enhanced" (toolbox issue #15: by the algorithm of An & Ogras, DAC 2022, whose
multi-frame representation merges neighbouring frames; the same authors' mRI code concatenates the points of
the previous, current and next frame), each frame's file holds the detections of the frames ``MERGED`` around it
(fewer at a sequence's ends), in time order.
Points are in the radar's frame: x right, y boresight, z up (metres); float64 rows as MM-Fi stores them.
"""

from __future__ import annotations

import numpy as np

from poise.data.synth.lidar import ray_capsule_hits

RANGE_RES_M = 0.044  # c / 2B at 3.4 GHz bandwidth
VEL_RES_MPS = 0.06
AZ_ELEMENTS = 8  # IWR6843ISK: 2 azimuth TX x 4 RX, half a wavelength apart
EL_ELEMENTS = 2  # one TX raised by half a wavelength: a two-element elevation baseline
ANGLE_FLOOR_DEG = 1.0  # residual phase calibration between channels (a choice, not a measurement)
ACCURACY_K = 1.6  # Skolnik: sigma = beamwidth / (k sqrt(2 SNR))
SCATTERERS = 600  # surface samples per frame before visibility
CFAR_THRESHOLD = 0.25  # detection when cell power (normalised at 3 m, 1 m^2) beats this
GHOST_RATE = 0.08  # probability that a detection also shows a floor-multipath ghost
GHOST_LOSS_DB = 8.0  # the ghost's extra path loss (floor reflection)
FALSE_ALARMS = 0.6  # expected false alarms per frame
MAX_POINTS = 64  # per radar frame, before merging
MERGED = (-1, 0, 1)  # the frames whose detections one MM-Fi frame holds, relative to it
DT_S = 0.02  # half-window for the velocity finite difference
_POWER_SCALE = 3.0 ** 4 / 2e-3  # a 2e-3 m^2 patch facing the radar at 3 m has power 1


def surface_samples(ends: np.ndarray, radii: np.ndarray, k: int, rng: np.random.Generator):
    """``k`` points on capsule side surfaces, chosen by area: capsule index, axial u, angle theta (each (k,))."""
    length = np.linalg.norm(ends[:, 1] - ends[:, 0], axis=-1)
    area = 2 * np.pi * radii * (length + 2 * radii)
    cap = rng.choice(radii.size, size=k, p=area / area.sum())
    return cap, rng.uniform(0.0, 1.0, k), rng.uniform(0.0, 2 * np.pi, k)


def _helper(ends: np.ndarray, cap) -> np.ndarray:
    """A reference direction per sample, not parallel to its bone: fixes where theta = 0 lies on the capsule."""
    axis = ends[cap, 1] - ends[cap, 0]
    axis /= np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-9)
    return np.where(np.abs(axis[:, 1:2]) < 0.9, np.array([0.0, 1, 0]), np.array([1.0, 0, 0]))


def _place(ends: np.ndarray, radii: np.ndarray, cap, u, theta, helper):
    """Surface points and outward normals for (cap, u, theta) on capsules ``ends`` (C, 2, 3). The same
    ``helper`` must be used at nearby times, so that a scatterer stays on the same side of its bone."""
    a, b = ends[cap, 0], ends[cap, 1]
    axis = b - a
    axis /= np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-9)
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1, axis=-1, keepdims=True)
    e2 = np.cross(axis, e1)
    normal = np.cos(theta)[:, None] * e1 + np.sin(theta)[:, None] * e2
    return a + u[:, None] * (b - a) + radii[cap, None] * normal, normal


def angle_noise_deg(snr_db: np.ndarray, elements: int) -> np.ndarray:
    """Standard deviation (degrees) of an angle estimate on a half-wavelength array of ``elements`` antennas,
    for detections of ``snr_db``."""
    beamwidth = np.degrees(0.886 * 2 / elements)
    return np.hypot(ANGLE_FLOOR_DEG, beamwidth / (ACCURACY_K * np.sqrt(2 * 10 ** (np.asarray(snr_db) / 10))))


def radial_velocity(points: np.ndarray, velocity: np.ndarray, radar_origin: np.ndarray) -> np.ndarray:
    """Velocity along the line of sight, positive when moving away from the radar (m/s)."""
    los = points - radar_origin
    return (velocity * los).sum(-1) / np.linalg.norm(los, axis=-1)


def detect_frame(ends: np.ndarray, ends_before: np.ndarray, ends_after: np.ndarray, radii: np.ndarray, pose,
                 floor_y: float, cam_rot: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 5) float64 radar points for one frame; ``ends_*`` are capsules (C, 2, 3) at t, t - DT_S, t + DT_S."""
    cap, u, theta = surface_samples(ends, radii, SCATTERERS, rng)
    helper = _helper(ends, cap)
    p, normal = _place(ends, radii, cap, u, theta, helper)
    p0, _ = _place(ends_before, radii, cap, u, theta, helper)
    p1, _ = _place(ends_after, radii, cap, u, theta, helper)
    velocity = (p1 - p0) / (2 * DT_S)
    to_radar = pose.origin - p
    dist = np.linalg.norm(to_radar, axis=-1)
    cos_inc = (normal * to_radar).sum(-1) / dist
    facing = cos_inc > 0.05
    # Line of sight: no other capsule between the scatterer and the radar.
    dirs = -to_radar[facing] / dist[facing, None]
    hits = ray_capsule_hits(pose.origin, dirs, ends, radii)
    hits[np.arange(hits.shape[0]), cap[facing]] = np.inf
    visible = np.flatnonzero(facing)[hits.min(1) > dist[facing] - 0.02]
    p, dist, cos_inc, v_r = p[visible], dist[visible], cos_inc[visible], \
        radial_velocity(p[visible], velocity[visible], pose.origin)
    patch = 2 * np.pi * radii[cap[visible]] * 0.25 / SCATTERERS * 40  # area a sample stands for, roughly
    power = _POWER_SCALE * patch * cos_inc / dist ** 4 * rng.exponential(1.0, visible.size)

    r_bin = np.round(dist / RANGE_RES_M).astype(np.int64)
    v_bin = np.round(v_r / VEL_RES_MPS).astype(np.int64)
    moving = v_bin != 0  # static clutter removal
    cells, inverse = np.unique(np.stack([r_bin[moving], v_bin[moving]], 1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    w = power[moving]
    cell_power = np.bincount(inverse, w, len(cells)).astype(float)
    centroid = np.stack([np.bincount(inverse, w * p[moving][:, i], len(cells)) for i in range(3)], 1).astype(float)
    centroid /= np.maximum(cell_power, 1e-30)[:, None]
    hit = cell_power > CFAR_THRESHOLD
    cells, centroid, cell_power = cells[hit], centroid[hit], cell_power[hit]

    q = pose.to_sensor(centroid)  # radar frame: x right, y boresight, z up
    rng_m = cells[:, 0] * RANGE_RES_M
    snr_db = 10 * np.log10(cell_power / CFAR_THRESHOLD) + 6.0
    az = np.arctan2(q[:, 0], q[:, 1]) + np.deg2rad(rng.normal(0, angle_noise_deg(snr_db, AZ_ELEMENTS)))
    el = np.arcsin(np.clip(q[:, 2] / np.maximum(np.linalg.norm(q, axis=-1), 1e-9), -1, 1)) + \
        np.deg2rad(rng.normal(0, angle_noise_deg(snr_db, EL_ELEMENTS)))
    doppler = cells[:, 1] * VEL_RES_MPS
    rows = [np.column_stack([_polar(rng_m, az, el), doppler, snr_db])]

    # Floor multipath: radar -> floor -> body -> radar, seen below the floor at a longer range.
    ghost = rng.random(len(q)) < GHOST_RATE
    if ghost.any():
        level = centroid[ghost] @ cam_rot
        mirror = level.copy()
        mirror[:, 1] = 2 * floor_y - level[:, 1]
        gq = pose.to_sensor(mirror @ cam_rot.T)
        g_rng = np.linalg.norm(gq, axis=-1)
        g_snr = snr_db[ghost] - GHOST_LOSS_DB
        g_az = np.arctan2(gq[:, 0], gq[:, 1]) + np.deg2rad(rng.normal(0, angle_noise_deg(g_snr, AZ_ELEMENTS)))
        g_el = np.arcsin(np.clip(gq[:, 2] / g_rng, -1, 1)) + np.deg2rad(rng.normal(0, angle_noise_deg(g_snr, EL_ELEMENTS)))
        rows.append(np.column_stack([_polar(np.round(g_rng / RANGE_RES_M) * RANGE_RES_M, g_az, g_el),
                                     doppler[ghost], g_snr]))
    k = rng.poisson(FALSE_ALARMS)
    if k:
        fa = _polar(np.round(rng.uniform(1.0, 6.0, k) / RANGE_RES_M) * RANGE_RES_M,
                    rng.uniform(-1.0, 1.0, k), rng.uniform(-0.35, 0.35, k))
        rows.append(np.column_stack([fa, rng.integers(-20, 21, k) * VEL_RES_MPS, rng.uniform(0.5, 4.0, k)]))
    out = np.concatenate(rows)
    if len(out) > MAX_POINTS:
        out = out[np.sort(np.argsort(-out[:, 4])[:MAX_POINTS])]
    return out.astype(np.float64)


def _polar(r: np.ndarray, az: np.ndarray, el: np.ndarray) -> np.ndarray:
    """Radar frame points from range, azimuth (from boresight toward +x) and elevation."""
    return np.column_stack([r * np.cos(el) * np.sin(az), r * np.cos(el) * np.cos(az), r * np.sin(el)])


def scan(performance, times: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Radar point clouds (list of (N_i, 5) float64) for a performance at frame ``times`` (s), each frame's
    holding the detections of the ``MERGED`` frames around it."""
    env = performance.env
    caps = [performance.capsules(*performance.pose(times + dt)) for dt in (0.0, -DT_S, DT_S)]
    (ends, radii), (before, _), (after, _) = caps
    frames = [detect_frame(ends[f], before[f], after[f], radii, env.radar, env.floor_y, env.cam_rot, rng)
              for f in range(len(times))]
    return [np.concatenate([frames[f + k] for k in MERGED if 0 <= f + k < len(frames)]) for f in range(len(frames))]
