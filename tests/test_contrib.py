"""Shapley values and profits: exact on games with known answers, efficient, and never NaN."""

import math

import numpy as np
import pytest
import torch

from poise.contrib.profits import get_profit, neg_mpjpe, neg_mse, pearson
from poise.contrib.shapley import modality_contributions, shapley_exact, shapley_sampled
from poise.models.pose import build_model


def additive_game(a: dict, pair_bonus: float):
    """v(S) = sum of a_i over S, plus ``pair_bonus`` when both 'x' and 'y' are in S. Shapley: a_i (+ bonus/2)."""
    def v(s):
        return sum(a[p] for p in s) + (pair_bonus if {"x", "y"} <= s else 0.0)
    return v


def test_exact_shapley_on_a_known_game():
    a = {"x": 1.0, "y": 2.0, "z": -0.5, "w": 0.25}
    phi = shapley_exact(additive_game(a, 3.0), a)
    assert phi == pytest.approx({"x": 2.5, "y": 3.5, "z": -0.5, "w": 0.25})


def test_efficiency_scores_sum_to_all_minus_none():
    rng = np.random.default_rng(0)
    table = {}

    def v(s):  # an arbitrary game
        return table.setdefault(s, float(rng.normal()))

    players = ("a", "b", "c", "d")
    phi = shapley_exact(v, players)
    assert sum(phi.values()) == pytest.approx(v(frozenset(players)) - v(frozenset()))


def test_sampled_shapley_matches_exact_within_its_standard_error():
    a = {"x": 1.0, "y": 2.0, "z": -0.5, "w": 0.25, "u": 0.0}
    game = additive_game(a, 3.0)
    exact = shapley_exact(game, a)
    mean, se = shapley_sampled(game, a, n_permutations=400, seed=1)
    for p in a:
        assert abs(mean[p] - exact[p]) <= 4 * se[p] + 1e-9
    assert se["x"] > 0 and se["z"] == 0.0  # z's marginal never varies


def test_pearson_is_zero_for_a_constant_prediction_and_never_nan():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(16, 17, 3, generator=g)
    const = torch.ones(16, 17, 3) * 0.3
    assert pearson(y, const) == 0.0
    assert pearson(y, y) == pytest.approx(51.0)
    assert pearson(y, -2 * y + 1) == pytest.approx(-51.0)  # scale and offset do not matter, sign does
    half = y.clone()
    half[:, :8] = 0.0  # 24 constant coordinates
    assert pearson(y, half) == pytest.approx(27.0)
    assert math.isfinite(pearson(torch.zeros(4, 17, 3), torch.zeros(4, 17, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        pearson(y[:1], y[:1])


def test_error_profits_credit_the_mean_pose_while_pearson_does_not():
    """The papers' argument: a collapsed prediction (the mean pose) earns error-based profit, Pearson 0."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(64, 17, 3, generator=g) * 0.1 + torch.tensor([0.0, 0.0, 3.0])
    mean_pose = y.mean(0).expand_as(y)
    far = torch.zeros_like(y)
    assert neg_mse(y, mean_pose) > neg_mse(y, far) and neg_mpjpe(y, mean_pose) > neg_mpjpe(y, far)
    assert pearson(y, mean_pose) == 0.0 == pearson(y, far)


def test_unknown_profit_is_named():
    with pytest.raises(ValueError, match="did you mean 'pearson'"):
        get_profit("pearsn")


class KnownModel:
    """decode returns the sum over present modalities of c_m * signal_m; the ground truth is the sum of signals."""

    modalities = ("rgb", "lidar", "mmwave", "wifi-csi")

    def __init__(self, weights):
        self.weights = weights
        self.calls = 0

    def decode(self, features, present):
        self.calls += 1
        out = torch.zeros_like(next(iter(features.values())))
        for m in present:
            out = out + self.weights[m] * features[m]
        return out


def test_contributions_rank_modalities_by_what_they_carry():
    g = torch.Generator().manual_seed(0)
    scale = {"rgb": 1.0, "lidar": 0.8, "mmwave": 0.3, "wifi-csi": 0.1}
    features = {m: s * torch.randn(256, 17, 3, generator=g) for m, s in scale.items()}
    gt = sum(features.values())
    model = KnownModel({m: 1.0 for m in scale})
    c = modality_contributions(model, features, gt)
    assert c.exact and model.calls == 16  # one decode per subset, no encoder passes
    order = sorted(c.scores, key=c.scores.get, reverse=True)
    assert order == ["rgb", "lidar", "mmwave", "wifi-csi"]
    assert sum(c.scores.values()) == pytest.approx(c.full - c.values[frozenset()])
    assert c.values[frozenset()] == 0.0  # nothing present: constant output, Pearson 0


def test_contributions_of_a_real_model_from_cached_features(fake_batch):
    torch.manual_seed(0)
    model = build_model(fusion="attention", dim=16).eval()
    batch = fake_batch(12)
    features = model.encode(batch)
    gt = torch.randn(12, 17, 3)
    c = modality_contributions(model, features, gt, profit="neg_mse")
    assert set(c.scores) == set(model.modalities) and all(math.isfinite(v) for v in c.scores.values())
    assert sum(c.scores.values()) == pytest.approx(c.full - c.values[frozenset()], abs=1e-9)
