"""Data-parallel training: a 2-process torchrun run on CPU (gloo) matches one process, and keeps its ranks in
sync under a method that decides every step (OGM-GE)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from poise.config import TrainConfig
from poise.train import train

ARGS = ["--split", "S3", "--epochs", "2", "--batch-size", "32", "--quiet"]


def torchrun(tiny, out, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "poise.cli",
           "train", "--data", str(tiny), "--out", str(out), *ARGS, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_two_processes_match_one(tiny, tmp_path):
    """No lite encoder has batch norm (the CSI encoder uses group norm), so each rank's half batch with averaged
    gradients is the full batch. Under SGD: Adam divides by the root of tiny second moments, which blows float
    summation-order differences (half-batch means averaged vs one mean) up to ~1e-3 within two epochs."""
    modalities = ["rgb", "lidar", "mmwave", "wifi-csi"]
    out = torchrun(tiny, tmp_path, "--name", "ddp", "--modalities", *modalities, "--optimizer", "sgd", "--lr", "0.05")
    assert out.count("test MPJPE") == 1  # only rank 0 reports
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank (OMP_NUM_THREADS=1): other thread counts sum in other orders
    try:
        single = train(TrainConfig(data=str(tiny), split="S3", epochs=2, batch_size=32, modalities=modalities,
                                   optimizer="sgd", lr=0.05, out=str(tmp_path), name="single"), progress=False).history
    finally:
        torch.set_num_threads(threads)
    assert single[1]["train_mpjpe_mm"] < 0.9 * single[0]["train_mpjpe_mm"]  # it learns: the match is not trivial
    for a, b in zip(ddp, single):
        assert a["test_mpjpe_mm"] == pytest.approx(b["test_mpjpe_mm"], rel=1e-4)
        assert a["train_mpjpe_mm"] == pytest.approx(b["train_mpjpe_mm"], rel=1e-4)


def test_ranks_stay_in_sync_under_per_step_decisions(tiny, tmp_path):
    """OGM-GE decides coefficients and draws noise every step; the loop checks after every epoch that both
    ranks hold the same model, and fails the run if not."""
    torchrun(tiny, tmp_path, "--name", "ogm", "--method", "ogm_ge")
    history = json.loads((tmp_path / "ogm" / "metrics.json").read_text())
    assert len(history) == 2 and all(h["test_mpjpe_mm"] > 0 for h in history)


DIVERGE = """
import torch
from poise import distributed
distributed.init()
layer = torch.nn.Linear(2, 2)
torch.nn.init.constant_(layer.bias, 0.0)
torch.nn.init.constant_(layer.weight, float(distributed.rank()))  # rank 1's weight differs
distributed.check_in_sync(layer)
"""


def test_the_sync_check_catches_ranks_that_diverged(tmp_path):
    script = tmp_path / "diverge.py"
    script.write_text(DIVERGE)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    assert done.returncode != 0
    assert "rank 1: 1 of 2 tensors here differ from rank 0's" in done.stdout + done.stderr
