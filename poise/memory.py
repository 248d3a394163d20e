"""How much memory a configuration's training needs, estimated before any data is read, and a refusal when the
machine cannot hold it (issue 28, item 7).

The model is built on PyTorch's ``meta`` device, where tensors have shapes but no storage, and run once on a
batch of the configuration's shapes: what autograd saves for the backward pass is counted exactly, with no
arithmetic done and nothing allocated. The estimate is

    parameters x 4 (weights, gradients, Adam's two moments; SGD keeps one, so this counts a little over)
    + max(training step: the batch + every other tensor saved for backward at this process's share of
          ``batch_size`` (halved under bf16 / fp16 autocast),
          evaluation: the batch + twice the largest activation at ``EVAL_FRAMES`` frames, no gradients)

in bytes (float32; a tensor saved by several operations counts once). It covers the model's own step: a method
that runs extra passes (AGM's and ARL's Shapley decodes, a teacher, a peer network) needs more, the process
itself about 130 MiB, and the data's cache is memory-mapped, not resident. It is a floor: measured in fresh
processes (``benchmarks/memory_estimate.py``), two steps and a 128-frame pass took 1.1-2.0x the estimate
at 0.8-2.1 GiB and 4.2x at the default's 42 MiB, so a configuration is refused only when even the floor
exceeds the memory free for it.
"""

from __future__ import annotations

import contextlib

import torch

from poise.data import layout
from poise.errors import PoiseError

EVAL_FRAMES = 128  # the largest no-gradient pass the loop makes (the contribution assessment's chunk)
FLOAT = 4  # bytes


def _batch(modalities, frames: int, rgb_window: int, lidar_points: int, mmwave_points: int, csi_phase: bool) -> dict:
    """A batch of ``frames`` frames on the meta device, shaped as ``MMFiDataset.batch`` gives it."""
    meta = dict(device="meta")
    shapes = {"rgb": (frames, 2 * rgb_window + 1, 17, 2) if rgb_window else (frames, 17, 2),
              "lidar": (frames, lidar_points, 3), "mmwave": (frames, mmwave_points, 5),
              "wifi-csi": (frames, 2 if csi_phase else 1, *layout.CSI_SHAPE)}
    batch = {m: torch.zeros(shapes[m], **meta) for m in modalities}
    for m, points in (("lidar", lidar_points), ("mmwave", mmwave_points)):
        if m in modalities:
            batch[f"{m}_mask"] = torch.ones(frames, points, dtype=torch.bool, **meta)
    return batch


def _bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def estimate(modalities=layout.MODALITIES, fusion: str = "concat", dim: int = 64, rgb_window: int = 0,
             encoder: str = "lite", batch_size: int = 32, lidar_points: int = 128, mmwave_points: int = 64,
             csi_phase: bool = False, precision: str = "float32") -> dict:
    """Bytes a training run of these settings needs at least: ``{"parameters", "step", "evaluation", "total"}``
    (see the module docstring for what each counts); ``batch_size`` is one process's share of the batch."""
    half = 0.5 if precision in ("bf16", "fp16") else 1.0  # autocast keeps most activations in 16 bits
    from poise.models.pose import build_model

    with torch.device("meta"):
        model = build_model(tuple(modalities), fusion=fusion, dim=dim, rgb_window=rgb_window, csi_phase=csi_phase,
                            encoder=encoder)
    parameters = 4 * sum(_bytes(p) for p in model.parameters())
    shapes = dict(rgb_window=rgb_window, lidar_points=lidar_points, mmwave_points=mmwave_points, csi_phase=csi_phase)

    saved = {}  # storage -> bytes: a tensor saved by several operations (or views of one) counts once

    def keep(t):
        storage = t.untyped_storage()
        saved[storage._cdata] = storage.nbytes()
        return t

    batch = _batch(modalities, batch_size, **shapes)
    counted = {t.untyped_storage()._cdata for t in (*model.parameters(), *batch.values())}  # counted on their own
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model(batch)
    activations = sum(n for key, n in saved.items() if key not in counted)
    step = sum(_bytes(t) for t in batch.values()) + int(activations * half)

    largest = [0]

    def track(module, inputs, output):
        if isinstance(output, torch.Tensor):
            largest[0] = max(largest[0], _bytes(output))

    batch = _batch(modalities, EVAL_FRAMES, **shapes)
    hooks = [m.register_forward_hook(track) for m in model.modules()]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for h in hooks:
            h.remove()
    evaluation = sum(_bytes(t) for t in batch.values()) + 2 * largest[0]
    return {"parameters": parameters, "step": step, "evaluation": evaluation,
            "total": parameters + max(step, evaluation)}


def free_bytes(device: torch.device) -> int | None:
    """Memory free for a run on ``device`` (CUDA: the device's free memory; CPU: the kernel's MemAvailable), or
    None where poise cannot tell (a CPU without /proc/meminfo)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return None


def _gib(n: int) -> str:
    return f"{n / 2 ** 30:.1f} GiB"


def check_fits(config, device: torch.device) -> dict:
    """Refuse ``config`` (a TrainConfig or ContinualConfig) when its estimate exceeds the memory free on
    ``device``; returns the estimate."""
    from poise import distributed

    share = max(1, config.batch_size // distributed.world())  # under torchrun each process holds its share
    need = estimate(config.modalities, config.fusion, config.dim, getattr(config, "rgb_window", 0), config.encoder,
                    share, config.lidar_points, config.mmwave_points, getattr(config, "csi_phase", False),
                    getattr(config, "precision", "float32"))
    total = need["total"]
    free = free_bytes(device)
    if free is not None and total > free:
        raise PoiseError(
            f"this configuration needs at least {_gib(total)} of memory on {device.type} (the batch and what its "
            f"backward pass keeps: {_gib(need['step'])}; parameters with gradients and Adam's state: "
            f"{_gib(need['parameters'])}), and {_gib(free)} is free; lower batch_size "
            f"(now {config.batch_size}), lidar_points ({config.lidar_points}), mmwave_points ({config.mmwave_points}) "
            f"or dim ({config.dim}), or use a machine with more memory")
    return need
