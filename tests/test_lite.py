"""Lite encoders: shapes, masks that really mask, empty clouds, and a unimodal model that learns."""

import numpy as np
import pytest
import torch

from poise.config import TrainConfig
from poise.metrics import mpjpe_mm
from poise.models.lite import PointNet, lite_encoder
from poise.train import train


def test_pointnet_ignores_padding_and_handles_empty_clouds():
    torch.manual_seed(0)
    net = PointNet(5, dim=8)
    points = torch.randn(3, 10, 5)
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[0, :4] = True
    mask[1, :10] = True  # row 2 stays empty
    out = net(points, mask)
    changed = points.clone()
    changed[0, 4:] = 1e3  # padding of row 0 changes
    assert torch.equal(net(changed, mask)[0], out[0])
    assert torch.isfinite(out).all()
    assert torch.equal(out[2], net.out(torch.zeros(1, 256))[0])  # an empty cloud is a zero pooled feature


@pytest.mark.parametrize("modality, shape", [("rgb", (4, 17, 2)), ("wifi-csi", (4, 1, 3, 114, 10))])
def test_dense_encoders_shapes(modality, shape):
    assert lite_encoder(modality, dim=32)(torch.rand(shape)).shape == (4, 32)


def test_rgb_window_encoder():
    assert lite_encoder("rgb", dim=16, rgb_window=2)(torch.rand(4, 5, 17, 2)).shape == (4, 16)


def test_unknown_modality_is_named():
    with pytest.raises(ValueError, match="depth"):
        lite_encoder("depth")


def test_a_unimodal_model_learns_on_tiny(tiny, tmp_path):
    """Three epochs of the RGB model beat the mean pose it starts from on its training frames (a fitting check)."""
    config = TrainConfig(data=str(tiny), split="S3", modalities=["rgb"], epochs=3, batch_size=32, dim=32,
                         out=str(tmp_path), name="rgb", lr_step=10)
    run = train(config, progress=False)
    gt = torch.from_numpy(run.train.poses(run.train_rows))
    before = float(mpjpe_mm(gt.mean(0).expand_as(gt), gt))
    last = run.history[-1]["train_mpjpe_mm"]
    assert np.isfinite(last) and last < 0.7 * before
