"""Paper 002-004's balancing methods (ARL, DGL, ARM, LSI) and CGGM on their defining properties, and the two pieces
they share: rescaled unimodal predictions and Gaussian information."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from poise.objective import POSE

from poise import methods
from poise.contrib.information import gaussian_cmi, gaussian_mi
from poise.methods import arl, arm, cggm, lsi
from poise.methods.responses import unimodal_predictions
from poise.metrics import mpjpe_loss
from poise.models.pose import build_model
from poise.epoch import Step

ALL = ("rgb", "lidar", "mmwave", "wifi-csi")


def model_and_batch(fake_batch, fusion="concat", b=16, seed=0):
    torch.manual_seed(seed)
    model = build_model(fusion=fusion, dim=8)
    batch = fake_batch(b)
    batch["gt"] = torch.randn(b, 17, 3, generator=torch.Generator().manual_seed(2)) * 0.2
    return model, batch


def fake_run(model, epoch=5, epochs=10):
    return SimpleNamespace(model=model, epoch=epoch, config=SimpleNamespace(epochs=epochs, seed=0), objective=POSE)


def step_of(model, batch, method=None, run=None):
    features = model.encode(batch)
    pred = (method.predict(run, batch, features) if method is not None else None)
    pred = model.decode(features) if pred is None else pred
    return Step(batch, features, pred, mpjpe_loss(pred, batch["gt"]))


def grads(model, group):
    return [None if p.grad is None else p.grad.clone() for p in model.modality_parameters()[group]]


# --- the shared pieces -----------------------------------------------------------------------------------

def test_rescaled_unimodal_predictions_average_to_the_fused_one_under_concat(fake_batch):
    model, batch = model_and_batch(fake_batch)
    features = model.encode(batch)
    uni = unimodal_predictions(model, features)
    assert torch.allclose(sum(uni.values()) / len(uni), model.decode(features), atol=1e-6)
    plain = {m: model.decode(features, (m,)) for m in model.modalities}  # zero-padding alone does not
    assert not torch.allclose(sum(plain.values()) / len(plain), model.decode(features), atol=1e-4)


def test_gaussian_information_on_known_cases():
    g = torch.Generator().manual_seed(0)
    n, rho = 20000, 0.8
    x = torch.randn(n, 4, generator=g)
    y = rho * x + math.sqrt(1 - rho ** 2) * torch.randn(n, 4, generator=g)
    assert gaussian_mi(x, y) == pytest.approx(4 * -0.5 * math.log(1 - rho ** 2), rel=0.05)
    assert gaussian_mi(x, torch.randn(n, 4, generator=g)) < 0.01  # independent
    z = torch.randn(n, 4, generator=g)
    a, b = z + 0.5 * torch.randn(n, 4, generator=g), z + 0.5 * torch.randn(n, 4, generator=g)
    assert gaussian_mi(a, b) > 1.0 and gaussian_cmi(a, b, [z]) < 0.01  # dependent only through z
    c = 0.5 * z + torch.randn(n, 4, generator=g)  # y = x + noise with an unrelated given: CMI = MI
    assert gaussian_cmi(x, y, [c]) == pytest.approx(float(gaussian_mi(x, y)), rel=0.05)  # 0-d tensors: float() reads
    assert gaussian_mi(torch.ones(n, 4), y) == 0.0  # a collapsed (constant) prediction carries nothing


# --- ARL -------------------------------------------------------------------------------------------------

def test_arl_coefficients_follow_inverse_variance_against_dependence():
    equal = {m: 1.0 for m in ALL}
    k = arl.coefficients(equal, equal, 1.0)
    assert all(v == pytest.approx(0.25) for v in k.values())
    k = arl.coefficients({**equal, "rgb": 0.5}, equal, 1.0)  # rgb more precise, equally used
    assert k["rgb"] == max(k.values()) and k["rgb"] > k["lidar"]
    k = arl.coefficients(equal, {**equal, "wifi-csi": 0.5}, 1.0)  # wifi-csi under-used for its precision
    assert k["wifi-csi"] == max(k.values())
    assert arl.coefficients(equal, {**equal, "lidar": 0.5}, 1.0) != arl.coefficients(equal, {**equal, "rgb": 0.5}, 1.0)


@pytest.mark.parametrize("heads", ["own", "shared"])
def test_arl_scales_each_encoder_by_one_plus_k_and_leaves_the_fusion(fake_batch, heads):
    model, batch = model_and_batch(fake_batch)
    method = methods.get("arl", heads=heads)
    run = fake_run(model)
    method.setup(run)
    if heads == "shared":
        assert method.modules() == {}  # no extra parameters
    else:
        assert set(method.modules()["arl_heads"]) == set(ALL)
    step = step_of(model, batch)
    (step.loss + method.extra_loss(run, step)).backward()
    plain = {g: grads(model, g) for g in (*ALL, "fusion")}
    own = [p.grad.clone() for p in method.modules()["arl_heads"].parameters()] if heads == "own" else []
    method.after_backward(run, step)
    assert all(torch.equal(a, p.grad) for a, p in zip(own, method.modules().get("arl_heads", []).parameters()
                                                       if heads == "own" else []))
    k = method.last
    assert len(set(round(float(v), 9) for v in k.values())) > 1  # asymmetric, not a constant factor
    for m in ALL:
        for got, want in zip(grads(model, m), plain[m]):
            assert torch.allclose(got, (1 + k[m]) * want)
    for got, want in zip(grads(model, "fusion"), plain["fusion"]):
        assert torch.equal(got, want)


def test_arl_multipliers_follow_the_statistics_and_wait_for_the_warmup(fake_batch):
    model, batch = model_and_batch(fake_batch)
    method = methods.get("arl", momentum=0.0)
    run = fake_run(model, epoch=0)
    method.setup(run)
    step = step_of(model, batch)
    (step.loss + method.extra_loss(run, step)).backward()
    before = grads(model, "rgb")
    method.after_backward(run, step)  # epoch 0 < warmup: no scaling
    assert all(torch.equal(a, b) for a, b in zip(grads(model, "rgb"), before))
    first = dict(method.last)
    with torch.no_grad():  # make RGB's unimodal output useless: its coefficient must change
        for p in model.modality_parameters()["rgb"]:
            p.mul_(0)
    method.extra_loss(fake_run(model), step_of(model, batch))
    assert method.last["rgb"] != pytest.approx(float(first["rgb"]), abs=1e-3)


# --- DGL -------------------------------------------------------------------------------------------------

def dgl_step(fake_batch, alpha, fusion="concat", pose_weight=1.0, heads="shared"):
    model, batch = model_and_batch(fake_batch, fusion=fusion)
    method = methods.get("dgl", alpha=alpha, heads=heads)
    run = fake_run(model)
    method.setup(run)
    step = step_of(model, batch, method, run)
    extra = method.extra_loss(run, step)
    objective = pose_weight * step.loss if extra is None else pose_weight * step.loss + extra
    objective.backward()
    method.after_backward(run, step)
    return model, batch, method


@pytest.mark.parametrize("heads", ["own", "shared"])
def test_dgl_routes_each_loss_to_its_part(fake_batch, heads):
    small, _, _ = dgl_step(fake_batch, 0.5, heads=heads)
    large, batch, method = dgl_step(fake_batch, 5.0, heads=heads)
    for a, b in zip(grads(small, "fusion"), grads(large, "fusion")):  # the unimodal loss never reaches the head
        assert torch.equal(a, b)
    tenfold, _, _ = dgl_step(fake_batch, 5.0, pose_weight=10.0, heads=heads)  # nor the fused loss the encoders
    for m in ALL:
        assert all(torch.equal(a, b) for a, b in zip(grads(large, m), grads(tenfold, m)))
    # the encoders' gradients are alpha * 2/M x those of the unimodal losses with the head frozen
    model, _ = model_and_batch(fake_batch)
    for p in model.modality_parameters()["fusion"]:
        p.requires_grad_(False)
    features = model.encode(batch)
    own = method.modules().get("dgl_heads")
    outputs = unimodal_predictions(model, features) if own is None else own.outputs(model, features)
    loss = sum(mpjpe_loss(y, batch["gt"]) for y in outputs.values())
    (5.0 * 2 / 4 * loss).backward()
    for m in ALL:
        for got, want in zip(grads(large, m), grads(model, m)):
            assert torch.allclose(got, want, atol=1e-7)


def test_dgl_trains_every_fusion_parameter_on_the_plain_fused_prediction(fake_batch):
    model, batch, method = dgl_step(fake_batch, 4.0, fusion="attention")
    assert all(g is not None and g.abs().sum() > 0 for g in grads(model, "fusion"))
    model.zero_grad(set_to_none=True)
    features = model.encode(batch)
    trained = method.predict(fake_run(model), batch, features)
    assert torch.equal(trained, model.decode(features))  # the same numbers as evaluation's decode ...
    trained.sum().backward()  # ... on detached features: nothing reaches an encoder
    assert all(p.grad is None for m in ALL for p in model.modality_parameters()[m])


# --- ARM -------------------------------------------------------------------------------------------------

def test_arm_weights_reinforce_the_weaker_modality_with_product_one():
    w = arm.fusion_weights({"rgb": 4.0, "wifi-csi": 1.0}, max_gain=100)
    assert w == pytest.approx({"rgb": 0.25, "wifi-csi": 4.0})  # the reference's c_other / c_self
    w = arm.fusion_weights({"rgb": 4.0, "lidar": 3.0, "mmwave": 1.0, "wifi-csi": 0.5}, max_gain=100)
    assert math.prod(w.values()) == pytest.approx(1.0)
    assert w["wifi-csi"] > w["mmwave"] > 1 > w["lidar"] > w["rgb"]
    assert max(arm.fusion_weights({"a": 1e3, "b": 1e-3}, max_gain=10).values()) == 10


def test_arm_contribution_uses_the_fused_and_the_others_accuracy():
    c = arm.contributions({"a": 2.0, "b": 1.0}, {"a": 0.5, "b": 0.8}, {"a": 0.9, "b": 0.3}, p_fused=0.95)
    assert c == pytest.approx({"a": 0.95 * 2.0 + 0.3 * 1.5, "b": 0.95 * 1.0 + 0.9 * 0.2})


def test_arm_gains_move_towards_the_weak_modality_and_evaluation_reads_no_labels(fake_batch):
    model, batch = model_and_batch(fake_batch, b=32)
    with torch.no_grad():  # make the pose follow RGB's features: RGB strong, the rest weak
        rgb = model.encode(batch)["rgb"]
        batch["gt"] = model.decode({"rgb": rgb * 4}, ("rgb",)).detach() + 0.01 * torch.randn(32, 17, 3)
    method = methods.get("arm", momentum=0.0)
    run = fake_run(model)
    step = step_of(model, batch)
    step.loss.backward()
    method.after_backward(run, step)
    gain = dict(zip(model.modalities, model.modality_gain.tolist()))
    assert gain["rgb"] < 1 < min(gain["lidar"], gain["mmwave"], gain["wifi-csi"])
    assert not model.modality_gain.requires_grad and "modality_gain" in model.state_dict()
    from poise.runtime import evaluate

    before = model.modality_gain.clone()
    evaluate(model, SimpleNamespace(batch=lambda rows: {k: v[torch.as_tensor(rows)] for k, v in batch.items()},
                                    __len__=lambda: 32), np.arange(32))
    assert torch.equal(model.modality_gain, before)  # evaluation uses the gains, never moves them
    with torch.no_grad():
        out = model(batch)
        half = {k: v[:16] for k, v in batch.items()}
        assert torch.allclose(model(half), out[:16], atol=1e-6)  # a frame's prediction ignores the rest of the batch


def test_a_checkpoint_without_gains_loads_with_gains_of_one():
    model = build_model(dim=8)
    state = {k: v for k, v in model.state_dict().items() if k != "modality_gain"}
    model.modality_gain.fill_(3.0)
    model.load_state_dict(state)
    assert torch.equal(model.modality_gain, torch.ones(4))


# --- LSI -------------------------------------------------------------------------------------------------

def test_lsi_regulariser_is_zero_at_equal_information_and_grows_with_imbalance():
    assert float(lsi.regulariser(torch.full((4,), 0.7))) == pytest.approx(0.0, abs=1e-6)
    assert float(lsi.regulariser(torch.tensor([1.0, 1.0, 1.0, 0.1]))) > float(lsi.regulariser(torch.tensor([1.0, 1.0, 1.0, 0.5]))) > 0
    scores = torch.tensor([2.0, 1.0, 0.5, 0.25])
    assert float(lsi.regulariser(scores, "max_ent")) == pytest.approx(float((1 / scores).norm()))


def test_lsi_gradient_gives_a_neglected_modality_influence(fake_batch):
    model, batch = model_and_batch(fake_batch)
    d = model.dim
    with torch.no_grad():
        model.head.weight[:, 3 * d:] *= 0.05  # the head nearly ignores wifi-csi
    features = {m: z.detach() for m, z in model.encode(batch).items()}

    def scores():
        torch.manual_seed(1)  # the same noise draws every time
        return lsi.information_scores(model, features, n_samples=4)

    start = scores()
    reg = lsi.regulariser(start)
    reg.backward()
    grad = model.head.weight.grad.clone()
    assert grad[:, 3 * d:].abs().sum() > 0 and model.head.bias.grad.abs().max() < 1e-6  # the bias plays no part
    share = lambda s: float(s[3] / s.sum())  # noqa: E731
    moved = {}
    for sign in (-1, 1):
        with torch.no_grad():
            model.head.weight += sign * 1e-2 * grad / grad.norm()
        after = scores().detach()
        moved[sign] = (share(after), float(lsi.regulariser(after)))
        with torch.no_grad():
            model.head.weight -= sign * 1e-2 * grad / grad.norm()
    assert moved[-1][0] > share(start.detach()) > moved[1][0]  # down the gradient wifi-csi gains influence
    assert moved[-1][1] < float(reg.detach()) < moved[1][1]


def test_lsi_scores_do_not_change_with_a_modalitys_feature_scale(fake_batch):
    model, batch = model_and_batch(fake_batch)
    d = model.dim
    features = model.encode(batch)
    torch.manual_seed(3)
    before = lsi.information_scores(model, features, 2)
    with torch.no_grad():
        model.head.weight[:, :d] /= 10  # rgb's head block 10x smaller, its features 10x larger
    features = {**features, "rgb": features["rgb"] * 10}
    torch.manual_seed(3)
    after = lsi.information_scores(model, features, 2)
    assert torch.allclose(before, after, rtol=1e-4)


# --- CGGM ------------------------------------------------------------------------------------------------

def test_cggm_slows_the_modality_whose_unimodal_error_falls_faster():
    before = {"rgb": 100.0, "lidar": 120.0, "mmwave": 150.0, "wifi-csi": 140.0}
    after = {"rgb": 80.0, "lidar": 115.0, "mmwave": 150.0, "wifi-csi": 145.0}  # rgb -20 mm, lidar -5, the rest not
    b = cggm.balancing_terms(before, after)
    assert b == pytest.approx({"rgb": 0.2, "lidar": 0.8, "mmwave": 1.0, "wifi-csi": 1.0})  # (25 - d_m) / 25
    assert sum(b.values()) == pytest.approx(len(b) - 1)
    swapped = cggm.balancing_terms(before, {**after, "rgb": 95.0, "lidar": 100.0})  # now lidar falls faster
    assert swapped["lidar"] < swapped["rgb"] < 1.0
    assert cggm.balancing_terms(before, before) == cggm.balanced(ALL) == {m: 0.75 for m in ALL}  # nobody improved
    assert cggm.balancing_terms(before, {m: v + 1 for m, v in before.items()}) == cggm.balanced(ALL)


def cggm_setup(fake_batch, modalities=ALL, **params):
    torch.manual_seed(0)
    model = build_model(modalities, fusion="concat", dim=8)
    batch = fake_batch(16)
    batch["gt"] = torch.randn(16, 17, 3, generator=torch.Generator().manual_seed(2)) * 0.2
    method = methods.get("cggm", **params)
    run = fake_run(model)
    method.setup(run)
    method.on_epoch_start(run)
    return model, batch, method, run


def test_cggm_scales_each_encoder_by_rho_b_and_leaves_the_fusion_and_heads(fake_batch):
    model, batch, method, run = cggm_setup(fake_batch)
    method.applied = {"rgb": 0.2, "lidar": 0.8, "mmwave": 1.0, "wifi-csi": 0.0}
    step = step_of(model, batch)
    (step.loss + method.extra_loss(run, step)).backward()
    plain = {g: grads(model, g) for g in (*ALL, "fusion")}
    heads = [p.grad.clone() for p in method.modules()["cggm_heads"].parameters()]
    method.after_backward(run, step)
    for m in ALL:
        for got, want in zip(grads(model, m), plain[m]):
            assert torch.allclose(got, method.rho * method.applied[m] * want)
    assert all(torch.equal(a, b) for a, b in zip(grads(model, "fusion"), plain["fusion"]))
    assert all(torch.equal(a, p.grad) for a, p in zip(heads, method.modules()["cggm_heads"].parameters()))


def test_cggm_direction_loss_is_zero_when_the_gradients_align_and_positive_otherwise(fake_batch):
    model, batch, method, run = cggm_setup(fake_batch, modalities=("rgb", "lidar"))
    own = method.heads["rgb"]
    with torch.no_grad():  # the fused head reads rgb exactly as rgb's own head does, and lidar not at all
        model.head.weight.zero_()
        model.head.weight[:, :8] = own.weight
        model.head.bias.copy_(own.bias)
    features = model.encode(batch)
    cos = cggm.gradient_cosines(model, method.heads, features, batch["gt"])[1].detach()
    assert cos[0] == pytest.approx(1.0, abs=1e-5) and cos[1] == pytest.approx(0.0, abs=1e-6)
    assert float(cggm.direction_loss({"rgb": 1.0, "lidar": 0.0}, cos)) == pytest.approx(0.0, abs=1e-6)
    assert float(cggm.direction_loss({"rgb": 0.5, "lidar": 0.5}, cos)) == pytest.approx(0.25, abs=1e-5)
    with torch.no_grad():  # the fused head now reads rgb differently: the gradients part
        model.head.weight[:, :8] = torch.randn(51, 8, generator=torch.Generator().manual_seed(5))
    cos = cggm.gradient_cosines(model, method.heads, features, batch["gt"])[1].detach()
    assert cos[0] < 0.99
    assert float(cggm.direction_loss({"rgb": 1.0, "lidar": 0.0}, cos)) > 0.005


def test_cggm_direction_loss_trains_only_the_fusion_and_head_towards_alignment(fake_batch):
    model, batch, method, run = cggm_setup(fake_batch, lam=0.0)
    step = step_of(model, batch)
    method.extra_loss(run, step).backward()  # the heads' losses alone
    heads = [p.grad.clone() for p in method.heads.parameters()]
    assert all(p.grad is None for m in ALL for p in model.modality_parameters()[m])
    assert all(p.grad is None or not p.grad.any() for p in model.modality_parameters()["fusion"])  # 0 x L_gm
    model.zero_grad(set_to_none=True)
    method.heads.zero_grad(set_to_none=True)
    method.lam = 1.0
    step = step_of(model, batch)
    method.extra_loss(run, step).backward()
    assert all(torch.allclose(a, p.grad) for a, p in zip(heads, method.heads.parameters()))  # L_gm misses them
    assert all(p.grad is None for m in ALL for p in model.modality_parameters()[m])  # and the encoders
    fusion = model.modality_parameters()["fusion"]
    assert all(p.grad is not None for p in fusion) and sum(float(p.grad.abs().sum()) for p in fusion) > 0
    features = {m: f.detach() for m, f in step.features.items()}

    def gm() -> float:
        return float(cggm.direction_loss(method.applied, cggm.gradient_cosines(model, method.heads, features,
                                                                               batch["gt"])[1].detach()))

    before = gm()
    with torch.no_grad():  # a small step on the fusion and head along L_gm's gradient (the heads' loss is not there)
        for p in fusion:
            p -= 1e-3 * p.grad
    assert gm() < before


def test_cggm_refuses_a_single_modality():
    run = fake_run(build_model(("rgb",), dim=8))
    with pytest.raises(Exception, match="two or more modalities"):
        methods.get("cggm").setup(run)


# --- each method in a short training run -----------------------------------------------------------------

def short_run(tiny, tmp_path, method, params=None, epochs=3, **train):
    from poise.config import TrainConfig
    from poise.train import train as fit

    config = TrainConfig(data=str(tiny), split="S3", epochs=epochs, batch_size=64, dim=16, lidar_points=64,
                         mmwave_points=16, assess_frames=128, out=str(tmp_path / "runs"), lr_step=10, method=method,
                         name=f"{method}-{len(list((tmp_path / 'runs').glob('*'))) if (tmp_path / 'runs').exists() else 0}",
                         method_params=params or {}, **train)
    return fit(config, progress=False)


def test_shared_head_arl_and_dgl_do_not_overshoot(tiny, tmp_path):
    """The 439-mm failure of plain zero-padding (fused output = the sum of M pose offsets): with features x M the
    shared-head forms train to a fused error near joint training's, not several times it."""
    baseline = short_run(tiny, tmp_path, "baseline", dict(), optimizer="sgd", lr=0.03).history[-1]["test_mpjpe_mm"]
    for name, params in (("arl", dict(warmup=1, heads="shared")), ("dgl", dict(heads="shared"))):
        history = short_run(tiny, tmp_path, name, params, lr=0.03).history  # the shared head's best lr
        assert history[-1]["train_mpjpe_mm"] < history[0]["train_mpjpe_mm"], name
        assert history[-1]["test_mpjpe_mm"] < 1.5 * baseline, (name, history[-1]["test_mpjpe_mm"], baseline)


def test_each_method_moves_the_statistic_it_targets(tiny, tmp_path):
    history = {name: short_run(tiny, tmp_path, name, params).history
               for name, params in (("arl", dict(warmup=1)), ("arm", {}), ("lsi", dict(delta=1.0)), ("dgl", {}))}
    control = short_run(tiny, tmp_path, "lsi", dict(delta=0.0)).history  # the same scores, not optimised
    for row in history["arl"][1:]:  # after the warm-up: the applied k follow the variance and dependence it logs
        k = {m: row[f"arl_k_{m}"] for m in ALL}
        expected = arl.coefficients({m: row[f"arl_sd_mm_{m}"] ** 2 for m in ALL}, {m: row[f"arl_dep_{m}"] for m in ALL},
                                    arl.ARL().temperature)
        assert max(k.values()) - min(k.values()) > 0.01
        assert max(k, key=k.get) == max(expected, key=expected.get)
        assert min(k, key=k.get) == min(expected, key=expected.get)
    arm_last = history["arm"][-1]  # ARM reinforces the least informative modality most, the most informative least
    gains, mi = ({m: arm_last[f"arm_{what}_{m}"] for m in ALL} for what in ("gain", "mi"))
    assert max(gains.values()) > 1.05 and min(gains.values()) < 0.95
    assert max(gains, key=gains.get) == min(mi, key=mi.get)
    # the weights follow c_m (MI with the shared information, weighted by each branch's fit), not MI alone: the
    # least reinforced is one of the two most informative (on generator v5's tiny data RGB and WiFi end within
    # 0.3 nats of each other, 10.0 and 9.7)
    assert min(gains, key=gains.get) in sorted(mi, key=mi.get)[-2:]
    spread = lambda row: max(row[f"lsi_share_{m}"] for m in ALL) - min(row[f"lsi_share_{m}"] for m in ALL)  # noqa: E731
    assert spread(history["lsi"][-1]) < spread(control[-1])  # the regulariser moves the shares together
    first, last = history["dgl"][0], history["dgl"][-1]  # every encoder learns from its own unimodal loss
    assert all(last[f"dgl_uni_mm_{m}"] < first[f"dgl_uni_mm_{m}"] for m in ALL)


def test_cggm_applies_b_from_the_last_two_epochs_unimodal_errors(tiny, tmp_path):
    history = short_run(tiny, tmp_path, "cggm", epochs=4).history
    rho = cggm.CGGM().rho
    for row in history[:2]:  # no two epoch means yet: balanced
        assert all(row[f"cggm_k_{m}"] == pytest.approx(rho * 0.75) for m in ALL)
    for before, last, row in zip(history, history[1:], history[2:]):
        expected = cggm.balancing_terms(*({m: r[f"cggm_uni_mm_{m}"] for m in ALL} for r in (before, last)))
        assert {m: row[f"cggm_k_{m}"] for m in ALL} == pytest.approx({m: rho * b for m, b in expected.items()})
    k = {m: history[2][f"cggm_k_{m}"] for m in ALL}
    assert max(k.values()) - min(k.values()) > 0.05  # the heads learn at different speeds
    assert all(history[-1][f"cggm_uni_mm_{m}"] < history[0][f"cggm_uni_mm_{m}"] for m in ALL)
    assert all(-1 <= history[-1][f"cggm_cos_{m}"] <= 1 for m in ALL) and history[-1]["cggm_gm"] >= 0


def test_arm_refuses_batches_too_small_for_its_estimate():
    run = SimpleNamespace(model=build_model(dim=8), config=SimpleNamespace(batch_size=5, epochs=3, seed=0),
                          objective=POSE)
    with pytest.raises(ValueError, match="at least 6 frames per batch.*'batch_size'"):
        methods.get("arm").setup(run)
