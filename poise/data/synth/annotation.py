"""The ground truth as MM-Fi's is made: estimated, not measured.

MM-Fi does not say how its 3D joints were made; a third-party summary says from HRNet 2D keypoints
(research/mmfi.md §3), no motion capture appears among its sensors, and toolbox issue #9 asks how accurate its
keypoints are (unanswered). An estimated label carries an error that no sensor sees, so it sets a floor under
every model's error. Paper 001's Table 3 shows such a floor: every modality set that contains RGB scores
34.1-35.0 mm PA-MPJPE, whatever is added to it (LiDAR, mmWave, WiFi, or all three), where exact labels
(generator v3) let R+L reach 22 mm.

The model: each joint's label is off by a smooth random error (a triangulated keypoint's error changes with
the pose, not from frame to frame), Gaussian with ``SIGMA_M`` per axis, correlated over ``CORRELATION_FRAMES``
frames (a Gaussian kernel), ``EXTREMITY_FACTOR`` larger on wrists and ankles (a detector's worst joints) at the
same mean variance. ``SIGMA_M`` is the one number calibrated to Table 3 (its four-modality PA-MPJPE,
docs/simulator.md); the other two are choices, not measurements.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

SIGMA_M = 0.019  # per axis, averaged over joints: about 30 mm per joint (the mean of a 3D Gaussian's norm)
CORRELATION_FRAMES = 2.0  # the kernel's std, in frames (0.2 s at 10 Hz)
EXTREMITY_FACTOR = 1.5
EXTREMITIES = (3, 6, 13, 16)  # H36M: right ankle, left ankle, left wrist, right wrist


def estimated(joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 17, 3) labels for the true ``joints`` (n, 17, 3) of one sequence, in metres."""
    error = gaussian_filter1d(rng.normal(size=joints.shape), CORRELATION_FRAMES, axis=0, mode="reflect")
    error /= error.std()
    scale = np.ones(joints.shape[1])
    scale[list(EXTREMITIES)] = EXTREMITY_FACTOR
    scale /= np.sqrt((scale ** 2).mean())
    return joints + SIGMA_M * error * scale[None, :, None]
