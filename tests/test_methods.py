"""AWC and adaptive re-learning against their formulas (papers 000 and 001)."""

from types import SimpleNamespace

import pytest
import torch

from poise import methods
from poise.methods.groups import split_groups
from poise.models.pose import build_model

SCORES = {"rgb": 33.0, "lidar": 29.0, "mmwave": 3.0, "wifi-csi": 2.5}


def fake_run(epoch=0, epochs=10, scores=SCORES):
    torch.manual_seed(0)
    return SimpleNamespace(model=build_model(dim=8), epoch=epoch, config=SimpleNamespace(epochs=epochs),
                           contributions=[dict(scores)])


def test_kmeans_groups_split_at_the_largest_gap():
    assert split_groups(SCORES) == (["rgb", "lidar"], ["mmwave", "wifi-csi"])
    assert split_groups({"a": 1.0, "b": 1.0}) == (["a", "b"], [])
    assert split_groups({"a": 5.0, "b": 1.0, "c": 1.2}) == (["a"], ["b", "c"])
    with pytest.raises(ValueError, match="finite"):
        split_groups({"a": float("nan"), "b": 1.0})


def shift(model, modality, by=0.1):
    with torch.no_grad():
        for p in model.modality_parameters()[modality]:
            p.add_(by)


def set_grads(model, value):
    for p in model.parameters():
        p.grad = torch.full_like(p, value)


def test_awc_fisher_is_the_mean_squared_gradient_of_the_first_epoch():
    run = fake_run()
    awc = methods.get("awc")
    awc.setup(run)
    for g in (1.0, 3.0):
        set_grads(run.model, g)
        awc.after_backward(run, None)
    assert all(torch.allclose(f, torch.full_like(f, 5.0)) for fs in awc.fisher.values() for f in fs)  # (1 + 9) / 2
    run.epoch = 1
    set_grads(run.model, 100.0)
    awc.after_backward(run, None)  # outside the estimation epoch: no change
    assert all(torch.allclose(f, torch.full_like(f, 5.0)) for fs in awc.fisher.values() for f in fs)


def test_awc_penalty_is_zero_at_the_anchor_and_outside_the_window():
    run = fake_run(epochs=10)
    awc = methods.get("awc")
    awc.setup(run)
    set_grads(run.model, 1.0)
    awc.after_backward(run, None)
    awc.on_epoch_end(run)
    run.epoch = 1
    assert awc.extra_loss(run, None).item() == 0.0  # theta == theta_0
    shift(run.model, "rgb")
    assert awc.extra_loss(run, None).item() > 0
    assert awc.window_epochs(run) == 4  # 40 % of 10 epochs
    run.epoch = 4
    assert awc.extra_loss(run, None) is None
    run.epoch = 0
    assert awc.extra_loss(run, None) is None


def test_awc_weighs_the_superior_group_more_and_matches_the_formula():
    run = fake_run()
    awc = methods.get("awc", alpha_s=2.0, alpha_i=1.0)
    awc.setup(run)
    set_grads(run.model, 0.5)
    awc.after_backward(run, None)  # F = 0.25 everywhere
    awc.on_epoch_end(run)
    assert awc.superior == ["rgb", "lidar"]
    groups = run.model.modality_parameters()
    size = {m: sum(p.numel() for p in groups[m]) for m in groups}
    shift(run.model, "rgb", 0.1)
    rgb = awc.penalty(run.model).item()
    assert rgb == pytest.approx(2.0 * size["rgb"] * 0.25 * 0.01 / 2, rel=1e-5)
    shift(run.model, "rgb", -0.1)
    shift(run.model, "mmwave", 0.1)
    assert awc.penalty(run.model).item() == pytest.approx(1.0 * size["mmwave"] * 0.25 * 0.01 / 2, rel=1e-5)


def test_relearn_interpolates_exactly_per_group_once():
    run = fake_run(epoch=4)
    rl = methods.get("relearn", relearn_epoch=5)
    rl.setup(run)
    initial = {m: [p.detach().clone() for p in ps] for m, ps in run.model.modality_parameters().items()}
    for m in run.model.modalities:
        shift(run.model, m, 1.0)
    before = {m: [p.detach().clone() for p in ps] for m, ps in run.model.modality_parameters().items()}
    rl.on_epoch_end(run)
    assert rl.groups == {"superior": ["rgb", "lidar"], "inferior": ["mmwave", "wifi-csi"]}
    after = run.model.modality_parameters()
    for m, alpha in (("rgb", 0.5), ("lidar", 0.5), ("mmwave", 0.7), ("wifi-csi", 0.7)):
        for p, p0, p1 in zip(after[m], initial[m], before[m]):
            assert torch.allclose(p, alpha * p0 + (1 - alpha) * p1, atol=1e-6)
    for p, p1 in zip(after["fusion"], before["fusion"]):
        assert torch.equal(p, p1)  # fusion and head untouched
    run.epoch = 5
    snapshot = [p.detach().clone() for p in run.model.parameters()]
    rl.on_epoch_end(run)
    assert all(torch.equal(p, q) for p, q in zip(run.model.parameters(), snapshot))  # only at epoch r


def test_method_parameters_are_validated():
    with pytest.raises(ValueError, match=r"alpha_s must lie in \[0, 1\]"):
        methods.get("relearn", alpha_s=1.5)
    with pytest.raises(ValueError, match="did you mean 'alpha_s'"):
        methods.get("awc", alpha_S=1.0)


def test_ogm_ge_damps_only_the_dominant_modality():
    from poise.methods.ogm_ge import coefficients

    k = coefficients(SCORES, alpha=0.3)
    # rgb: 33 / mean(29, 3, 2.5) = 2.87 > 1 -> damped; lidar: 29 / mean(33, 3, 2.5) = 2.26 -> damped; weak ones: 1
    assert k["rgb"] == pytest.approx(1 - __import__("math").tanh(0.3 * 33 / ((29 + 3 + 2.5) / 3)))
    assert k["rgb"] < k["lidar"] < 1.0 and k["mmwave"] == 1.0 and k["wifi-csi"] == 1.0
    assert coefficients({"a": 1.0, "b": 1.0}, 0.3) == {"a": 1.0, "b": 1.0}  # balanced: nothing damped
    assert coefficients({"a": -2.0, "b": 0.0}, 0.3)["a"] == 1.0  # negative scores are floored, never inverted

    run = fake_run()
    ogm = methods.get("ogm_ge", ge=False)
    set_grads(run.model, 1.0)
    ogm.modulate(run.model, k)
    groups = run.model.modality_parameters()
    for m in run.model.modalities:
        assert all(torch.allclose(p.grad, torch.full_like(p, k[m])) for p in groups[m]), m
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in groups["fusion"])


def test_ogm_ge_noise_has_the_unmodulated_gradient_std():
    run = fake_run()
    ogm = methods.get("ogm_ge", ge=True)
    torch.manual_seed(1)
    for p in run.model.parameters():
        p.grad = torch.randn_like(p) * 3.0
    weight = run.model.encoders["wifi-csi"].out.weight  # a large weight tensor
    before = weight.grad.clone()
    ogm.modulate(run.model, {"rgb": 1.0, "lidar": 1.0, "mmwave": 1.0, "wifi-csi": 0.0})
    assert weight.grad.std().item() == pytest.approx(before.std().item(), rel=0.05)  # k = 0: the noise alone
    assert not torch.equal(weight.grad, before)


def test_agm_responses_sum_to_the_fused_prediction_and_scale_gradients(fake_batch):
    from poise.methods.agm import scale_grad, shapley_responses

    torch.manual_seed(0)
    model = build_model(fusion="mlp", dim=8)
    features = model.encode(fake_batch(6))
    empty, phi = shapley_responses(model, features)
    assert torch.allclose(empty + sum(phi.values()), model.decode(features), atol=1e-5)
    x = torch.ones(3, requires_grad=True)
    scale_grad(x, 0.25).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), 0.25))


def test_agm_coefficient_moves_the_right_way():
    from poise.methods.agm import coefficients, strengths

    usual = strengths({"rgb": 0.6, "lidar": 0.8, "mmwave": 1.3, "wifi-csi": 1.3})
    assert usual["rgb"] > usual["lidar"] > usual["mmwave"] == usual["wifi-csi"]  # lower loss = stronger
    now = strengths({"rgb": 0.4, "lidar": 0.8, "mmwave": 1.4, "wifi-csi": 1.4})  # rgb pulls further ahead
    k = coefficients(usual, now, alpha=1.0, cap=7.0)
    assert k["rgb"] < 1.0 < k["mmwave"]  # damp the modality stronger than usual, boost the ones weaker than usual
    assert coefficients(usual, usual, 1.0, 7.0) == {m: 1.0 for m in usual}
    assert coefficients({"a": 100.0}, {"a": 0.0}, 1.0, 7.0)["a"] == pytest.approx(__import__("math").exp(7.0))  # capped


def test_gblending_weights_follow_the_overfitting_to_generalisation_ratio():
    from poise.methods.gblending import blend_weights

    before = {"rgb": (60.0, 70.0), "wifi-csi": (200.0, 210.0), "fused": (50.0, 60.0)}
    # rgb: val -10, overfitting +2 -> 10/(4+1); wifi: val -2, overfitting 0 -> 2/1; fused got worse -> 0
    after = {"rgb": (48.0, 60.0), "wifi-csi": (198.0, 208.0), "fused": (40.0, 61.0)}
    w = blend_weights(before, after, eps_mm=1.0)
    assert w["fused"] == 0.0 and sum(w.values()) == pytest.approx(1.0)
    assert w["rgb"] / w["wifi-csi"] == pytest.approx((10 / 5) / (2 / 1))
    assert blend_weights(before, before, eps_mm=1.0) is None  # nothing generalised better: keep the old weights


def test_gblending_loss_blends_the_branches_with_its_weights(fake_batch):
    from poise.metrics import mpjpe_loss

    torch.manual_seed(0)
    model = build_model(dim=8)
    batch = fake_batch(5)
    batch["gt"] = torch.randn(5, 17, 3)
    features = model.encode(batch)
    pred = model.decode(features)
    step = SimpleNamespace(batch=batch, features=features, pred=pred, loss=mpjpe_loss(pred, batch["gt"]))
    method = methods.get("gblending")
    method.build_heads(model, seed=0, lr=1e-3)
    method.weights = {"rgb": 0.1, "lidar": 0.2, "mmwave": 0.0, "wifi-csi": 0.3, "fused": 0.4}
    total = step.loss + method.extra_loss(SimpleNamespace(model=model), step)
    own = {m: model.mean_pose + method.heads[m](features[m]).view(-1, 17, 3) for m in model.modalities}
    expected = 0.4 * step.loss + sum(method.weights[m] * mpjpe_loss(own[m], batch["gt"]) for m in model.modalities)
    assert torch.allclose(total, expected)
    total.backward()  # the unimodal losses train each encoder and its own head, never the shared head alone
    assert method.heads["wifi-csi"].weight.grad.abs().sum() > 0 and not method.heads["mmwave"].weight.grad.any()  # weight 0


def test_modality_resample_duplicates_the_weak_modalities_only():
    from poise.methods.modality_resample import duplicate_counts

    counts = duplicate_counts({"a": 30.0, "b": 10.0}, n=1000, alpha=1.0)  # M = 2: the original's count
    gap_a, gap_b = 1 - 30 * 2 / 51, 1 - 10 * 2 / 51
    assert counts == {"a": 0, "b": int(2 / 3 * (gap_b - gap_a) * 1000)}
    four = duplicate_counts(SCORES, n=900, alpha=1.0)
    assert four["rgb"] == 0 and four["wifi-csi"] > four["mmwave"] > four["lidar"] > 0
    assert duplicate_counts(SCORES, n=900, alpha=0.0) == {m: 0 for m in SCORES}


def test_modality_resample_trains_its_duplicates_on_one_modality(fake_batch):
    torch.manual_seed(0)
    run = fake_run(epoch=3)
    run.train = [None] * 4  # only len() is used
    run.config.seed = 0
    method = methods.get("modality_resample", warmup=1)
    samples = method.epoch_samples(run)
    assert (samples[:4] == range(4)).all() and len(samples) > 4  # every frame once, then the duplicates
    kept = {run.model.modalities[i] for i in method.only[4:]}
    assert "rgb" not in kept and kept  # the best valued modality is never the one kept alone
    batch = fake_batch(len(samples))
    batch["sample"] = torch.arange(len(samples))
    features = run.model.encode(batch)
    pred = method.predict(run, batch, features)
    assert torch.equal(pred[:4], run.model.decode(features)[:4])
    for row in range(4, len(samples)):
        m = run.model.modalities[method.only[row]]
        alone = run.model.decode({k: f[row:row + 1] for k, f in features.items()}, (m,))
        assert torch.allclose(pred[row:row + 1], alone, atol=1e-6)
