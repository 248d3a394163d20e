"""What every registered method must do, checked for each one on the tiny synthetic data with the parameters
its class declares (``Method.smoke_*``), so that a new method is covered by adding its file: it learns, resumes
exactly from a checkpoint, restores its own state, trains inside a ``Composite``, and round-trips its
parameters. Training never reads the test split."""

import dataclasses
import io
import json
import math

import numpy as np
import pytest
import torch

from poise import methods
from poise import train as loop
from poise.config import TrainConfig
from poise.methods.base import Statistic
from poise.methods.compose import Composite

NAMES = methods.available()


def method_class(name: str) -> type:
    return type(methods.get(name))


def smoke_config(tiny, tmp_path, cls, name: str, **kw) -> TrainConfig:
    """The tiny run of ``tests/test_train.py``; half the training sequences held out for a method that needs
    them (P3 / S1: the actions of tiny with two training sequences)."""
    holdout = dict(holdout=0.5, protocol="P3", split="S1") if cls.needs_holdout else dict(split="S3")
    values = dict(data=str(tiny), epochs=cls.smoke_epochs, batch_size=64, dim=16, lidar_points=64, mmwave_points=16,
                  assess_frames=128, out=str(tmp_path / "runs"), name=name, lr_step=1, fusion=cls.smoke_fusion,
                  method=cls.name, **holdout)
    values.update(kw)
    return TrainConfig(**values)


class Untouchable:
    """Stands in for the test split during training: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the test split was read during training ({name})")

    def __len__(self):
        raise AssertionError("the test split was read during training (len)")


@pytest.fixture
def no_test_split(monkeypatch):
    """Every run built from here on gets ``Untouchable`` as its test split (from before the method's setup)
    and scores no test frames."""
    load, build = loop.load_datasets, loop.build_run

    def load_without_test(*args, **kw):
        return load(*args, **kw)[0], Untouchable()

    def build_without_test(*args, **kw):
        run = build(*args, **kw)
        run.test_rows = np.zeros(0, np.int64)
        return run

    monkeypatch.setattr(loop, "load_datasets", load_without_test)
    monkeypatch.setattr(loop, "build_run", build_without_test)


def resources(name: str, tiny, tmp_path, cls) -> dict:
    """The run-time parameters a method's smoke run needs (``Method.smoke_needs``)."""
    out = {}
    for need in cls.smoke_needs:
        if need != "teacher":
            pytest.fail(f"{name} needs {need!r} for its smoke run: teach tests/test_method_contract.py to make one")
        teacher = smoke_config(tiny, tmp_path, cls, "teacher", method="baseline", epochs=1, method_params={})
        out[need] = str(loop.train(teacher, progress=False).dir)
    return out


def same(a, b) -> bool:
    """Deep equality of method states: dicts, lists / tuples, tensors, arrays and numbers (nan equals nan)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu())
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=True)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def stop_after(monkeypatch, epochs: int) -> None:
    """Interrupt the next run as a kill would, right after the checkpoint of its ``epochs``-th epoch."""
    save = loop.save_checkpoint

    def save_then_stop(run, *args, **kw):
        save(run, *args, **kw)
        if run.epoch == epochs:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_then_stop)


@pytest.mark.parametrize("name", NAMES)
def test_a_method_learns_resumes_exactly_restores_its_state_and_composes(tiny, tmp_path, monkeypatch, no_test_split,
                                                                       name):
    """One smoke run of ``smoke_epochs`` straight, and the same run killed after epoch ``smoke_cut`` and resumed:
    it learns, the resumed run ends with the same history and model, the trained method's state survives a
    checkpoint round trip into a new instance, its statistic is recorded, and it then trains an epoch inside
    a Composite with re-learning."""
    cls = method_class(name)
    params = {**cls.smoke_params, **resources(name, tiny, tmp_path, cls)}
    n = cls.smoke_epochs
    cut = n - 1 if cls.smoke_cut is None else cls.smoke_cut
    assert 1 <= cut < n, f"{name}: smoke_cut={cut} must leave epochs to resume in a run of {n}"
    straight = loop.train(smoke_config(tiny, tmp_path, cls, "straight", method_params=params), progress=False)
    history = straight.history
    assert history[-1]["train_mpjpe_mm"] < history[0]["train_mpjpe_mm"], "it does not learn"
    if cls.statistic:
        key = cls.statistic.key
        assert all(f"{key}_{m}" in h for h in history for m in straight.model.modalities), f"{key}_<m> not recorded"

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        stop_after(patch, cut)
        loop.train(smoke_config(tiny, tmp_path, cls, "cut", method_params=params), progress=False)
    resumed = loop.resume(tmp_path / "runs" / "cut", progress=False)
    assert len(resumed.history) == n
    for a, b in zip(history, resumed.history):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    for (key, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), key

    state = straight.method.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)  # as a checkpoint holds it, read back as a resume reads it
    buffer.seek(0)
    copy = methods.get(name, **params)
    copy.setup(straight)
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    assert same(copy.state_dict(), state), "load_state_dict does not restore what state_dict saved"

    partner = "relearn" if name != "relearn" else "baseline"
    phase = dataclasses.replace(straight, dir=None, method=Composite([methods.get(name, **params), methods.get(
        partner, **method_class(partner).smoke_params)]), train_rows=straight.train_rows[:128], epoch=0, history=[],
        record={}, optimizer=None, scheduler=None, loggers=[], assessed=None)
    loop.prepare(phase)  # set up for the smoke run's length; one epoch of it is trained
    phase.config = dataclasses.replace(phase.config, epochs=1)
    loop.fit(phase, progress=False)
    assert math.isfinite(phase.history[0]["train_mpjpe_mm"])
    missing = set(history[0]) - set(phase.history[0])
    assert not missing, f"inside a Composite its first epoch no longer records {sorted(missing)}"


@pytest.mark.parametrize("name", NAMES)
def test_a_methods_declarations_are_consistent_and_its_parameters_round_trip(name):
    """``from_params(smoke_params)`` gives back its parameters through ``params()`` and method.json (JSON), and
    what the class declares for the tests and the bench names real parameters and numbers."""
    cls = method_class(name)
    method = cls.from_params(dict(cls.smoke_params))
    params = method.params()
    assert {k: params[k] for k in cls.smoke_params} == cls.smoke_params
    assert cls.from_params(params).params() == params
    assert cls.from_params(json.loads(json.dumps(params))).params() == params  # as method.json stores them
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(cls.shown) <= fields and list(method.settings(10)) == list(cls.shown)
    assert set(cls.smoke_needs) <= fields and cls.smoke_fusion in ("concat", "mlp", "attention")
    assert cls.statistic is None or (isinstance(cls.statistic, Statistic) and cls.statistic.over in ("mean", "last"))
