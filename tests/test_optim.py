"""The optimiser is part of a method's recipe: a coefficient k on one encoder moves it k times as far under its
reference optimiser (SGD with momentum), Adam undoes it, and a per-group learning-rate factor is Adam's form."""

import pytest
import torch

from poise import methods, optim
from poise.config import TrainConfig
from poise.methods.agm import scale_grad
from poise.methods.responses import shapley_responses
from poise.metrics import mpjpe_loss
from poise.models.pose import build_model

K = 0.3
STEPS = 3


def rgb_displacement(fake_batch, optimizer: str, edit=None, lr_groups=None, method="baseline", steps=STEPS):
    """How far the RGB encoder moves in ``steps`` steps from a fixed start on a fixed batch."""
    torch.manual_seed(0)
    model = build_model(fusion="concat", dim=8)
    batch = fake_batch(16)
    batch["gt"] = torch.randn(16, 17, 3, generator=torch.Generator().manual_seed(2)) * 0.2
    config = TrainConfig(optimizer=optimizer, lr_groups=lr_groups or {})
    opt = optim.build(optim.resolve(config, methods.get(method)), model.modality_parameters())
    start = [p.detach().clone() for p in model.modality_parameters()["rgb"]]
    for _ in range(steps):
        opt.zero_grad()
        pred = model(batch) if edit is None or edit[0] != "predict" else edit[1](model, batch)
        mpjpe_loss(pred, batch["gt"]).backward()
        if edit is not None and edit[0] == "grad":
            edit[1](model)
        opt.step()
    return torch.sqrt(sum(((p - s) ** 2).sum() for p, s in zip(model.modality_parameters()["rgb"], start))).item()


def ogm_scale(k):
    ogm = methods.get("ogm_ge", ge=False)
    return ("grad", lambda model: ogm.modulate(model, {"rgb": k, "lidar": 1.0, "mmwave": 1.0, "wifi-csi": 1.0}))


def agm_scale(k):
    def predict(model, batch):  # AGM's prediction with a fixed coefficient on RGB's response
        empty, phi = shapley_responses(model, model.encode(batch))
        return empty + sum(scale_grad(p, k if m == "rgb" else 1.0) for m, p in phi.items())
    return ("predict", predict)


@pytest.mark.parametrize("scale", [ogm_scale, agm_scale], ids=["ogm_ge", "agm"])
def test_a_coefficient_scales_the_encoders_displacement_under_sgd_and_not_under_adam(fake_batch, scale):
    sgd = rgb_displacement(fake_batch, "sgd", scale(K)) / rgb_displacement(fake_batch, "sgd", scale(1.0))
    adam = rgb_displacement(fake_batch, "adam", scale(K)) / rgb_displacement(fake_batch, "adam", scale(1.0))
    assert sgd == pytest.approx(K, rel=0.1)  # the reference's optimiser carries the coefficient through
    assert adam == pytest.approx(1.0, rel=0.05)  # Adam normalises a constant scale away


def test_a_learning_rate_factor_is_adams_form_of_the_scale(fake_batch):
    ratio = rgb_displacement(fake_batch, "adam", lr_groups={"rgb": K}) / rgb_displacement(fake_batch, "adam")
    assert ratio == pytest.approx(K, rel=0.15)  # exactly K for one step; the unscaled run oscillates a little after


def test_the_methods_reference_optimiser_is_the_default():
    for name, expected in (("baseline", "adam"), ("awc", "adam"), ("ogm_ge", "sgd"), ("agm", "sgd")):
        spec = optim.resolve(TrainConfig(method=name), methods.get(name))
        assert spec["optimizer"] == expected, name
    sgd = optim.resolve(TrainConfig(), methods.get("ogm_ge"))
    assert (sgd["lr"], sgd["momentum"], sgd["weight_decay"]) == (optim.SGD_LR, 0.9, 1e-4)
    adam = optim.resolve(TrainConfig(optimizer="adam", lr="2e-3"), methods.get("ogm_ge"))  # YAML's string 2e-3
    assert (adam["optimizer"], adam["lr"], adam["momentum"], adam["weight_decay"]) == ("adam", 2e-3, None, 0.0)


def test_optimiser_settings_are_checked_and_groups_named():
    with pytest.raises(ValueError, match="'optimizer' must be one of"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="'momentum' must be"):
        TrainConfig(momentum=1.5)
    with pytest.raises(ValueError, match="'lr' must be a number"):
        TrainConfig(lr="fast")
    model = build_model(dim=8)
    spec = optim.resolve(TrainConfig(lr_groups={"rbg": 0.5}), methods.get("baseline"))
    with pytest.raises(ValueError, match="did you mean 'rgb'"):
        optim.build(spec, model.modality_parameters())
    opt = optim.build(optim.resolve(TrainConfig(lr_groups={"wifi-csi": 2.0}), methods.get("baseline")),
                      model.modality_parameters())
    assert [g["name"] for g in opt.param_groups] == ["rgb", "lidar", "mmwave", "wifi-csi", "fusion"]
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-3, 1e-3, 2e-3, 1e-3]
    assert optim.base_lr(opt) == 1e-3
