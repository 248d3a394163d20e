"""Generator v5's candidate, probed on a hard-linked copy of the v4 P1 root: every sequence's labels get a smooth
whole-body error (every joint moved together, as a triangulation's depth error moves them), the sensors' files
untouched. python rewrite_labels.py ROOT (ROOT: `cp -al data/mmfi-p1 ROOT`; each ground_truth.npy is unlinked
before it is written, so the original root keeps its own)."""
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

SIGMA_M = np.array([0.015, 0.015, 0.030])  # per axis (x right, y down, z depth): depth twice the rest
CORRELATION_FRAMES = 5.0  # 0.5 s

root = Path(sys.argv[1])
for i, path in enumerate(sorted(root.glob("E0*/S*/A*/ground_truth.npy"))):
    gt = np.load(path)
    rng = np.random.default_rng([20261206, i])
    e = gaussian_filter1d(rng.normal(size=(len(gt), 3)), CORRELATION_FRAMES, axis=0, mode="reflect")
    e /= e.std(0)
    path.unlink()
    np.save(path, gt + (SIGMA_M * e)[:, None, :])
print("rewrote", i + 1, "sequences")
