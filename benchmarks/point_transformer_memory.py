"""Memory of the Point Transformer block: vector attention over k nearest neighbours versus all pairs.

    python benchmarks/point_transformer_memory.py [--batch 4] [--points 256] [--k 16] [--dim 64] [--threads 1]

One forward + backward of ``poise.models.paper.PointTransformerBlock`` (kNN included), and of the same block with
the same weights attending densely to every point (every pairwise tensor B x N x N x d). For each it prints:
- the largest intermediate tensor, computed analytically (B * N * k * d against B * N * N * d floats);
- the bytes autograd keeps for backward, measured (saved-tensor hooks, each storage counted once);
- the peak resident memory added by forward + backward, measured (Linux VmHWM after resetting it through
  /proc/self/clear_refs, in a fresh child process per variant),
and the dense / kNN ratios, which should approach N / k. Before that, with k = N it checks the two agree.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poise.models.paper import PointTransformerBlock, knn  # noqa: E402


def dense_block(block: PointTransformerBlock, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The block with every point attending to every point: each pairwise tensor is (B, N, N, d)."""
    layer = block.attention
    h = F.relu(block.linear_in(x))
    delta = layer.delta(pos[:, :, None] - pos[:, None])  # (B, N, N, d)
    logits = layer.gamma(layer.phi(h)[:, :, None] - layer.psi(h)[:, None] + delta)
    h = (logits.softmax(dim=2) * (layer.alpha(h)[:, None] + delta)).sum(2)
    return x + block.linear_out(F.relu(h))


def knn_block(block: PointTransformerBlock, x: torch.Tensor, pos: torch.Tensor, k: int) -> torch.Tensor:
    mask = torch.ones(pos.shape[:2], dtype=torch.bool)
    idx, valid = knn(pos, mask, k)
    return block(x, pos, idx, valid)


def inputs(batch: int, points: int, dim: int, seed: int = 0):
    torch.manual_seed(seed)
    block = PointTransformerBlock(dim)
    return block, torch.randn(batch, points, dim, requires_grad=True), torch.randn(batch, points, 3)


def memory_status() -> tuple[int, int]:
    """(current, peak) resident memory of this process, bytes."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def child(args) -> dict:
    """Measure one variant in this (fresh) process."""
    torch.set_num_threads(args.threads)
    block, x, pos = inputs(args.batch, args.points, args.dim)
    run = (lambda: dense_block(block, x, pos)) if args.child == "dense" else (lambda: knn_block(block, x, pos, args.k))
    small = inputs(2, 16, args.dim)  # warm-up on a tiny cloud: lazy initialisations out of the measurement
    (dense_block(*small) if args.child == "dense" else knn_block(*small, k=4)).sum().backward()

    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t

    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
        reset = True
    except OSError:
        reset = False
    before, _ = memory_status()
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    out.sum().backward()
    seconds = time.perf_counter() - start
    _, peak = memory_status()
    return {"saved_bytes": sum(saved.values()), "peak_rss_bytes": peak - before if reset else None,
            "seconds": seconds}


def measure(variant: str, args) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--batch", str(args.batch), "--points",
               str(args.points), "--k", str(args.k), "--dim", str(args.dim), "--threads", str(args.threads)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def mib(n) -> str:
    return "n/a" if n is None else f"{n / 2 ** 20:9.1f} MiB"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--points", type=int, default=256)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--child", choices=("knn", "dense"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    k = min(args.k, args.points)
    torch.set_num_threads(args.threads)

    block, x, pos = inputs(2, 20, 8)  # the two are the same function when k = N
    gap = (knn_block(block, x, pos, 20) - dense_block(block, x, pos)).abs().max().item()
    print(f"check: kNN block with k = N vs dense block, max |difference| = {gap:.2e}")

    b, n, d = args.batch, args.points, args.dim
    print(f"B={b} N={n} k={k} d={d}, float32, one forward + backward, {args.threads} thread(s)")
    largest = {"knn": 4 * b * n * k * d, "dense": 4 * b * n * n * d}
    results = {variant: measure(variant, args) for variant in ("knn", "dense")}
    print(f"{'':8s}{'largest tensor':>16s}{'saved for bwd':>16s}{'peak RSS added':>16s}{'time':>9s}")
    for variant, r in results.items():
        print(f"{variant:8s}{mib(largest[variant]):>16s}{mib(r['saved_bytes']):>16s}{mib(r['peak_rss_bytes']):>16s}"
              f"{r['seconds']:8.2f}s")
    ratio = [largest["dense"] / largest["knn"], results["dense"]["saved_bytes"] / results["knn"]["saved_bytes"]]
    line = f"dense / kNN: largest tensor {ratio[0]:.1f}x, saved for backward {ratio[1]:.1f}x"
    if results["knn"]["peak_rss_bytes"] and results["dense"]["peak_rss_bytes"] is not None:
        line += f", peak RSS {results['dense']['peak_rss_bytes'] / results['knn']['peak_rss_bytes']:.1f}x"
    print(line + f"  (N / k = {n / k:.1f})")


if __name__ == "__main__":
    main()
