"""What the training loop, the methods, the contribution code and the continual runner share at run time: the
device, moving a batch to it, cutting an order into batches, and evaluating a model on a set of frames.

It sits below the loop (``poise.train``) so that a method or the data layer never imports the loop to get a
helper (``tests/test_layering.py`` keeps it so).
"""

from __future__ import annotations

import contextlib
import os
import socket
import warnings
from pathlib import Path

import numpy as np
import torch

from poise import distributed
from poise.objective import POSE
from poise.errors import PoiseError, disk_full, no_space_left


LOCK = ".lock"


FIT_RECORD = "api.json"  # marks a folder as a poise.fit run, whose model and data only the user's code can rebuild


def trained_from_python(run_dir) -> bool:
    """Whether ``run_dir`` holds a ``poise.fit`` run (its ``FIT_RECORD``) rather than one of ``poise train``."""
    return (Path(run_dir) / FIT_RECORD).is_file()


@contextlib.contextmanager
def run_lock(run_dir):
    """Hold ``run_dir/.lock`` while a run writes there, so two processes never write one run directory (the
    second gets an error naming the holder). The lock is an advisory ``flock``: the kernel drops it when its
    process dies, so a killed run leaves nothing stale. A folder this call created is removed again when the
    body fails before anything else was written there (a failed start leaves no run folder)."""
    import fcntl

    run_dir = Path(run_dir)
    created = [d for d in (run_dir, *run_dir.parents) if not d.exists()]  # innermost first
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.seek(0)
        handle.truncate()
        handle.write(f"poise process {os.getpid()} on {socket.gethostname()}")
        handle.flush()
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise FileExistsError(f"{run_dir} is being written by {holder}; wait for it to finish, or choose another "
                              f"--name") from None
    except OSError as err:  # a filesystem without flock (some network mounts): run, but say it is unguarded
        warnings.warn(f"{run_dir}: cannot lock the run directory ({err}); make sure no other process writes it")
    try:
        yield
    except BaseException:
        try:
            if created and [p.name for p in run_dir.iterdir()] == [LOCK]:
                (run_dir / LOCK).unlink()
                for d in created:
                    if any(d.iterdir()):
                        break
                    d.rmdir()
        except OSError:
            pass  # tidying up must never hide the error that got us here
        raise
    finally:
        handle.close()


def write_atomic(path, text: str) -> None:
    """``text`` into ``path`` through a temporary file and a rename: a reader, or a run killed mid-write, sees
    the old file or the new one, never half of one."""
    path = Path(path)
    replace_with(path, path.with_name(path.name + ".partial"), lambda partial: partial.write_text(text))


def replace_with(path: Path, partial: Path, write) -> None:
    """``write(partial)``, then rename it over ``path``. A failed write leaves no partial file behind, and a
    full disk says so with the path (torch's own message is "unexpected pos N vs M")."""
    try:
        write(partial)
    except BaseException as err:
        partial.unlink(missing_ok=True)
        if disk_full(err):
            raise no_space_left(path, "free some space, then continue (a run: --resume)") from None
        raise
    os.replace(partial, path)


def read_checkpoint(path, keys, then: str) -> dict:
    """The state saved at ``path`` by poise, with every one of ``keys``; a truncated, damaged or foreign file is a
    ValueError that says so and what to do (``then``), never torch's advice to unpickle it unsafely."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PoiseError(f"{path}: no checkpoint there; {then}") from None
    except Exception as err:  # noqa: BLE001: pickle, zip, EOF and OS errors all mean "not a readable checkpoint"
        raise PoiseError(f"{path} is not a readable poise checkpoint (truncated, damaged or written by something "
                         f"else: {type(err).__name__}); {then}") from None
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise PoiseError(f"{path} is not a poise checkpoint of this kind of run (it lacks {', '.join(missing)}); "
                         f"{then}")
    return state


def resolve_device(name: str) -> torch.device:
    """The config's ``device`` ("auto": CUDA when available, else CPU); under torchrun, this rank's device."""
    ranked = distributed.device()
    if name == "auto":
        return ranked or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    wanted = torch.device(name)
    if wanted.type == "cuda" and not torch.cuda.is_available():
        raise PoiseError("config key 'device' is 'cuda' but torch sees no CUDA device; use device: cpu (or auto)")
    if ranked is not None and ranked.type != wanted.type:
        raise PoiseError(f"config key 'device' is {name!r} but torchrun's processes use {ranked.type}; hide the "
                         f"GPUs (CUDA_VISIBLE_DEVICES=) to train on CPU, or use device: auto")
    return ranked or wanted


def configure(device: torch.device, deterministic: bool) -> None:
    """CUDA's kernel choices for a run: cuDNN autotuning (the fastest kernels for the run's shapes, found
    once) unless ``deterministic``, which asks for deterministic kernels instead, so that a resumed or repeated
    GPU run gives the same numbers. TF32 matmuls stay off (torch's default): not yet measured against float32
    on a GPU. A CPU run is deterministic either way."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def to_device(batch: dict, device) -> dict:
    """``batch`` with every tensor on ``device`` (metadata lists unchanged)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def prefetched(cpu_batches, device):
    """Each batch of the iterable ``cpu_batches`` on ``device``, in order. On a GPU the next batch is built in a
    background thread and copied from pinned memory without blocking while the current one trains; on the CPU
    each is built when asked for (a thread there would only take a core from the step)."""
    device = torch.device(device)
    if device.type != "cuda":
        yield from (to_device(b, device) for b in cpu_batches)
        return
    from concurrent.futures import ThreadPoolExecutor

    source = iter(cpu_batches)

    def load():
        batch = next(source, None)
        if batch is None:
            return None
        return to_device({k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}, device)

    with ThreadPoolExecutor(1, thread_name_prefix="poise-prefetch") as pool:
        ahead = pool.submit(load)
        while (batch := ahead.result()) is not None:
            ahead = pool.submit(load)
            yield batch


def batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """``order`` in chunks of ``batch_size``; the last, smaller chunk is dropped unless it is the only one."""
    stop = len(order) - len(order) % batch_size if len(order) > batch_size else len(order)
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def frame_batches(data, rows, batch_size: int):
    """``data.batch`` of every frame in ``rows``, ``batch_size`` at a time (the last batch may be smaller): a
    generator, for passes over a set of frames (per-sample losses, a Fisher)."""
    rows = np.asarray(rows, dtype=np.int64)
    return (data.batch(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size))


@torch.no_grad()
def encode_split(model, data, device, rows=None, batch_size: int = 256) -> tuple[dict, torch.Tensor]:
    """Every modality's features over ``rows`` of ``data`` (default: all frames) and the ground truth, one
    encoder pass."""
    model.eval()
    rows = np.arange(len(data)) if rows is None else np.asarray(rows)
    features, gts = {m: [] for m in model.modalities}, []
    for batch in frame_batches(data, rows, batch_size):
        batch = to_device(batch, device)
        for m, f in model.encode(batch).items():
            features[m].append(f)
        gts.append(batch["gt"])
    return {m: torch.cat(f) for m, f in features.items()}, torch.cat(gts)


EVAL_BATCH = 64  # frames per forward pass when evaluating: 256 ran 1.36x slower per frame on the CPU
# (benchmarks/epoch_cost.py)


def evaluate(model: torch.nn.Module, data, rows=None, batch_size: int = EVAL_BATCH, prefix: str = "test",
             objective=None) -> dict:
    """The ``objective``'s metrics (default poses': MPJPE, PA-MPJPE and root-relative MPJPE in mm) of ``model``
    over the frames ``rows`` of ``data`` (default: every frame), each the mean over frames, named
    ``{prefix}_{metric}`` (``metric`` with no prefix). The root-relative MPJPE moves both poses to put the pelvis
    at the origin (the error in the pose, not in where the person stands): MM-Fi's code reports the absolute
    MPJPE, while its paper describes the pelvis-aligned one (toolbox issue #18). Under torchrun each rank takes
    its share of the frames and the sums are all-reduced. The sums stay on the device until the end (the pose
    metrics' input check still reads a count of non-finite values per batch)."""
    objective = objective or POSE
    model.eval()
    device = next(model.parameters()).device
    rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=np.int64)
    if not len(rows):
        raise ValueError(f"no frames to evaluate the {prefix} metrics on")
    rows = distributed.shard(rows)
    sums = dict.fromkeys(objective.metrics, 0.0)
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = to_device(data.batch(rows[start:start + batch_size]), device)
            for name, values in objective.sample_metrics(model(batch), batch["gt"]).items():
                sums[name] = sums[name] + values.sum()
    totals = distributed.all_sum([float(v) for v in sums.values()] + [len(rows)])
    n = totals[-1]
    return {f"{prefix}_{name}" if prefix else name: total / n for name, total in zip(sums, totals)}


@contextlib.contextmanager
def gradient_stop(model, superior):
    """Freeze the encoders of the ``superior`` modalities for the duration (001 Sec. 3.3: "we halt
    optimization of M_S during the fitting"): their parameters get ``requires_grad = False`` and ``grad =
    None`` (so an optimizer skips them even if it was built with them), and get their previous
    ``requires_grad`` back on exit, also on an exception. Only parameters are frozen: normalisation buffers
    (BatchNorm running statistics) still update in train mode. Yields the frozen modalities."""
    superior = [superior] if isinstance(superior, str) else list(superior)
    unknown = [m for m in superior if m not in model.encoders]
    if unknown:
        raise ValueError(f"superior={superior} names {unknown}, which the model has no encoder for "
                         f"(its modalities: {list(model.encoders)})")
    params = list({id(p): p for m in superior for p in model.encoders[m].parameters()}.values())
    saved = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
            p.grad = None
        yield tuple(superior)
    finally:
        for p, flag in zip(params, saved):
            p.requires_grad_(flag)
