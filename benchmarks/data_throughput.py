"""Time one epoch of MM-Fi frames (all four modalities) read per file vs from the packed cache.

    python benchmarks/data_throughput.py --data ROOT [--protocol P3] [--frames N] [--batch-size 32] [--cold]

Both epochs use the same ``MMFiDataset`` settings and the same batched loader (``dataset.loader``, shuffled,
as in training); only ``cache`` differs. The cache is built (or opened) first. By default both epochs run on a warm page cache,
the per-file path's best case. ``--cold`` also times both after evicting the dataset's and the cache's files
from the page cache (``posix_fadvise(DONTNEED)``, no root needed): a first epoch, or a dataset larger than
RAM. ``--frames`` times a fixed random subset of that many frames (the per-file epoch of the full dataset
takes long). Each path is timed ``--repeats`` times, interleaved, and its fastest epoch counts. Target: the
cached epoch at least 20x faster.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poise.data.dataset import MMFiDataset  # noqa: E402


def evict(*folders) -> None:
    """Drop every file under ``folders`` from the page cache (clean pages only; nothing is deleted)."""
    for folder in folders:
        for dirpath, _, names in os.walk(folder):
            for name in names:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)


def epoch_seconds(dataset, indices, batch_size: int, workers: int) -> float:
    """Seconds to iterate once over ``dataset[indices]`` in shuffled batches, touching every tensor."""
    if indices is None:
        loader = dataset.loader(batch_size=batch_size, shuffle=True, num_workers=workers)
    else:  # a fixed random subset, in shuffled batches
        order = torch.tensor(indices)[torch.randperm(len(indices), generator=torch.Generator().manual_seed(0))]
        loader = DataLoader(order.split(batch_size), batch_size=None, num_workers=workers,
                            collate_fn=lambda idx: dataset.batch(idx.tolist()))
    start = time.perf_counter()
    total = 0.0
    for batch in loader:
        total += float(batch["gt"].sum())  # make sure the batch is materialised
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="root of an MM-Fi tree (E01..E04/S??/A??)")
    parser.add_argument("--protocol", default="P3", help="P1, P2 or P3 (default: P3, every action)")
    parser.add_argument("--frames", type=int, default=None, help="time a random subset of this many frames")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    parser.add_argument("--repeats", type=int, default=2, help="epochs timed per path; the fastest counts")
    parser.add_argument("--cold", action="store_true", help="also time both paths with an evicted page cache")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the cache lives (default: ROOT/.poise_cache)")
    args = parser.parse_args(argv)
    if args.data is None or not args.data.is_dir():
        print(f"data_throughput: --data ROOT is required and must be an MM-Fi tree (got {args.data}); this "
              f"benchmark generates nothing. Make one with `poise simulate` or point it at the real MM-Fi root.",
              file=sys.stderr)
        return 2

    kw = dict(protocol=args.protocol, part="all", cache_dir=args.cache_dir)
    start = time.perf_counter()
    cached = MMFiDataset(args.data, cache=True, **kw)
    build = time.perf_counter() - start
    direct = MMFiDataset(args.data, cache=False, **kw)
    indices = None
    if args.frames is not None and args.frames < len(cached):
        indices = torch.randperm(len(cached), generator=torch.Generator().manual_seed(0))[: args.frames].tolist()
    n = len(cached) if indices is None else len(indices)
    print(f"{n} frames of {len(cached.sequences)} sequences, modalities {list(cached.modalities)}; "
          f"cache open/build {build:.1f} s at {cached.cache.path}")

    summary = []
    for condition in ["warm page cache"] + (["cold page cache"] if args.cold else []):
        times = {"cached": [], "per-file": []}
        for _ in range(max(1, args.repeats)):  # interleaved, so that drift on the machine hits both alike
            for name, dataset in (("cached", cached), ("per-file", direct)):
                if condition.startswith("cold"):
                    cached.cache.close()  # mapped pages cannot be evicted
                    evict(args.data, cached.cache.path)
                times[name].append(epoch_seconds(dataset, indices, args.batch_size, args.workers))
        for name, ts in times.items():
            print(f"{condition}, {name}: epochs {', '.join(f'{t:.2f}' for t in ts)} s; "
                  f"best {n / min(ts):.0f} frames/s")
        t_cached, t_direct = min(times["cached"]), min(times["per-file"])
        summary.append(f"{condition}: cached epoch {t_cached:.1f} s, per-file epoch {t_direct:.1f} s, "
                       f"speed-up {t_direct / t_cached:.0f}x (target >= 20x)")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
