"""The encode/decode contract: absent = zero features, explicit modality -> parameter groups, all fusions."""

import pytest
import torch

from poise.data import layout
from poise.models.fusion import FUSIONS
from poise.models.pose import build_model
from poise.models.regressor import SHARED


@pytest.mark.parametrize("fusion", FUSIONS)
def test_absent_means_zero_features(fusion, fake_batch):
    torch.manual_seed(0)
    model = build_model(fusion=fusion, dim=16).eval()
    batch = fake_batch()
    features = model.encode(batch)
    assert model(batch).shape == (5, 17, 3)
    present = ("rgb", "mmwave")
    zeroed = {m: f if m in present else torch.zeros_like(f) for m, f in features.items()}
    assert torch.allclose(model.decode(features, present), model.decode(zeroed), atol=1e-6)
    assert not torch.allclose(model.decode(features, present), model.decode(features), atol=1e-4)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_absent_modalities_get_no_gradient(fusion, fake_batch):
    torch.manual_seed(0)
    model = build_model(fusion=fusion, dim=16)
    model.decode(model.encode(fake_batch()), present=("lidar",)).square().sum().backward()
    groups = model.modality_parameters()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in groups["lidar"])
    for m in ("rgb", "mmwave", "wifi-csi"):
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in groups[m]), m


def test_parameter_groups_partition_the_model():
    model = build_model(fusion="attention", dim=16)
    groups = model.modality_parameters()
    assert set(groups) == set(layout.MODALITIES) | {SHARED}
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}


def test_mean_pose_is_the_output_of_a_zero_head(fake_batch):
    model = build_model(modalities=("rgb",), dim=8)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    mean = torch.arange(51.0).reshape(17, 3)
    model.set_mean_pose(mean)
    assert torch.equal(model(fake_batch(2)), mean.expand(2, 17, 3))


def test_errors_name_the_bad_value(fake_batch):
    with pytest.raises(ValueError, match="did you mean 'attention'"):
        build_model(fusion="atention")
    model = build_model(modalities=("rgb", "lidar"), dim=8)
    with pytest.raises(ValueError, match="wifi-csi"):
        model.decode(model.encode(fake_batch()), present=("wifi-csi",))


def test_a_named_subsets_mask_is_built_once_and_serves_training_after_an_evaluation():
    """The mask of a named subset is cached per device (no host-to-device copy per decode); one first built
    under evaluate's inference mode must still be usable where autograd saves it."""
    model = build_model(dim=8)
    with torch.inference_mode():
        first = model.mask(("rgb", "lidar"), 4, "cpu")
    assert not first.is_inference() and model.mask(("rgb", "lidar"), 4, "cpu") is first
    assert model.mask(["rgb", "lidar"], 4, torch.device("cpu")) is first
    features = {m: torch.randn(4, 8, requires_grad=True) for m in model.modalities}
    model.decode(features, (m for m in ("rgb",))).sum().backward()  # a generator is read once, as a tuple
    assert features["rgb"].grad.abs().sum() > 0 and features["lidar"].grad is None or \
        features["lidar"].grad.abs().sum() == 0
