"""Issue 28, item 7: a configuration the machine cannot hold is refused before any data is read, naming the keys
that set its size; the estimate behind it counts the model's step exactly on the meta device."""

from __future__ import annotations

import pytest
import torch

from poise import memory
from poise.cli import main
from poise.models.pose import build_model


def test_the_estimate_counts_parameters_exactly_and_grows_with_the_batch_and_the_points():
    small = memory.estimate(batch_size=32, lidar_points=128)
    model = build_model(dim=64)
    assert small["parameters"] == 4 * 4 * sum(p.numel() for p in model.parameters())  # weights, grads, 2 moments
    double = memory.estimate(batch_size=64, lidar_points=128)
    assert 1.8 < double["step"] / small["step"] < 2.1  # what backward keeps is per frame
    many = memory.estimate(batch_size=32, lidar_points=8192)
    assert many["step"] > 20 * small["step"] and many["total"] > 2**30  # the LiDAR encoder's per-point layers
    assert small["total"] == small["parameters"] + max(small["step"], small["evaluation"])


def test_the_free_memory_is_read_on_linux():
    free = memory.free_bytes(torch.device("cpu"))
    assert free is None or free > 2**20


def test_a_configuration_that_cannot_fit_is_refused_before_the_data_is_read(tmp_path, capsys):
    """65,536 frames of 65,536 LiDAR points each: terabytes. The root does not even exist: the refusal comes first."""
    (tmp_path / "big.yaml").write_text("batch_size: 65536\nlidar_points: 65536\n")
    code = main(["train", "--config", str(tmp_path / "big.yaml"), "--data", str(tmp_path / "no-such-root"),
                 "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "needs at least" in err and "lower batch_size (now 65536), lidar_points (65536)" in err
    assert "Traceback" not in err and not (tmp_path / "runs").exists()


def test_a_continual_stream_that_cannot_fit_is_refused_too(tmp_path):
    from poise.continual.config import ContinualConfig
    from poise.continual.runner import run_continual

    config = ContinualConfig(data=str(tmp_path / "no-such-root"), out=str(tmp_path), batch_size=65536,
                             lidar_points=65536)
    with pytest.raises(ValueError, match="needs at least .* GiB of memory on"):
        run_continual(config, progress=False)
