"""The ground truth as MM-Fi's is made: estimated, not measured.

MM-Fi does not say how its 3D joints were made; a third-party summary says from HRNet 2D keypoints
(research/mmfi.md §3), no motion capture appears among its sensors, and toolbox issue #9 asks how accurate its
keypoints are (unanswered). An estimated label carries an error that no sensor sees, so it sets a floor under
every model's error. Paper 001's Table 3 shows two such floors:

- **in the pose** (generator v4): every modality set that contains RGB scores 34.1-35.0 mm PA-MPJPE, whatever
  is added to it (LiDAR, mmWave, WiFi, or all three), where exact labels (generator v3) let R+L reach 22 mm.
  Each joint's label is off by a smooth random error (a keypoint's error changes with the pose, not from
  frame to frame), Gaussian with ``SIGMA_M`` per axis, correlated over ``CORRELATION_FRAMES`` frames (a
  Gaussian kernel), ``EXTREMITY_FACTOR`` larger on wrists and ankles (a detector's worst joints) at the same
  mean variance.
- **in where the body is** (generator v5): Table 3's sets exceed their PA-MPJPE by 18-22 mm (all four, R+L,
  LiDAR alone) where a LiDAR that sees the body to the centimetre left v4's by 6-9 mm. MM-Fi's camera is a
  stereo depth camera (its files hold rgb, infra1, infra2 and depth), and a depth from stereo at 3 m is off by
  centimetres, an error shared by neighbouring joints. Every joint of a frame moves together by a smooth
  error, ``BODY_SIGMA_M`` per camera axis (x right, y down, z depth: depth twice the rest), correlated over
  ``BODY_CORRELATION_FRAMES``. PA-MPJPE does not see it (Procrustes removes a translation).

``SIGMA_M`` (Table 3's four-modality PA-MPJPE) and ``BODY_SIGMA_M`` (its MPJPE, added in quadrature, not
fitted: docs/simulator.md) are set from Table 3; the correlation times, the extremities' factor and depth's
share are choices, not measurements.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

SIGMA_M = 0.019  # per axis, averaged over joints: about 30 mm per joint (the mean of a 3D Gaussian's norm)
CORRELATION_FRAMES = 2.0  # the kernel's std, in frames (0.2 s at 10 Hz)
EXTREMITY_FACTOR = 1.5
EXTREMITIES = (3, 6, 13, 16)  # H36M: right ankle, left ankle, left wrist, right wrist
BODY_SIGMA_M = (0.015, 0.015, 0.030)  # the whole body's error per camera axis: about 35 mm mean norm
BODY_CORRELATION_FRAMES = 5.0  # 0.5 s


def _smooth(shape, frames: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise of ``shape``, smoothed along its first axis over ``frames``."""
    error = gaussian_filter1d(rng.normal(size=shape), frames, axis=0, mode="reflect")
    return error / error.std()


def estimated(joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 17, 3) labels for the true ``joints`` (n, 17, 3, camera frame) of one sequence, in metres."""
    scale = np.ones(joints.shape[1])
    scale[list(EXTREMITIES)] = EXTREMITY_FACTOR
    scale /= np.sqrt((scale ** 2).mean())
    per_joint = SIGMA_M * _smooth(joints.shape, CORRELATION_FRAMES, rng) * scale[None, :, None]
    body = np.asarray(BODY_SIGMA_M) * _smooth((len(joints), 3), BODY_CORRELATION_FRAMES, rng)
    return joints + per_joint + body[:, None, :]
