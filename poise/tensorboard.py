"""Optional live curves: every number a run records per epoch, as TensorBoard scalars (``--tensorboard``).

TensorBoard is an optional dependency (``pip install 'poise[tensorboard]'``); nothing else in poise needs it.
A key's first word becomes its group (``train_mpjpe_mm`` -> ``train/mpjpe_mm``, ``shapley_rgb`` ->
``shapley/rgb``), so the dashboard shows one panel per kind of number; the step is the epoch.
"""

from __future__ import annotations

from pathlib import Path

from poise.errors import PoiseError


def tag(key: str) -> str:
    group, _, rest = key.partition("_")
    return f"{group}/{rest}" if rest else key


def require():
    """torch's SummaryWriter, or an error that says how to get it (checked before any training starts)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise PoiseError("--tensorboard needs the tensorboard package: pip install 'poise[tensorboard]' (or "
                         "pip install tensorboard), or train without --tensorboard") from None
    return SummaryWriter


class TensorBoardLog:
    """Called with each finished epoch's row of ``metrics.csv``; writes and flushes its numbers. ``fresh``: a
    new run in this directory (``--overwrite``), whose old event files go, so that two runs never mix."""

    def __init__(self, log_dir, fresh: bool = False):
        writer = require()
        self.dir = Path(log_dir)
        if fresh:
            for old in self.dir.glob("events.out.tfevents.*"):
                old.unlink()
        self.writer = writer(str(self.dir))

    def __call__(self, row: dict) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):  # bools (awc_active) as 0/1
                self.writer.add_scalar(tag(key), float(value), int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
