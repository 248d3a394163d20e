"""The memory estimate (poise.memory) against what a training step takes: each configuration in a fresh
process, the peak resident memory of two training steps (forward, backward, Adam) and one no-gradient pass of
128 frames above the process before the model existed. Prints measured / estimated per configuration; the estimate is meant as a floor of the same
order (a refusal is made only when even the floor does not fit). python benchmarks/memory_estimate.py"""

import json
import subprocess
import sys

CONFIGS = [dict(), dict(lidar_points=8192), dict(batch_size=256, lidar_points=1024),
           dict(encoder="paper", dim=256, lidar_points=1024)]

CHILD = r"""
import json, resource, sys, torch
torch.set_num_threads(1)
from poise.memory import _batch, estimate
from poise.models.pose import build_model
kw = json.loads(sys.argv[1])
shape = dict(rgb_window=0, lidar_points=kw.get("lidar_points", 128), mmwave_points=64, csi_phase=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
model = build_model(dim=kw.get("dim", 64), encoder=kw.get("encoder", "lite"))
batch = {k: torch.zeros(v.shape, dtype=v.dtype) if v.dtype == torch.bool else torch.randn(v.shape)
         for k, v in _batch(("rgb", "lidar", "mmwave", "wifi-csi"), kw.get("batch_size", 32), **shape).items()}
batch = {k: (v.bool() | True) if k.endswith("_mask") else v for k, v in batch.items()}
opt = torch.optim.Adam(model.parameters())
for _ in range(2):
    opt.zero_grad()
    model(batch).square().mean().backward()
    opt.step()
with torch.no_grad():  # the loop's largest no-gradient pass: the assessment's chunk
    model({k: v[:1].expand(128, *v.shape[1:]).contiguous() for k, v in batch.items()})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(json.dumps({"measured": peak, "estimate": estimate(**kw)["total"]}))
"""

if __name__ == "__main__":
    for kw in CONFIGS:
        out = json.loads(subprocess.run([sys.executable, "-c", CHILD, json.dumps(kw)], check=True,
                                        capture_output=True, text=True).stdout)
        print(f"{json.dumps(kw):55s} measured {out['measured'] / 2**20:8.0f} MiB, estimated {out['estimate'] / 2**20:8.0f} "
              f"MiB: measured / estimated {out['measured'] / out['estimate']:.2f}")
