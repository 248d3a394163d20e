"""A training step never waits for the device.

On a GPU, reading a tensor's value on the host (``.item()``, ``float()``, ``bool()``, ``.tolist()``, ``.cpu()``,
``.numpy()``) blocks until every queued kernel has run, so a step that does it stalls the GPU once per step.
Without a GPU the same calls can be counted: each one made from poise's own code while an epoch trains is one
that a GPU would wait on. An epoch of 4 steps and one of 2 steps differ by 2 steps; what poise reads per step
is the difference between their counts, which must be 0 (what it reads once per epoch, such as the epoch's
loss, cancels out). Reads are counted per function, so a method that still reads names where it does.
"""

from __future__ import annotations

import collections
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
# Methods whose steps still read values on the host, and the functions (module.function) that do: each reads
# only the modality masks it draws on the host from the CPU generator (so that a resumed run draws the same
# masks): draw_masks redraws the samples that lost every modality, and modality distillation asks the drawn masks
# whether anything is absent. These are CPU tensors that no device computed, so a GPU does not wait for them, but
# the counter cannot tell them from device reads; a draw without the redraw loop would change every masked run's
# random numbers (issue 27, item 4). The test checks that each reads there and nowhere else: the list can only
# shrink.
STILL_SYNC = {"modality_dropout": {"modality_dropout.draw_masks"}, "dmrnet": {"modality_dropout.draw_masks"},
              "modality_distill": {"modality_dropout.draw_masks", "modality_distill.extra_loss"}}
NOT_COUNTED = {"mmanet": "its setup reads a trained teacher run"}
PARAMS = {"gblending": {"super_epoch": 1}, "modality_resample": {"warmup": 1}, "awc": {"window": 2, "fisher_frames": 64},
          "relearn": {"relearn_epoch": 0}, "arl": {"warmup": 0}, "dmrnet": {"warmup": 1}}
# more than one phase to count: DMRNet's warm-up (the measured epoch, 2, inside it) besides its HCR epochs
CASES = [pytest.param(m, PARAMS.get(m, {}), id=m) for m in methods.available() if m not in NOT_COUNTED]
CASES.append(pytest.param("dmrnet", {"warmup": 3, "beta": 0.0}, id="dmrnet-warmup"))


class HostReads:
    """Counts the host reads of tensor values made from poise's code (not torch's own internals)."""

    def __init__(self, monkeypatch):
        self.count = 0
        self.where = collections.Counter()  # {"module.function": reads}
        for name in READS:
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _original=original, **kw):
                code = sys._getframe(1).f_code
                if code.co_filename.startswith(POISE):
                    self.count += 1
                    self.where[f"{Path(code.co_filename).stem}.{code.co_name}"] += 1
                return _original(tensor, *args, **kw)

            monkeypatch.setattr(torch.Tensor, name, counted)


def reads_per_epoch(run, steps: int, counter: HostReads) -> collections.Counter:
    """{function: host reads} in an epoch of ``steps`` steps."""
    run.train_rows = run.train_rows[: steps * run.config.batch_size]
    before = collections.Counter(counter.where)
    loop.train_epoch(run, progress=False)
    return counter.where - before


@pytest.mark.parametrize("method, params", CASES)
def test_a_training_step_reads_nothing_back_from_the_device(tiny, tmp_path, monkeypatch, method, params):
    holdout = dict(holdout=0.5, protocol="P3", split="S1") if methods.get(method).needs_holdout else {}
    config = TrainConfig(**{"data": str(tiny), "split": "S3", "epochs": 3, "batch_size": 16, "dim": 16,
                            "lidar_points": 64, "mmwave_points": 16, "assess_frames": 64, "out": str(tmp_path),
                            "name": "t", "method": method, "method_params": params, **holdout})
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
    per_step = {where: (long[where] - short[where]) / 2 for where in long | short}
    allowed = STILL_SYNC.get(method, set())
    unexpected = {where: n for where, n in per_step.items() if n and where not in allowed}
    assert not unexpected, f"{method}: host reads of device values per training step: {unexpected}"
    if allowed:
        assert sum(per_step.get(where, 0) for where in allowed) > 0, \
            f"{method} no longer reads the host per step: take it off STILL_SYNC"


def test_the_counter_sees_a_read(monkeypatch):
    counter = HostReads(monkeypatch)
    value = np.float64(M_TO_MM) * torch.ones(2).sum().item()  # an .item() from a test file: not poise's
    assert counter.count == 0 and value == 2000
    from poise.metrics import mpjpe_mm

    mpjpe_mm(torch.zeros(3, 17, 3), torch.ones(3, 17, 3))  # poise's metric returns a float: one read
    assert counter.count >= 1
