"""Generator v5's mmWave (angle errors that fall with SNR), probed on the v5-probe root: every sequence's mmWave
files are rendered again with the current code (the radar's own random stream, as `poise simulate` draws it) and
written in place, the other files untouched. python rewrite_mmwave.py ROOT (each file is unlinked before it is
written, so a hard-linked original keeps its own)."""
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from poise.data import layout
from poise.data.synth import mmwave, writer
from poise.data.synth.scene import Performance


def rewrite(folder: Path) -> int:
    subject, action = folder.parent.name, folder.name
    perf = Performance.build(subject, action, 0)
    times = np.arange(layout.FRAMES_PER_SEQUENCE) / layout.FRAME_RATE_HZ
    clouds = mmwave.scan(perf, times, writer._seq_rng(0, subject, action, 3))
    for i, cloud in enumerate(clouds):
        path = folder / "mmwave" / layout.frame_name(i, "mmwave")
        path.unlink()
        np.ascontiguousarray(cloud, dtype=np.float64).tofile(path)
    return sum(len(c) for c in clouds)


if __name__ == "__main__":
    folders = sorted(Path(sys.argv[1]).glob("E0*/S*/A*"))
    with ProcessPoolExecutor(2) as pool:
        points = list(pool.map(rewrite, folders))
    print("rewrote", len(folders), "sequences,", sum(points) / len(folders) / layout.FRAMES_PER_SEQUENCE, "points per file")
