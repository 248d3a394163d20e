"""How far apart the tasks of a continual stream are, in pose: can a model that learns later tasks forget an
earlier one? (Issue: naive fine-tuning on our P1 stream forgets almost nothing.)

For each task of the protocol (``poise.continual.tasks``) on the split, from the ground truth only (no sensor
data is read):

- the spread of its poses: per-joint p5-p95 range (mm, mean over joints and axes);
- ``mean-pose error[i][j]``: the MPJPE (mm) of predicting task i's mean training pose for every test frame of
  task j (how unlike task j's poses are task i's typical pose);
- ``coverage[i][j]``: the mean over task j's test frames of the MPJPE (mm) to the nearest training frame of
  task i. Its diagonal is how well a task's own training frames cover its test frames; if, for every earlier
  task j, the later tasks i > j cover j about as well as j itself does, training on them keeps j's poses in
  the model and a stream can hardly forget j through the pose distribution alone.

    python benchmarks/task_overlap.py --data data/mmfi-p1 --protocol P1 --split S2

Frames are subsampled (``--frames`` per task, from a fixed seed) to keep the nearest-neighbour search cheap.
"""

from __future__ import annotations

import argparse

import numpy as np

from poise.continual import tasks as task_stream
from poise.data.dataset import MMFiDataset
from poise.metrics import M_TO_MM


def nearest_mpjpe(queries: np.ndarray, pool: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Per query pose (N, 17, 3), the MPJPE (metres) to the closest pose of ``pool`` (P, 17, 3)."""
    out = np.empty(len(queries))
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        d = np.linalg.norm(q[:, None] - pool[None], axis=-1).mean(-1)  # (chunk, P)
        out[start:start + chunk] = d.min(1)
    return out


def measure(root: str, protocol: str, split: str, frames: int, seed: int = 0, root_relative: bool = False) -> dict:
    kw = dict(protocol=protocol, split=split, lidar_points=128, mmwave_points=64, progress=False)  # the stream's cache
    train, test = MMFiDataset(root, part="train", **kw), MMFiDataset(root, part="test", **kw)
    stream = task_stream.tasks(protocol)
    rng = np.random.default_rng(seed)

    def poses(data, rows):
        rows = np.sort(rng.permutation(rows)[:frames])
        pose = data.poses(rows)
        return pose - pose[:, :1] if root_relative else pose  # joint 0: the pelvis

    train_poses = [poses(train, rows) for rows in task_stream.task_indices(train, protocol)]
    test_poses = [poses(test, rows) for rows in task_stream.task_indices(test, protocol)]
    n = len(stream)
    spread = [float((np.percentile(p, 95, 0) - np.percentile(p, 5, 0)).mean() * M_TO_MM) for p in train_poses]
    means = [p.mean(0) for p in train_poses]
    mean_error = [[float(np.linalg.norm(test_poses[j] - means[i], axis=-1).mean() * M_TO_MM) for j in range(n)]
                  for i in range(n)]
    coverage = [[float(nearest_mpjpe(test_poses[j], train_poses[i]).mean() * M_TO_MM) for j in range(n)]
                for i in range(n)]
    return {"tasks": [", ".join(t) for t in stream], "spread_mm": spread, "mean_pose_error_mm": mean_error,
            "coverage_mm": coverage}


def table(name: str, matrix, labels) -> str:
    lines = [f"{name} (row: task i's training poses; column: task j's test poses)", "",
             "| i \\ j | " + " | ".join(str(j) for j in range(len(labels))) + " |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| {i} | " + " | ".join(f"{v:.0f}" for v in row) + " |" for i, row in enumerate(matrix)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/mmfi-p1")
    parser.add_argument("--protocol", default="P1")
    parser.add_argument("--split", default="S2")
    parser.add_argument("--frames", type=int, default=1500, help="frames per task and part (subsampled)")
    parser.add_argument("--root-relative", action="store_true",
                        help="poses relative to the pelvis (articulation only, without where the body stands)")
    args = parser.parse_args()
    result = measure(args.data, args.protocol, args.split, args.frames, root_relative=args.root_relative)
    labels = result["tasks"]
    print("| task | actions | pose spread p5-p95 (mm) |\n|---|---|---|")
    for t, (actions, spread) in enumerate(zip(labels, result["spread_mm"])):
        print(f"| {t} | {actions} | {spread:.0f} |")
    print()
    print(table("MPJPE of task i's mean training pose on task j's test frames (mm)", result["mean_pose_error_mm"], labels))
    print()
    print(table("nearest-neighbour MPJPE from task j's test frames to task i's training frames (mm)",
                result["coverage_mm"], labels))
    cov = np.array(result["coverage_mm"])
    later = [float(cov[j + 1:, j].min() / cov[j, j]) for j in range(len(labels) - 1)]
    print("\nbest later task's coverage of task j, relative to task j's own: "
          + ", ".join(f"task {j}: {r:.2f}x" for j, r in enumerate(later)))


if __name__ == "__main__":
    main()
