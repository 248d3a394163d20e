"""Issue 28, item 3: a run killed at any write ends, once continued, exactly as an uninterrupted run.

A kill is simulated at every point where a run writes a file: just before an atomic rename (its ``.partial`` /
``.tmp`` file written, as SIGKILL would leave it; a kill before the partial is written leaves what a kill after the
previous write does), before a plain write (the run's method and data records) and before a plot. The run is then continued as a user would: ``--resume`` where a checkpoint exists,
otherwise the same command again. Every file the uninterrupted run wrote must end identical (the per-epoch
``seconds`` aside), with nothing half-written left beside them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import poise.plots
import poise.runtime
from poise.config import TrainConfig
from poise.train import CHECKPOINT, resume, train


class Killed(BaseException):
    """SIGKILL, as an exception: nothing after it runs (BaseException: no ``except Exception`` catches it)."""


class KillAt:
    """Counts the writes into ``run_dir`` (not the data's cache); raises ``Killed`` at write number ``at``
    (None: never)."""

    def __init__(self, monkeypatch, run_dir: Path, at: int | None):
        self.at, self.count, self.run_dir = at, 0, run_dir
        replace, write_text, save = os.replace, Path.write_text, poise.plots.save
        tick = self.tick

        def killed_replace(src, dst, *a, **kw):
            tick(dst)
            return replace(src, dst, *a, **kw)

        def killed_write_text(path, *a, **kw):
            if not path.name.endswith((".partial", ".tmp")):  # an atomic write's partial: its rename is the point
                tick(path)
            return write_text(path, *a, **kw)

        def killed_save(fig, path):
            tick(path)
            return save(fig, path)

        monkeypatch.setattr(poise.runtime.os, "replace", killed_replace)
        monkeypatch.setattr(Path, "write_text", killed_write_text)
        monkeypatch.setattr(poise.plots, "save", killed_save)

    def tick(self, path) -> None:
        """One write to ``path``: the kill, when it is the ``at``-th into the run folder."""
        if Path(path).parent == self.run_dir:
            self.count += 1
            if self.count == self.at:
                raise Killed


def files_of(run_dir: Path) -> dict:
    """What a finished run or stream left: every file's bytes, with timings left out (``seconds``, at any depth)
    and the checkpoint's contents compared as values (its bytes hold pickled storage ids)."""
    import numpy as np

    out = {}
    for path in sorted(run_dir.iterdir()):
        if path.name == ".lock":
            continue
        if path.name == "env.json":  # one record per start or resume: says how the run was made, not what it got
            out[path.name] = isinstance(json.loads(path.read_text()), list)
        elif path.name == CHECKPOINT:
            state = torch.load(path, weights_only=True)
            stream = state.get("stream")
            out[path.name] = {"model": state["model"], "epoch": state["epoch"] if stream is None else stream["task"],
                              "history": untimed(state["history"]) if stream is None else
                              [stream["matrix"], untimed(json.loads(stream["records"]))]}
        elif path.name in ("metrics.json", "tasks.json"):
            out[path.name] = untimed(json.loads(path.read_text()))
        elif path.name == "metrics.csv":
            rows = path.read_text().splitlines()
            cut = rows[0].split(",").index("seconds")
            out[path.name] = [",".join(r.split(",")[:cut]) for r in rows]
        elif path.suffix == ".npz":
            with np.load(path) as saved:
                out[path.name] = {k: saved[k].tolist() for k in saved.files}
        elif path.suffix == ".png":
            out[path.name] = path.stat().st_size > 0
        else:
            out[path.name] = path.read_bytes()
    return out


def same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        if key == CHECKPOINT:
            if a[key]["epoch"] != b[key]["epoch"] or a[key]["history"] != b[key]["history"] or any(
                    not torch.equal(x, y) for x, y in zip(a[key]["model"].values(), b[key]["model"].values())):
                return False
        elif a[key] != b[key]:
            return False
    return True


def test_a_training_run_killed_at_any_write_continues_to_the_same_files(tiny, tmp_path, monkeypatch):
    config = TrainConfig(data=str(tiny), split="S3", epochs=2, batch_size=64, dim=16, lidar_points=64,
                         mmwave_points=16, assess_frames=64, out=str(tmp_path / "runs"), name="k", lr_step=1,
                         eval_every=1, train_stride=4, eval_stride=4, device="cpu")  # bit-exact resume: CPU
    run_dir = tmp_path / "runs" / "k"
    with monkeypatch.context() as patch:
        counter = KillAt(patch, run_dir, None)
        train(config, progress=False)
    expected, writes = files_of(run_dir), counter.count
    assert writes >= 13  # config, method, data; per epoch 3 result files and a checkpoint; 2 plots
    for at in range(1, writes + 1):
        for path in run_dir.iterdir():
            path.unlink()
        with monkeypatch.context() as patch:
            KillAt(patch, run_dir, at)
            with pytest.raises(Killed):
                train(config, progress=False)
        if (run_dir / CHECKPOINT).exists():
            resume(run_dir, progress=False)
        else:  # killed before the first checkpoint: the same command again (the bench does the same)
            train(config, progress=False)
        left = files_of(run_dir)
        assert same(left, expected), (at, sorted(left), sorted(expected))


def test_a_continual_stream_killed_at_any_write_continues_to_the_same_files(stream_root, tmp_path, monkeypatch):
    """The same for ``poise continual``: its config, each task's losses file, result files and checkpoint."""
    import numpy as np

    from poise.continual.config import ContinualConfig
    from poise.continual.runner import resume as resume_stream, run_continual

    config = ContinualConfig(data=str(stream_root), out=str(tmp_path), name="k", split="S2", tasks=2, epochs=1,
                             recipe="ewc", dim=16, lidar_points=32, mmwave_points=16, train_stride=4, batch_size=32,
                             assess_frames=64, ewc={"fisher_frames": 32}, noisy_modality="rgb", ratio=0.4,
                             device="cpu")
    run_dir = tmp_path / "k"
    savez = np.savez_compressed

    def counted_savez(path, *a, _counter, **kw):
        _counter.tick(path)
        return savez(path, *a, **kw)

    def run(at):
        with monkeypatch.context() as patch:
            counter = KillAt(patch, run_dir, at)
            patch.setattr(np, "savez_compressed", lambda path, *a, **kw: counted_savez(path, *a, _counter=counter, **kw))
            run_continual(config, progress=False)
        return counter.count

    writes = run(None)
    expected = files_of(run_dir)
    assert writes >= 9  # config; per task 3 result files, a checkpoint (and a losses file where NIS or noise ran)
    for at in range(1, writes + 1):
        for path in run_dir.iterdir():
            path.unlink()
        with pytest.raises(Killed):
            run(at)
        if (run_dir / CHECKPOINT).exists():
            resume_stream(run_dir, progress=False)
        else:
            run_continual(config, progress=False)
        left = files_of(run_dir)
        assert same(left, expected), (at, [k for k in left if not same({k: left[k]}, {k: expected.get(k)})])


def untimed(value):
    """``value`` (parsed JSON) without its ``seconds`` entries, at any depth."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def test_an_extension_killed_at_any_write_continues_to_the_same_files(tiny, tmp_path, monkeypatch):
    """``--resume --epochs N`` rewrites config.yaml beside a checkpoint (atomically): killed at any write, the same
    command again ends as an uninterrupted extension."""
    import shutil

    config = TrainConfig(data=str(tiny), split="S3", epochs=1, batch_size=64, dim=16, lidar_points=64,
                         mmwave_points=16, assess_frames=64, out=str(tmp_path / "runs"), name="x", lr_step=1,
                         eval_every=1, train_stride=4, eval_stride=4, device="cpu")
    run_dir, start = tmp_path / "runs" / "x", tmp_path / "start"
    train(config, progress=False)
    shutil.copytree(run_dir, start)
    with monkeypatch.context() as patch:
        counter = KillAt(patch, run_dir, None)
        resume(run_dir, progress=False, epochs=2)
    expected, writes = files_of(run_dir), counter.count
    assert writes >= 6  # config.yaml, env.json, the epoch's 3 result files and checkpoint, 2 plots
    for at in range(1, writes + 1):
        shutil.rmtree(run_dir)
        shutil.copytree(start, run_dir)
        with monkeypatch.context() as patch:
            KillAt(patch, run_dir, at)
            with pytest.raises(Killed):
                resume(run_dir, progress=False, epochs=2)
        resume(run_dir, progress=False, epochs=2)
        left = files_of(run_dir)
        assert same(left, expected), (at, sorted(left), sorted(expected))
