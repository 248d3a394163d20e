"""AWC and adaptive re-learning against their formulas (papers 000 and 001)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from poise.objective import POSE

from poise import methods
from poise.methods.groups import split_groups
from poise.metrics import mpjpe_loss
from poise.models.pose import build_model

SCORES = {"rgb": 33.0, "lidar": 29.0, "mmwave": 3.0, "wifi-csi": 2.5}


class FakeData:
    """A training set of ``n`` random frames, with ``batch(rows)`` as ``MMFiDataset`` has it."""

    def __init__(self, make, n: int = 12):
        self.full = make(n)
        self.full["gt"] = torch.randn(n, 17, 3, generator=torch.Generator().manual_seed(1)) * 0.2

    def __len__(self):
        return len(self.full["gt"])

    def batch(self, rows):
        rows = torch.as_tensor(rows, dtype=torch.long)
        return {k: v[rows] for k, v in self.full.items()}


def fake_run(epoch=0, epochs=10, scores=SCORES, data=None):
    torch.manual_seed(0)
    model = build_model(dim=8)
    n = len(data) if data is not None else 4
    return SimpleNamespace(model=model, epoch=epoch, config=SimpleNamespace(epochs=epochs, seed=0), objective=POSE,
                           scores=lambda: dict(scores), train=data, train_rows=np.arange(n), record={}, epoch_offset=0,
                           assess={"gt": torch.zeros(n, 17, 3)} if data is None else data.batch(np.arange(n)))


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


def awc_after_epoch_0(fake_batch, epochs=10, **params):
    run = fake_run(epochs=epochs, data=FakeData(fake_batch))
    awc = methods.get("awc", **params)
    awc.setup(run)
    awc.on_epoch_start(run)
    assert awc.extra_loss(run, None) is None  # epoch 0 is never penalised
    awc.on_epoch_end(run)
    return run, awc


def test_awc_fisher_is_the_per_sample_fisher_at_the_end_of_epoch_0(fake_batch):
    """F = mean over the trained-on frames of each sample's squared gradient (001 Eq. 7), one backward per
    sample here, against the vectorised estimator AWC uses; the anchor is the encoders' parameters then."""
    run, awc = awc_after_epoch_0(fake_batch, fisher_frames=0)
    model, data = run.model, run.train
    model.eval()
    manual = {m: [torch.zeros_like(p) for p in model.modality_parameters()[m]] for m in model.modalities}
    for i in range(len(data)):
        model.zero_grad()
        one = data.batch([i])
        mpjpe_loss(model(one), one["gt"]).backward()
        for m in model.modalities:
            for f, p in zip(manual[m], model.modality_parameters()[m]):
                f += p.grad.square() / len(data)
    for m in model.modalities:
        for f, g in zip(awc.fisher[m], manual[m]):
            torch.testing.assert_close(f, g, rtol=1e-4, atol=1e-10)
        assert all(torch.equal(a, p) for a, p in zip(awc.anchor[m], model.modality_parameters()[m]))
    assert set(awc.fisher) == set(model.modalities)  # fusion and head are never constrained
    assert awc.fisher_sums == pytest.approx({m: float(sum(f.sum() for f in manual[m])) for m in manual}, rel=1e-4)


def test_awc_penalises_exactly_its_window(fake_batch):
    run, awc = awc_after_epoch_0(fake_batch, epochs=10)
    assert awc.K == 4  # 40 % of 10 epochs: epochs 1..4 (0-based) are penalised
    active = []
    for epoch in range(10):
        run.epoch = epoch
        shift(run.model, "rgb", 0.01)
        awc.on_epoch_start(run)
        active.append(awc.extra_loss(run, None) is not None)
    assert active == [False, True, True, True, True, False, False, False, False, False]
    for epochs, window in ((1, 0), (3, 3), (5, 5)):
        with pytest.raises(ValueError, match="would never act"):
            methods.get("awc", window=window).setup(fake_run(epochs=epochs))
    methods.get("awc", window=2).setup(fake_run(epochs=3))  # epochs 1 and 2 penalised: fine
    with pytest.raises(ValueError, match="joint training"):
        methods.get("awc", alpha_s=0.0, alpha_i=0.0)


def test_awc_weighs_the_superior_group_more_and_matches_the_formula(fake_batch):
    run, awc = awc_after_epoch_0(fake_batch, alpha_s=2.0, alpha_i=1.0)
    assert (awc.superior, awc.inferior) == (["rgb", "lidar"], ["mmwave", "wifi-csi"])
    run.epoch = 1
    assert awc.extra_loss(run, None).item() == 0.0  # theta == theta*
    F = {m: float(sum(f.sum() for f in awc.fisher[m])) for m in awc.fisher}
    shift(run.model, "rgb", 0.1)
    assert awc.penalty().item() == pytest.approx(2.0 * F["rgb"] * 0.01 / 2, rel=1e-4)
    shift(run.model, "rgb", -0.1)
    shift(run.model, "mmwave", 0.1)
    assert awc.penalty().item() == pytest.approx(1.0 * F["mmwave"] * 0.01 / 2, rel=1e-4)


def test_awc_records_each_modalitys_share_of_the_penalty(fake_batch):
    run, awc = awc_after_epoch_0(fake_batch)
    run.epoch = 1
    awc.on_epoch_start(run)
    shift(run.model, "rgb", 0.1)
    shift(run.model, "wifi-csi", 0.1)
    terms = {m: float(t.detach()) for m, t in awc.terms().items()}
    for _ in range(3):
        awc.extra_loss(run, None)
    row = awc.epoch_metrics(run)
    total = sum(terms.values())
    assert row["awc_active"] == 1 and row["awc_penalty"] == pytest.approx(total, rel=1e-5)
    for m in run.model.modalities:
        assert row[f"awc_share_{m}"] == pytest.approx(terms[m] / total, rel=1e-5)
    assert row["awc_share_lidar"] == 0.0 and row["awc_share_mmwave"] == 0.0  # they did not move
    assert row["awc_superior_rgb"] == 1 and row["awc_superior_wifi-csi"] == 0
    assert sum(row[f"awc_share_{m}"] for m in run.model.modalities) == pytest.approx(1.0)


def test_awc_force_ratio_is_the_penalty_gradient_against_the_rest(fake_batch):
    """awc_force_<m>: ||alpha F (theta - theta*)|| / ||grad - alpha F (theta - theta*)|| over m's parameters,
    averaged over the epoch's steps; an encoder that has not moved feels no pull."""
    run, awc = awc_after_epoch_0(fake_batch, alpha_s=2.0, alpha_i=1.0)
    run.epoch = 1
    awc.on_epoch_start(run)
    shift(run.model, "rgb", 0.1)
    pull = torch.sqrt(sum((2.0 * f * 0.1).square().sum() for f in awc.fisher["rgb"]))
    ratios = []
    for value in (0.5, 2.0):  # two steps: the rest of the gradient is the loss's, here set by hand
        set_grads(run.model, value)
        for p, f in zip(awc.params_of["rgb"], awc.fisher["rgb"]):
            p.grad += 2.0 * f * 0.1  # the penalty's share of the gradient, as backward would add it
        awc.after_backward(run, None)
        n = sum(p.numel() for p in awc.params_of["rgb"])
        ratios.append(float(pull / (value * n ** 0.5)))
    row = awc.epoch_metrics(run)
    assert row["awc_force_rgb"] == pytest.approx(np.mean(ratios), rel=1e-4)
    assert row["awc_force_lidar"] == 0.0 and row["awc_force_mmwave"] == 0.0  # not moved: no pull
    run.epoch = 0  # outside the window nothing is recorded
    awc.on_epoch_start(run)
    awc.after_backward(run, None)
    assert awc.epoch_metrics(run)["awc_force_rgb"] == 0.0


def test_awc_works_in_a_loop_that_does_not_call_on_epoch_start(fake_batch):
    """A user's own loop may call only the hooks it needs (issue 31 found a KeyError here)."""
    run, awc = awc_after_epoch_0(fake_batch)
    awc = methods.get("awc")
    awc.setup(run)
    awc.estimate(run)
    run.epoch = 1
    shift(run.model, "rgb", 0.1)
    assert awc.extra_loss(run, None) > 0
    set_grads(run.model, 1.0)
    awc.after_backward(run, None)
    row = awc.epoch_metrics(run)
    assert row["awc_share_rgb"] == pytest.approx(1.0) and row["awc_force_rgb"] > 0


def test_awc_normalised_fisher_gives_every_encoder_the_same_mean(fake_batch):
    _, raw = awc_after_epoch_0(fake_batch)
    _, norm = awc_after_epoch_0(fake_batch, normalise=True)
    means = {m: float(sum(f.sum() for f in fs) / sum(f.numel() for f in fs)) for m, fs in norm.fisher.items()}
    counts = {m: sum(f.numel() for f in fs) for m, fs in raw.fisher.items()}
    overall = sum(raw.fisher_sums.values()) / sum(counts.values())
    assert means == pytest.approx({m: overall for m in means}, rel=1e-4)
    raw_means = {m: raw.fisher_sums[m] / counts[m] for m in counts}
    assert max(raw_means.values()) / min(raw_means.values()) > 1.5  # the raw Fisher differs between encoders
    for m in raw.fisher:  # within an encoder, the ranking of the parameters is kept
        ratio = [f_n / f_r for f_n, f_r in zip(norm.fisher[m], raw.fisher[m]) if (f_r > 0).all()]
        assert all(torch.allclose(r, r.flatten()[0].expand_as(r), rtol=1e-4) for r in ratio)
    assert norm.fisher_sums == raw.fisher_sums  # the record keeps the measured (raw) Fisher


def test_awc_groups_can_come_from_another_profit(fake_batch):
    run, awc = awc_after_epoch_0(fake_batch, profit="neg_mpjpe")
    assert set(awc.superior) | set(awc.inferior) == set(run.model.modalities) and awc.superior
    with pytest.raises(ValueError, match="profit must be one of"):
        methods.get("awc", profit="accuracy")


def test_relearn_interpolates_exactly_per_group_once():
    run = fake_run(epoch=5)  # Algorithm 1: re-learn after training epoch n == r (0-based), r = 5 here
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
    for run.epoch in (4, 6):
        snapshot = [p.detach().clone() for p in run.model.parameters()]
        rl.on_epoch_end(run)
        assert all(torch.equal(p, q) for p, q in zip(run.model.parameters(), snapshot))  # only at epoch r
    rl = methods.get("relearn")
    rl.setup(fake_run(epochs=50))
    assert rl.at == 20  # 001 Sec. 4.1: r = 20 of 50
    with pytest.raises(ValueError, match="relearn_epoch"):
        methods.get("relearn", relearn_epoch=9).setup(fake_run(epochs=10))  # nothing left to re-learn in
    assert [methods.get("relearn").epoch_for(n) for n in (2, 3, 5)] == [0, 1, 2]  # 40 %, leaving an epoch after
    with pytest.raises(ValueError, match="--relearn relearn_epoch=r"):  # the hint for poise continual too
        methods.get("relearn", relearn_epoch=2).setup(fake_run(epochs=3))
    with pytest.raises(ValueError, match="at least 2 epochs"):
        methods.get("relearn").setup(fake_run(epochs=1))


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
    from poise.methods.agm import scale_grad
    from poise.methods.responses import shapley_responses

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
    from poise.methods.responses import UnimodalHeads

    method.heads = UnimodalHeads(model, seed=0)
    method.weights = {"rgb": 0.1, "lidar": 0.2, "mmwave": 0.0, "wifi-csi": 0.3, "fused": 0.4}
    run = SimpleNamespace(model=model, objective=POSE)
    total = method.pose_loss_weight(run) * step.loss + method.extra_loss(run, step)  # the loop's objective
    own = {m: model.mean_pose + method.heads[m](features[m]).view(-1, 17, 3) for m in model.modalities}
    expected = 0.4 * step.loss + sum(method.weights[m] * mpjpe_loss(own[m], batch["gt"]) for m in model.modalities)
    assert torch.allclose(total, expected)
    total.backward()  # the unimodal losses train each encoder and its own head, never the shared head alone
    assert method.heads["wifi-csi"].weight.grad.abs().sum() > 0 and not method.heads["mmwave"].weight.grad.any()  # weight 0


def test_modality_resample_duplicates_the_weak_modalities_only():
    from poise.methods.modality_resample import duplicate_counts

    counts = duplicate_counts({"a": 30.0, "b": 10.0}, n=1000, alpha=1.0)  # M = 2: the original's count with
    assert counts == {"a": 0, "b": int(2 / 3 * (30 - 10) / 51 * 1000)}  # the unimodal-profit gap as a fraction
    four = duplicate_counts(SCORES, n=900, alpha=1.0)
    assert four["rgb"] == 0 and four["wifi-csi"] > four["mmwave"] > four["lidar"] > 0
    assert duplicate_counts(SCORES, n=900, alpha=0.0) == {m: 0 for m in SCORES}


def test_modality_resample_never_adds_more_than_the_originals_bound():
    """The original adds at most alpha * 2/3 * N duplicates; so must we, whatever the scores (negative, above
    51 / M, or the bench's: RGB 27.8, LiDAR 14.2, mmWave 2.3, WiFi 6.0 used to add 1,060 per 1,000 frames)."""
    from poise.methods.modality_resample import duplicate_counts

    rng = np.random.default_rng(0)
    cases = [{"rgb": 27.8, "lidar": 14.2, "mmwave": 2.3, "wifi-csi": 6.0}, {"a": 51.0, "b": -51.0},
             {"a": 60.0, "b": 0.0, "c": -5.0}]
    cases += [dict(zip("abcd", rng.uniform(-60, 60, 4))) for _ in range(200)]
    for scores in cases:
        for alpha in (0.5, 1.0, 2.0):
            assert sum(duplicate_counts(scores, n=1000, alpha=alpha).values()) <= alpha * 2 / 3 * 1000, scores
    assert sum(duplicate_counts({"a": 51.0, "b": -51.0}, n=1000, alpha=1.0).values()) == 666  # the bound is reached


def test_modality_resample_trains_its_duplicates_on_one_modality(fake_batch):
    torch.manual_seed(0)
    run = fake_run(epoch=3)
    run.train_rows = np.delete(np.arange(64), [4, 6, 7])  # rows 4, 6, 7 are held out
    n = len(run.train_rows)
    method = methods.get("modality_resample", warmup=1)
    samples = method.epoch_samples(run)
    assert (samples[:n] == run.train_rows).all() and len(samples) > n  # every frame once, then the duplicates
    assert set(samples[n:]) <= set(run.train_rows)  # duplicates are drawn from the frames trained on
    kept = {run.model.modalities[i] for i in method.only[n:]}
    assert "rgb" not in kept and kept  # the best valued modality is never the one kept alone
    batch = fake_batch(len(samples))
    batch["sample"] = torch.arange(len(samples))
    features = run.model.encode(batch)
    pred = method.predict(run, batch, features)
    assert torch.equal(pred[:n], run.model.decode(features)[:n])
    for row in range(n, len(samples)):
        m = run.model.modalities[method.only[row]]
        alone = run.model.decode({k: f[row:row + 1] for k, f in features.items()}, (m,))
        assert torch.allclose(pred[row:row + 1], alone, atol=1e-6)
