"""Data-parallel training under ``torchrun --nproc_per_node=N poise train ...``: gloo on CPU, NCCL on CUDA.

On CUDA machines each rank takes GPU ``LOCAL_RANK`` and the backend is NCCL (written for it, but not yet run on
a GPU: none has been lent to this project; the gloo path is tested); otherwise gloo on CPU.
What DDP does, done explicitly: every rank holds the same model, takes its share of each global batch,
and after ``backward`` the gradients are averaged over ranks (one flat all-reduce), so every rank applies the
same update. We do it by hand rather than wrapping the model in ``DistributedDataParallel`` because the loop
calls ``encode`` / ``decode`` separately (and methods call ``decode`` on feature subsets), which bypasses a DDP
wrapper's ``forward`` and so its gradient hooks; and because methods edit gradients (OGM-GE, AWC's Fisher),
which must see the averaged gradient. Batch-norm running statistics are broadcast from rank 0 after each epoch,
as DDP does before each forward.

Everything a method decides from is made identical on every rank: per-step scores are averaged over ranks
(``all_mean``, on the device when they are tensors), the per-epoch contribution scores are computed by every rank on the same whole slice, the data order and re-sampling depend only on
(seed, epoch), and the torch RNG (OGM-GE's noise) starts from the same seed and is consumed identically.
Only rank 0 writes files and shows progress. In a single process every function here is a no-op.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
import torch.distributed as dist


_device = torch.device("cpu")  # where collective tensors live: this rank's GPU under NCCL


def init() -> bool:
    """Join the process group if started by torchrun (WORLD_SIZE > 1): NCCL on GPU ``LOCAL_RANK`` when CUDA is
    available, else gloo on CPU. True if distributed."""
    global _device
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if torch.cuda.is_available():
        _device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(_device)
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return True


def device() -> torch.device | None:
    """This rank's device when distributed (the config's ``device`` must agree), else None."""
    return _device if dist.is_initialized() else None


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def shard(items):
    """This rank's share of ``items`` (every world-th item from its rank)."""
    return items[rank()::world()]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


@contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. building a data cache), then the others."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum over ranks of a list of numbers."""
    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_device)
    dist.all_reduce(t)
    return t.tolist()


def all_mean(values: dict) -> dict:
    """``{key: number}`` averaged over ranks (the same keys, in the same order, on every rank). Values that are
    tensors (0-d, e.g. a per-step score) are averaged on the device, in float64, and come back as 0-d float64
    tensors: nothing is read back on the host (the same numbers as averaging their ``float()`` values)."""
    if not dist.is_initialized():
        return dict(values)
    keys = list(values)
    if any(torch.is_tensor(v) for v in values.values()):
        t = torch.stack([torch.as_tensor(values[k], dtype=torch.float64, device=_device).reshape(()) for k in keys])
        dist.all_reduce(t)
        return dict(zip(keys, (t / world()).unbind()))
    return dict(zip(keys, (v / world() for v in all_sum([float(values[k]) for k in keys]))))


def average_gradients(*modules: torch.nn.Module) -> None:
    """Average every parameter's gradient of ``modules`` over ranks, in one flat all-reduce."""
    average_parameter_gradients([p for m in modules for p in m.parameters()])


def average_parameter_gradients(params) -> None:
    """Average the gradients of ``params`` over ranks, in one flat all-reduce."""
    if not dist.is_initialized():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank."""
    if not dist.is_initialized():
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, 0)


def check_in_sync(*modules: torch.nn.Module) -> None:
    """Raise if any rank's parameters or buffers differ from rank 0's (compared by per-tensor sums, bit for
    bit): every rank must have made the same updates and decisions."""
    if not dist.is_initialized():
        return
    tensors = [t for m in modules for t in [*m.parameters(), *m.buffers()]]
    local = torch.stack([t.detach().double().sum() for t in tensors]).to(_device)
    reference = local.clone()
    dist.broadcast(reference, 0)
    bad = (local != reference).nonzero()
    flag = torch.tensor([float(len(bad))], device=_device)
    dist.all_reduce(flag)
    if flag.item():
        raise RuntimeError(f"rank {rank()}: {len(bad)} of {len(tensors)} tensors here differ from rank 0's "
                           f"({int(flag.item())} over all ranks); the ranks made different updates (a method "
                           f"decided from rank-local numbers?)")
