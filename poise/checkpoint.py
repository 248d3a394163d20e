"""A run's checkpoint, one format for both settings: what ``checkpoint.pt`` holds, writing it atomically, and
restoring it into a run that has been built and set up (Lightning's order: set up, then restore).

A Setting-1 run (``poise.run.Run``) saves its model, optimiser, scheduler, method (state and modules),
history, RNGs and, when used, the drift anchor and the fp16 scaler; a continual stream saves its finished
task's phase the same way with the stream's own state under ``stream`` (``poise.continual.runner``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from poise.runtime import read_checkpoint, replace_with

CHECKPOINT = "checkpoint.pt"
MODEL_KEYS = ("model", "method_modules", "method", "torch_rng")  # what every poise checkpoint holds


def save_checkpoint(run, path: Path | None = None, stream: dict | None = None) -> None:
    """The run's state, written to a temporary file and renamed (``path``: default ``run.dir/checkpoint.pt``).
    One format for both settings: a task stream saves its finished phase with the stream's own state in
    ``stream`` (its optimiser is rebuilt per task, and ignored on restore)."""
    state = {"epoch": run.epoch, "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
             "scheduler": run.scheduler.state_dict(), "method": run.method.state_dict(),
             "method_modules": {k: m.state_dict() for k, m in run.method.modules().items()},
             "history": run.history, "torch_rng": torch.get_rng_state()}
    if run.drift_anchor is not None:
        state["drift_anchor"] = run.drift_anchor
    if run.scaler is not None:
        state["scaler"] = run.scaler.state_dict()
    if stream is not None:
        state["stream"] = stream
    if run.device.type == "cuda":  # the GPU generator too, or a resumed CUDA run draws other noise
        state["cuda_rng"] = torch.cuda.get_rng_state(run.device)
    path = Path(path or run.dir / CHECKPOINT)
    replace_with(path, path.with_name(path.name + ".tmp"), lambda tmp: torch.save(state, tmp))


def restore_parts(state: dict, model: torch.nn.Module, modules: dict, device) -> None:
    """The model, the method's modules (``{name: module}``) and the RNGs from a checkpoint's ``state``, into
    parts that have been built and set up (set up, then restore)."""
    model.load_state_dict(state["model"])
    for name, module in modules.items():
        module.load_state_dict(state["method_modules"][name])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def restore_model_and_method(state: dict, model: torch.nn.Module, method, device) -> None:
    """``restore_parts`` for a Setting-1 run's model and method, and the method's own state."""
    restore_parts(state, model, method.modules(), device)
    method.load_state_dict(state["method"])


def load_checkpoint(run, then: str = "start a new run instead of --resume") -> None:
    """Restore the state of a run that has been built (and its method set up) from its checkpoint (``then``:
    what to do when it is unreadable)."""
    state = read_checkpoint(run.dir / CHECKPOINT, (*MODEL_KEYS, "optimizer", "scheduler", "epoch", "history"), then)
    restore_model_and_method(state, run.model, run.method, run.device)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.scaler is not None and "scaler" in state:
        run.scaler.load_state_dict(state["scaler"])
    run.epoch, run.history = state["epoch"], state["history"]
    if "drift_anchor" in state:
        run.drift_anchor = {m: [a.to(run.device) for a in anchor] for m, anchor in state["drift_anchor"].items()}
