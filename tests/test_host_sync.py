"""A training step never waits for the device.

On a GPU, reading a tensor's value on the host (``.item()``, ``float()``, ``bool()``, ``.tolist()``, ``.cpu()``,
``.numpy()``) blocks until every queued kernel has run, so a step that does it stalls the GPU once per step.
Without a GPU the same calls can be counted: each one made from poise's own code while an epoch trains is one
that a GPU would wait on. An epoch of 4 steps and one of 2 steps differ by 2 steps; what poise reads per step
is the difference between their counts, which must be 0 (what it reads once per epoch, such as the epoch's
loss, cancels out).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import poise
from poise import methods
from poise import train as loop
from poise.config import TrainConfig
from poise.metrics import M_TO_MM

POISE = str(Path(poise.__file__).parent)
READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "__array__")
# Methods whose per-step hooks still read device values on the host (issue 27, item 4: to be made sync-free);
# the test checks that each of them really does, so the list can only shrink.
STILL_SYNC = {"dmrnet", "modality_distill", "modality_dropout"}
NOT_COUNTED = {"mmanet": "its setup reads a trained teacher run"}
PARAMS = {"gblending": {"super_epoch": 1}, "modality_resample": {"warmup": 1}, "awc": {"window": 2, "fisher_frames": 64},
          "relearn": {"relearn_epoch": 0}, "arl": {"warmup": 0}, "dmrnet": {"warmup": 1}}


class HostReads:
    """Counts the host reads of tensor values made from poise's code (not torch's own internals)."""

    def __init__(self, monkeypatch):
        self.count = 0
        for name in READS:
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original, **kw):
                if sys._getframe(1).f_code.co_filename.startswith(POISE):
                    self.count += 1
                return _original(tensor, *args, **kw)

            monkeypatch.setattr(torch.Tensor, name, counted)


def reads_per_epoch(run, steps: int, counter: HostReads) -> int:
    run.train_rows = run.train_rows[: steps * run.config.batch_size]
    before = counter.count
    loop.train_epoch(run, progress=False)
    return counter.count - before


@pytest.mark.parametrize("method", [m for m in methods.available() if m not in NOT_COUNTED])
def test_a_training_step_reads_nothing_back_from_the_device(tiny, tmp_path, monkeypatch, method):
    holdout = dict(holdout=0.5, protocol="P3", split="S1") if methods.get(method).needs_holdout else {}
    config = TrainConfig(**{"data": str(tiny), "split": "S3", "epochs": 3, "batch_size": 16, "dim": 16,
                            "lidar_points": 64, "mmwave_points": 16, "assess_frames": 64, "out": str(tmp_path),
                            "name": "t", "method": method, "method_params": PARAMS.get(method, {}), **holdout})
    run = loop.build_run(config, tmp_path / "t", progress=False)
    full = run.train_rows
    for epoch in range(2):  # the first epoch ends what epoch 0 sets up (AWC's Fisher), the second is penalised
        run.method.on_epoch_start(run)
        loop.train_epoch(run, progress=False)
        run.method.on_epoch_end(run)
        run.epoch += 1
    counter = HostReads(monkeypatch)
    run.method.on_epoch_start(run)
    short = reads_per_epoch(run, 2, counter)
    run.train_rows = full
    long = reads_per_epoch(run, 4, counter)
    per_step = (long - short) / 2
    if method in STILL_SYNC:
        assert per_step > 0, f"{method} no longer reads the device per step: take it off STILL_SYNC"
    else:
        assert per_step == 0, f"{method}: {per_step} host reads of device values per training step"


def test_the_counter_sees_a_read(monkeypatch):
    counter = HostReads(monkeypatch)
    value = np.float64(M_TO_MM) * torch.ones(2).sum().item()  # an .item() from a test file: not poise's
    assert counter.count == 0 and value == 2000
    from poise.metrics import mpjpe_mm

    mpjpe_mm(torch.zeros(3, 17, 3), torch.ones(3, 17, 3))  # poise's metric returns a float: one read
    assert counter.count >= 1
