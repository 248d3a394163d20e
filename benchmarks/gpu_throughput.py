"""Training frames (samples)/s of the lite and paper-size encoders through poise's loop, on a GPU (or any device).

    python benchmarks/gpu_throughput.py [--data data/mmfi-demo] [--encoders lite paper]
        [--precisions float32 bf16 fp16] [--batch-size 64] [--epochs 3] [--tf32] [--json FILE]
    torchrun --nproc_per_node N benchmarks/gpu_throughput.py ...   # data-parallel: NCCL on GPUs, gloo on CPU

For each (encoder, precision) it builds a run with the bench's shared settings (``poise.bench.SHARED``, but
every training frame and none held out) and the chosen encoder, precision and batch size, trains one epoch to
warm up (cuDNN's kernel search, the allocator, the data's packed cache), then times ``--epochs`` epochs of
``poise.epoch.train_epoch`` (the loop's training part: batching, prefetch from pinned memory, method hooks, the
once-per-epoch loss read) and, in a single process, as many epochs of a hand-written loop over the same batches
collated on the device beforehand (forward under the same autocast, MPJPE, backward, Adam): the limit the loop
is held to. The device is synchronised only where the clock is read. It prints training frames per second (over
every rank; under torchrun ``--batch-size`` is the global batch, split over the ranks), the loop's share of the
hand-written loop's speed, the peak device memory and, on a GPU, the synchronising calls in one more epoch
(torch's sync debug mode); ``--json`` also writes them.

On a CPU this measures the same thing (``--encoders lite --precisions float32`` is quick); the figures in
docs/training.md's GPU section come from a GPU and say which. The lent machines have one GPU, so the DDP row
needs a machine with several (NCCL refuses two ranks on one GPU).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poise import distributed, precision  # noqa: E402
from poise import train as loop  # noqa: E402
from poise.bench import SHARED  # noqa: E402
from poise.config import TrainConfig  # noqa: E402
from poise.epoch import epoch_order, train_epoch  # noqa: E402
from poise.metrics import mpjpe_loss  # noqa: E402
from poise.runtime import batches, to_device  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def host_syncs(run) -> int | None:
    """Synchronising CUDA calls in one more epoch of the loop, counted by torch's sync debug mode (None off a GPU).
    The loop reads the summed loss once per epoch, so one is expected in float32 and bf16 on one GPU (fp16's
    loss scaler reads an overflow flag every step, and torchrun's loss sum adds two); a per-step read would show
    as one per batch (``tests/test_host_sync.py`` checks the same on a CPU by counting the calls that would
    sync)."""
    if run.device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_epoch(run, progress=False)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    run.epoch += 1
    return sum("synchroniz" in str(w.message) for w in caught)


def hand_written_seconds(run, epochs: int) -> float:
    """Seconds per epoch of the plain step over ``run``'s first epoch's batches, collated on the device first."""
    model = copy.deepcopy(run.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = precision.grad_scaler(run.config.precision, run.device)
    samples, order = epoch_order(run)
    collated = [to_device(run.train.batch(samples[p]), run.device) for p in batches(order, run.config.batch_size)]
    model.train()

    def epoch():
        for batch in collated:
            with precision.autocast(run.config.precision, run.device):
                pred = model.decode(model.encode(batch)).float()
            loss = mpjpe_loss(pred, batch["gt"])
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()

    epoch()  # warm-up
    synchronize(run.device)
    start = time.perf_counter()
    for _ in range(epochs):
        epoch()
    synchronize(run.device)
    return (time.perf_counter() - start) / epochs


def measure(args, encoder: str, precision_name: str, out: Path) -> dict:
    settings = {**SHARED, "train_stride": 1, "holdout": 0.0, "batch_size": args.batch_size}
    config = TrainConfig(data=args.data, epochs=args.epochs + 2, out=str(out), name=f"{encoder}-{precision_name}",
                         encoder=encoder, precision=precision_name, rgb_window=args.rgb_window, **settings)
    run = loop.build_run(config, out / config.name, progress=False)
    steps = batches(epoch_order(run)[1], args.batch_size)  # global batches: every rank's share together
    frames = sum(len(step) for step in steps)  # what an epoch trains on (a last, partial batch is dropped)
    train_epoch(run, progress=False)  # warm-up
    run.epoch += 1
    synchronize(run.device)
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    start = time.perf_counter()
    for _ in range(args.epochs):
        train_epoch(run, progress=False)
        run.epoch += 1
    synchronize(run.device)
    seconds = (time.perf_counter() - start) / args.epochs
    row = {"encoder": encoder, "precision": precision_name, "device": str(run.device), "ranks": distributed.world(),
           "batch_size": args.batch_size, "frames_per_epoch": frames, "loop_frames_per_s": frames / seconds,
           "steps_per_epoch": len(steps),
           "peak_memory_gib": (torch.cuda.max_memory_allocated(run.device) / 2**30
                               if run.device.type == "cuda" else None)}
    row["host_syncs_per_epoch"] = host_syncs(run)
    if distributed.world() == 1:
        hand = hand_written_seconds(run, args.epochs)
        row.update(hand_written_frames_per_s=frames / hand, loop_vs_hand_written=hand / seconds)
    del run  # the run holds a reference cycle: free its model, optimiser and batches before the next row's peak
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


def describe(row: dict) -> str:
    parts = [f"{row['encoder']:5s} {row['precision']:8s} on {row['device']} x {row['ranks']}: "
             f"{row['loop_frames_per_s']:,.0f} frames/s ({row['frames_per_epoch']} per epoch, "
             f"batch {row['batch_size']})"]
    if "loop_vs_hand_written" in row:
        parts.append(f"hand-written {row['hand_written_frames_per_s']:,.0f}/s, "
                     f"loop at {row['loop_vs_hand_written']:.2f} of it")
    if row["peak_memory_gib"] is not None:
        parts.append(f"peak {row['peak_memory_gib']:.2f} GiB")
    if row["host_syncs_per_epoch"] is not None:
        parts.append(f"{row['host_syncs_per_epoch']} host syncs in an epoch of {row['steps_per_epoch']} steps")
    return ", ".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/mmfi-demo")
    parser.add_argument("--encoders", nargs="+", default=["lite", "paper"], choices=["lite", "paper"])
    parser.add_argument("--precisions", nargs="+", default=["float32", "bf16"], choices=list(precision.PRECISIONS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rgb-window", type=int, default=0, help="RGB keypoint frames each side (the TCN's context)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs, after one warm-up epoch")
    parser.add_argument("--tf32", action="store_true", help="let float32 matmuls use TF32 (off by default in torch)")
    parser.add_argument("--json", type=Path, help="also write the rows here (main rank)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")

    distributed.init()
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    summary = {"torch": torch.__version__, "gpu": gpu, "rgb_window": args.rgb_window, "timed_epochs": args.epochs,
               # cuDNN's convolutions may use TF32 unless switched off (torch's default); matmuls only with --tf32
               "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
               "rows": []}
    try:
        with tempfile.TemporaryDirectory(prefix="poise-gpu-throughput-") as tmp:
            for encoder in args.encoders:
                for name in args.precisions:
                    row = measure(args, encoder, name, Path(tmp))
                    summary["rows"].append(row)
                    if distributed.is_main():
                        print(describe(row), flush=True)
                        if args.json:  # after every row: a run cut short by a time limit keeps what it measured
                            args.json.write_text(json.dumps(summary, indent=1))
    finally:
        distributed.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
