"""Paper-size encoders: shapes and gradients, the TCN's receptive field, the kNN and its padding, the vector
attention against a dense reference, permutation invariance and empty clouds."""

import pytest
import torch

from poise.models.lite import encode
from poise.models.paper import (CSITransformer, PointTransformer, PointTransformerLayer, TemporalConvNet, knn,
                                paper_encoder)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster when another process holds the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(modality: str, b: int = 4, window: int = 0, kinds: int = 1) -> dict:
    g = torch.Generator().manual_seed(0)
    if modality == "rgb":
        shape = (b, 17, 2) if window == 0 else (b, 2 * window + 1, 17, 2)
        return {"rgb": torch.rand(shape, generator=g) * 480}
    if modality in ("lidar", "mmwave"):
        n, c = (24, 3) if modality == "lidar" else (10, 5)
        mask = torch.rand(b, n, generator=g) > 0.3
        mask[0] = True
        mask[1, :3], mask[1, 3:] = True, False  # fewer real points than k
        mask[2] = False  # an empty cloud
        return {modality: torch.randn(b, n, c, generator=g), f"{modality}_mask": mask}
    return {"wifi-csi": torch.rand(b, kinds, 3, 114, 10, generator=g)}


@pytest.mark.parametrize("modality, window, phase", [
    ("rgb", 0, False), ("rgb", 1, False), ("rgb", 4, False), ("lidar", 0, False), ("mmwave", 0, False),
    ("wifi-csi", 0, False), ("wifi-csi", 0, True)])
def test_shape_finite_and_every_parameter_gets_a_gradient(modality, window, phase):
    torch.manual_seed(0)
    encoder = paper_encoder(modality, dim=16, rgb_window=window, csi_phase=phase).train()
    out = encode(encoder, modality, _batch(modality, window=window, kinds=2 if phase else 1))
    assert out.shape == (4, 16)
    assert torch.isfinite(out).all()
    out.sum().backward()
    missing = [name for name, p in encoder.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters())


@pytest.mark.parametrize("window", [1, 3, 9, 27])
def test_tcn_receptive_field_is_the_window_and_sees_its_ends(window):
    torch.manual_seed(0)
    net = TemporalConvNet(window=window, dim=8, channels=16).eval()
    assert net.receptive_field == window
    if window == 1:
        assert all(m.kernel_size == (1,) for m in net.modules() if isinstance(m, torch.nn.Conv1d))
    x = torch.rand(2, window, 17, 2) * 480
    out = net(x)
    assert out.shape == (2, 8)
    for frame in (0, window - 1):
        changed = x.clone()
        changed[:, frame] += 40.0
        assert not torch.allclose(net(changed), out, atol=1e-6), frame
    if window == 1:  # (B, 17, 2) is the same as a 1-frame window
        assert torch.allclose(net(x[:, 0]), out)
    # the true receptive field: on T + 2 frames, output frame 0 sees input frames 0..T-1 and not frame T
    longer = torch.rand(2, window + 2, 17, 2) * 480
    features = net.temporal_features(longer)
    assert features.shape == (2, 16, 3)
    for frame, seen in ((0, True), (window - 1, True), (window, False)):
        changed = longer.clone()
        changed[:, frame] += 40.0
        assert torch.allclose(net.temporal_features(changed)[:, :, 0], features[:, :, 0]) != seen, frame


def test_tcn_residuals_are_the_centre_frames():
    """With every block's body switched off (last BN scale and shift 0), a block passes on the centre slice."""
    torch.manual_seed(0)
    net = TemporalConvNet(window=27, dim=8, channels=16).eval()
    for block in net.blocks:
        torch.nn.init.zeros_(block.body[5].weight)
        torch.nn.init.zeros_(block.body[5].bias)
    x = torch.rand(2, 29, 17, 2) * 480
    expanded = net.expand(((x - net.centre) / net.centre[0]).flatten(2).transpose(1, 2))  # 27 frames
    assert torch.allclose(net.temporal_features(x), expanded[:, :, 12:15])


def test_tcn_window_not_a_power_of_three_uses_every_frame():
    torch.manual_seed(0)
    net = TemporalConvNet(window=5, dim=8, channels=16).eval()
    assert net.receptive_field == 3
    x = torch.rand(2, 5, 17, 2) * 480
    out = net(x)
    for frame in (0, 4):
        changed = x.clone()
        changed[:, frame] += 40.0
        assert not torch.allclose(net(changed), out, atol=1e-6)
    with pytest.raises(ValueError, match="receptive field"):
        TemporalConvNet(window=9, dim=8, channels=16)(x)


def _cloud(b=3, n=15, real=(15, 9, 2), seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(b, n, 3, generator=g, dtype=dtype)
    mask = torch.zeros(b, n, dtype=torch.bool)
    for row, r in enumerate(real):
        mask[row, torch.randperm(n, generator=g)[:r]] = True
    # padded points sit right next to real ones, where a kNN that ignored the mask would pick them
    for row in range(b):
        real_idx = mask[row].nonzero().flatten()
        for j in (~mask[row]).nonzero().flatten():
            if len(real_idx):
                pos[row, j] = pos[row, real_idx[j % len(real_idx)]] + 1e-3
    return pos, mask


def _brute_force_neighbours(pos, mask, b, i, k):
    d = [(float(((pos[b, i] - pos[b, j]) ** 2).sum()), j) for j in range(pos.shape[1]) if mask[b, j]]
    return [j for _, j in sorted(d)[:k]]


@pytest.mark.parametrize("k", [1, 4, 15, 40])
def test_knn_matches_brute_force_and_never_picks_padding(k):
    pos, mask = _cloud()
    idx, valid = knn(pos, mask, k)
    assert idx.shape == valid.shape == (3, 15, min(k, 15))
    for b in range(3):
        n_real = int(mask[b].sum())
        for i in mask[b].nonzero().flatten().tolist():
            expected = _brute_force_neighbours(pos, mask, b, i, k)
            assert idx[b, i][valid[b, i]].tolist() == expected  # same points, nearest first
            assert int(valid[b, i].sum()) == min(k, n_real)
            assert mask[b, idx[b, i][valid[b, i]]].all()  # every valid neighbour of a real point is real


def _net(columns=5, k=4):
    torch.manual_seed(0)
    return PointTransformer(columns, dim=8, width=16, blocks=2, k=k).eval()


def test_point_transformer_ignores_padding_values():
    net = _net()
    pos, mask = _cloud()
    points = torch.cat([pos, torch.randn(3, 15, 2)], -1)
    out = net(points, mask)
    changed = points.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), 5) * 1e3
    assert torch.allclose(net(changed, mask), out, atol=1e-6)
    changed[~mask] = float("nan")
    assert torch.allclose(net(changed, mask), out, atol=1e-6)


def test_point_transformer_is_permutation_invariant():
    net = _net()
    pos, mask = _cloud()
    points = torch.cat([pos, torch.randn(3, 15, 2)], -1)
    out = net(points, mask)
    perm = torch.randperm(15, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(net(points[:, perm], mask[:, perm]), out, atol=1e-5)


def test_empty_cloud_is_finite_and_pools_to_zeros():
    net = _net()
    points = torch.randn(2, 15, 5)
    mask = torch.zeros(2, 15, dtype=torch.bool)
    mask[0, :6] = True
    out = net(points, mask)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[1], net.out(torch.zeros(1, 16))[0])
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def _dense_vector_attention(layer, x, pos, mask, b, i, neighbours):
    """y_i by the formula, one neighbour at a time."""
    logits, values = [], []
    for j in neighbours:
        delta = layer.delta(pos[b, i] - pos[b, j])
        logits.append(layer.gamma(layer.phi(x[b, i]) - layer.psi(x[b, j]) + delta))
        values.append(layer.alpha(x[b, j]) + delta)
    weights = torch.softmax(torch.stack(logits), dim=0)  # over neighbours, per channel
    return (weights * torch.stack(values)).sum(0)


@pytest.mark.parametrize("k", [15, 3])
def test_vector_attention_matches_a_dense_reference(k):
    torch.manual_seed(0)
    layer = PointTransformerLayer(6).double()
    pos, mask = _cloud(dtype=torch.float64)
    x = torch.randn(3, 15, 6, dtype=torch.float64)
    idx, valid = knn(pos, mask, k)
    out = layer(x, pos, idx, valid)
    for b in range(3):
        for i in mask[b].nonzero().flatten().tolist():
            neighbours = [j for j in range(15) if mask[b, j]] if k == 15 else _brute_force_neighbours(pos, mask, b, i, k)
            expected = _dense_vector_attention(layer, x, pos, mask, b, i, neighbours)
            assert torch.allclose(out[b, i], expected, atol=1e-10), (b, i)


def test_csi_transformer_phase_channels():
    torch.manual_seed(0)
    for kinds in (1, 2):
        net = CSITransformer(kinds=kinds, dim=8, width=16, layers=1, heads=2).eval()
        out = net(torch.rand(2, kinds, 3, 114, 10))
        assert out.shape == (2, 8) and torch.isfinite(out).all()
    with pytest.raises(RuntimeError):
        CSITransformer(kinds=1, dim=8, width=16, layers=1, heads=2)(torch.rand(2, 2, 3, 114, 10))


def test_unknown_modality_is_named():
    with pytest.raises(ValueError, match="depth.*wifi-csi"):
        paper_encoder("depth")
