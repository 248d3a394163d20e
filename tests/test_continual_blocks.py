"""The building blocks of paper 001's Setting 2: task stream, noise, NIS, (adaptive) EWC."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from poise.continual import ewc, nis, noise, tasks
from poise.runtime import gradient_stop
from poise.data import layout
from poise.metrics import mpjpe_loss
from poise.models.pose import build_model



@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only cost here (60x slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -----------------------------------------------------------------------------
# tasks


@pytest.mark.parametrize("protocol, count", [("P1", 7), ("P2", 6)])
def test_tasks_partition_each_protocol(protocol, count):
    stream = tasks.tasks(protocol)
    assert len(stream) == count
    flat = [a for group in stream for a in group]
    assert sorted(flat) == sorted(layout.PROTOCOLS[protocol]) and len(flat) == len(set(flat))
    mapping = tasks.task_of_action(protocol)
    assert set(mapping) == set(layout.PROTOCOLS[protocol])
    assert all(a in stream[t] for a, t in mapping.items())
    assert tasks.tasks(protocol.lower().replace("p", "protocol")) == stream


@pytest.mark.parametrize("protocol", ["P1", "P2"])
def test_left_right_variants_share_a_task(protocol):
    mapping = tasks.task_of_action(protocol)
    names = {layout.ACTION_NAMES[a]: a for a in mapping}
    pairs = 0
    for name, a in names.items():
        if "left" in name:
            partner = names[name.replace("left", "right")]
            assert mapping[a] == mapping[partner], (a, partner)
            pairs += 1
    assert pairs == {"P1": 5, "P2": 4}[protocol]


def test_task_stream_first_tasks_and_errors():
    assert tasks.tasks("P1")[0] == ("A02", "A03")
    assert tasks.tasks("P1")[-1] == ("A19", "A27")
    for bad in ("P3", "P9"):
        with pytest.raises(ValueError, match="P1.*P2"):
            tasks.tasks(bad)


def test_task_indices_follow_the_actions():
    class Seq:
        def __init__(self, action):
            self.action = action

    class Data:
        sequences = [Seq("A19"), Seq("A02"), Seq("A27"), Seq("A03")]
        seq = np.array([0, 0, 1, 1, 1, 2, 3])

        def __len__(self):
            return len(self.seq)

        def sequence_of(self, idx):
            return self.seq[idx]

    groups = tasks.task_indices(Data(), "P1")
    assert len(groups) == 7
    assert groups[0].tolist() == [2, 3, 4, 6] and groups[6].tolist() == [0, 1, 5]
    assert all(len(g) == 0 for g in groups[1:6])


# -----------------------------------------------------------------------------
# noise


class FakeData:
    """``MMFiDataset``-shaped data whose content is a function of the index: 3 sequences of 80 frames."""

    N_SEQ, N_FRAMES, LIDAR, MMWAVE = 3, 80, 16, 8

    def __init__(self):
        self.seq = np.repeat(np.arange(self.N_SEQ), self.N_FRAMES)
        self.frame = np.tile(np.arange(self.N_FRAMES), self.N_SEQ)
        self.sequences = [SimpleNamespace(action=a) for a in ("A02", "A02", "A03")]  # two actions, like a task

    def __len__(self):
        return len(self.seq)

    def poses(self, idx):
        return self.batch(idx)["gt"].double().numpy()

    def sequence_of(self, idx):
        return self.seq[np.asarray(idx, dtype=np.int64)]

    def batch(self, idx):
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        rows = {k: [] for k in ("gt", "rgb", "lidar", "lidar_mask", "mmwave", "mmwave_mask", "wifi-csi")}
        for i in idx.tolist():
            g = np.random.default_rng(1000 + i)
            rows["gt"].append(g.normal([0, 0, 3], 0.3, (17, 3)))
            rows["rgb"].append(g.uniform(100, 400, (17, 2)))
            n_lidar = 5 + i % 12
            lidar = np.zeros((self.LIDAR, 3))
            lidar[:n_lidar] = g.normal([0, 0, 3], 0.5, (n_lidar, 3))
            rows["lidar"].append(lidar)
            rows["lidar_mask"].append(np.arange(self.LIDAR) < n_lidar)
            n_mm = 0 if i % 5 == 0 else 1 + i % self.MMWAVE  # every fifth frame empty
            mm = np.zeros((self.MMWAVE, 5))
            mm[:n_mm] = np.column_stack([g.normal([0, 0, 3], 0.5, (n_mm, 3)), g.normal(0, 1, n_mm),
                                         g.uniform(5, 30, n_mm)])
            rows["mmwave"].append(mm)
            rows["mmwave_mask"].append(np.arange(self.MMWAVE) < n_mm)
            amp = g.random((3, 114, 10))
            rows["wifi-csi"].append(((amp - amp.min()) / (amp.max() - amp.min()))[None])
        out = {k: torch.from_numpy(np.stack(v)).to(torch.bool if k.endswith("mask") else torch.float32)
               for k, v in rows.items()}
        out.update(frame=torch.from_numpy(self.frame[idx]), index=torch.from_numpy(idx),
                   action=["A02"] * len(idx))
        return out


@pytest.fixture(scope="module")
def data():
    return FakeData()


def view(data, kind, modality, ratio=0.4, seed=3, **kwargs):
    return noise.NoisyView(noise.NoiseSpec(kind, modality, ratio, seed), np.arange(len(data)), data, **kwargs)


@pytest.mark.parametrize("n, ratio", [(10, 0.2), (37, 0.4), (100, 0.4), (7, 0.5), (240, 0.2)])
def test_exactly_round_ratio_n_corrupted(n, ratio):
    v = noise.NoisyView(noise.NoiseSpec("raw", "rgb", ratio, seed=1), np.arange(100, 100 + n)[::-1])
    assert v.corrupted.sum() == round(ratio * n)
    assert v.indices.tolist() == list(range(100, 100 + n))
    again = noise.NoisyView(noise.NoiseSpec("raw", "wifi-csi", ratio, seed=1), np.arange(100, 100 + n))
    assert np.array_equal(again.corrupted, v.corrupted)  # the selection depends on seed and indices only
    other = noise.NoisyView(noise.NoiseSpec("raw", "rgb", ratio, seed=2), np.arange(100, 100 + n))
    assert n < 20 or not np.array_equal(other.corrupted, v.corrupted)


@pytest.mark.parametrize("kind", noise.KINDS)
@pytest.mark.parametrize("modality", layout.MODALITIES)
def test_corrupt_rows_deterministic_and_confined(data, kind, modality):
    v = view(data, kind, modality)
    bad, good = v.corrupted_indices, v.indices[~v.corrupted]
    first = np.array([bad[0], good[0], bad[1], bad[2], good[1], bad[5], bad[8]])
    second = np.array([bad[8], good[3], bad[2], good[1], bad[0], bad[4]])  # shared: bad 0, 2, 8 and good 1
    a, b = data.batch(first), data.batch(second)
    ca, cb = v.corrupt(a), v.corrupt(b)
    bad_a = v.is_corrupted(first)
    assert 0 < bad_a.sum() < len(first)
    keys = [modality] + ([f"{modality}_mask"] if modality in noise.POINT_MODALITIES else [])
    for k in a:
        if not torch.is_tensor(a[k]):
            assert ca[k] is a[k]
        elif k in keys:
            assert torch.equal(ca[k][~torch.from_numpy(bad_a)], a[k][~torch.from_numpy(bad_a)])  # clean rows
        else:
            assert torch.equal(ca[k], a[k]), k  # other modalities untouched
    assert torch.equal(a[modality], data.batch(first)[modality])  # the caller's batch is not modified
    for r in np.flatnonzero(bad_a):  # every corrupted row changed (unaligned: unless both radar frames are empty)
        empty = kind in noise.UNALIGNED and modality == "mmwave" and not ca["mmwave_mask"][r].any()
        assert empty or not torch.equal(ca[modality][r], a[modality][r])
    # the same index is corrupted the same way in another batch composition
    for i in set(first.tolist()) & set(second.tolist()):
        ra, rb = int(np.flatnonzero(first == i)[0]), int(np.flatnonzero(second == i)[0])
        for k in keys:
            assert torch.equal(ca[k][ra], cb[k][rb])


def test_raw_outputs_are_valid(data):
    idx = np.arange(len(data))
    b = data.batch(idx)
    w, h = layout.IMAGE_SIZE
    rgb = view(data, "raw", "rgb")
    out = rgb.corrupt(b)["rgb"][torch.from_numpy(rgb.is_corrupted(idx))]
    assert (out >= 0).all() and (out[..., 0] < w).all() and (out[..., 1] < h).all()
    assert out[..., 0].max() > 480  # spread over the image, not the clean 100..400 box

    csi = view(data, "raw", "wifi-csi").corrupt(b)["wifi-csi"]
    amp = csi[:, 0].flatten(1)
    assert torch.allclose(amp.min(1).values, torch.zeros(len(idx))) and torch.allclose(amp.max(1).values,
                                                                                       torch.ones(len(idx)))
    phase_batch = dict(b, **{"wifi-csi": torch.cat([b["wifi-csi"], b["wifi-csi"]], 1)})
    v = view(data, "raw", "wifi-csi")
    phase = v.corrupt(phase_batch)["wifi-csi"][torch.from_numpy(v.is_corrupted(idx)), 1]
    assert phase.min() >= -np.pi and phase.max() <= np.pi and phase.std() > 1.0

    for m in noise.POINT_MODALITIES:
        v = view(data, "raw", m)
        low, high = v.ranges
        assert np.allclose(low[:3], [0, 0, 3], atol=2) and (high > low).all()  # estimated from the clean clouds
        out = v.corrupt(b)
        bad = torch.from_numpy(v.is_corrupted(idx))
        pts, mask, clean_mask = out[m][bad], out[f"{m}_mask"][bad], b[f"{m}_mask"][bad]
        nonempty = clean_mask.any(1)
        assert torch.equal(mask[nonempty], clean_mask[nonempty])  # mask semantics kept
        assert (mask[~nonempty].sum(1) == round(noise.EMPTY_CLOUD_FILL * pts.shape[1])).all()
        if m == "mmwave":
            assert (~nonempty).any()  # the fake data has empty radar frames, and they got false alarms
        valid = pts[mask].double().numpy()
        assert ((valid >= low - 1e-5) & (valid <= high + 1e-5)).all()
        assert (pts[~mask] == 0).all()  # padding stays zero


def test_raw_points_need_ranges_or_dataset():
    with pytest.raises(ValueError, match="ranges"):
        noise.NoisyView(noise.NoiseSpec("raw", "lidar", 0.2), np.arange(10))
    v = noise.NoisyView(noise.NoiseSpec("raw", "lidar", 0.2), np.arange(10), ranges=([-1, -1, 2], [1, 1, 4]))
    assert v.record()["ranges"] == {"low": [-1, -1, 2], "high": [1, 1, 4]}


def test_unaligned_data_is_another_frames(data):
    idx = np.arange(len(data))
    for m in layout.MODALITIES:
        v = view(data, "unaligned", m, ratio=0.4)
        b = data.batch(idx)
        out = v.corrupt(b)
        rows = np.flatnonzero(v.is_corrupted(idx))
        sources = v.sources[rows]
        assert (sources != idx[rows]).all()
        assert (data.seq[sources] == data.seq[idx[rows]]).all()  # long sequences: always the same sequence
        assert (np.abs(data.frame[sources] - data.frame[idx[rows]]) >= noise.MIN_GAP_FRAMES).all()
        src = data.batch(sources)
        assert torch.equal(out[m][rows], src[m])
        if m in noise.POINT_MODALITIES:
            assert torch.equal(out[f"{m}_mask"][rows], src[f"{m}_mask"])


def test_unaligned_falls_back_to_other_sequences(data):
    # frames 0..19 of each sequence: nothing 30 frames away in the same sequence
    idx = np.concatenate([np.arange(s * 80, s * 80 + 20) for s in range(3)])
    v = noise.NoisyView(noise.NoiseSpec("unaligned", "rgb", 0.5, seed=0), idx, data)
    rows = v.corrupted
    assert (data.seq[v.sources[rows]] != data.seq[v.indices[rows]]).all()
    assert np.isin(v.sources[rows], idx).all()  # sources come from the task
    short = noise.NoisyView(noise.NoiseSpec("unaligned", "rgb", 0.5, seed=0), np.arange(5), data)
    assert np.isin(short.sources[short.corrupted], np.arange(5)).all()
    assert (short.sources[short.corrupted] != short.corrupted_indices).all()


def test_far_unaligned_data_comes_from_another_action_and_says_how_far(data):
    idx = np.arange(len(data))
    v = view(data, "unaligned_far", "lidar", ratio=0.4)
    rows = np.flatnonzero(v.is_corrupted(idx))
    actions = np.array([data.sequences[q].action for q in data.seq])
    assert (actions[v.sources[rows]] != actions[idx[rows]]).all()
    one_action = noise.NoisyView(noise.NoiseSpec("unaligned_far", "rgb", 0.5, seed=0), np.arange(160), data)
    hit = one_action.corrupted  # sequences 0 and 1 are both A02: another sequence then
    assert (data.seq[one_action.sources[hit]] != data.seq[one_action.corrupted_indices]).all()
    distances = v.source_distances()
    gt, source = data.poses(v.corrupted_indices), data.poses(v.sources[v.corrupted])
    expected = np.linalg.norm(source - gt, axis=-1).mean(-1) * 1000
    assert np.allclose(distances["mpjpe_mm"], expected)
    relative = np.linalg.norm((source - source[:, :1]) - (gt - gt[:, :1]), axis=-1).mean(-1) * 1000
    assert np.allclose(distances["root_relative_mm"], relative)
    assert view(data, "raw", "lidar").source_distances() == {}


def test_record_round_trips_through_json(data):
    for kind, m in (("unaligned", "lidar"), ("raw", "mmwave"), ("raw", "rgb")):
        v = view(data, kind, m, ratio=0.2)
        rec = v.record()
        assert json.loads(json.dumps(rec)) == rec
        assert rec["spec"] == {"kind": kind, "modality": m, "ratio": 0.2, "seed": 3}
        assert rec["corrupted"] == v.corrupted_indices.tolist() and len(rec["corrupted"]) == round(0.2 * len(data))
        if kind == "unaligned":
            assert [s for _, s in rec["sources"]] == v.sources[v.corrupted].tolist()


@pytest.mark.parametrize("kwargs, name", [
    (dict(kind="gaussian", modality="rgb", ratio=0.2), "kind"),
    (dict(kind="raw", modality="depth", ratio=0.2), "modality"),
    (dict(kind="raw", modality="rgb", ratio=0.0), "ratio"),
    (dict(kind="raw", modality="rgb", ratio=1.0), "ratio"),
    (dict(kind="raw", modality="rgb", ratio=float("nan")), "ratio"),
    (dict(kind="raw", modality="rgb", ratio="a lot"), "ratio"),
    (dict(kind="raw", modality="rgb", ratio=0.2, seed=-1), "seed"),
])
def test_noise_spec_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        noise.NoiseSpec(**kwargs)


def test_noisy_view_rejects_bad_indices(data):
    spec = noise.NoiseSpec("raw", "rgb", 0.2)
    with pytest.raises(ValueError, match="duplicates"):
        noise.NoisyView(spec, [1, 2, 2])
    with pytest.raises(ValueError, match="unaligned.*dataset"):
        noise.NoisyView(noise.NoiseSpec("unaligned", "rgb", 0.2), np.arange(10))
    v = noise.NoisyView(spec, np.arange(10))
    with pytest.raises(ValueError, match="not samples"):
        v.corrupt(data.batch([3, 50]))


def test_views_on_a_real_dataset(small_root):
    from poise.data.dataset import MMFiDataset

    ds = MMFiDataset(small_root, protocol="P1", part="all", lidar_points=16, mmwave_points=8, cache=False,
                     progress=False)
    (task,) = [g for g in tasks.task_indices(ds, "P1") if len(g)]
    assert len(task) == len(ds) == 10  # 2 subjects x A02 x 5 frames: all in the first task
    batch = ds.batch(task)
    for kind in noise.KINDS:
        for m in layout.MODALITIES:
            v = noise.NoisyView(noise.NoiseSpec(kind, m, 0.4, seed=1), task, ds)
            out = v.corrupt(batch)
            bad = torch.from_numpy(v.is_corrupted(task))
            assert int(bad.sum()) == 4 and torch.equal(out[m][~bad], batch[m][~bad])
            assert out[m].dtype == batch[m].dtype and out[m].shape == batch[m].shape
            if kind == "unaligned":  # 5-frame sequences: the source is from the other subject's sequence
                src = v.sources[v.corrupted]
                assert (ds.sequence_of(src) != ds.sequence_of(v.corrupted_indices)).all()
                assert torch.equal(out[m][bad], ds.batch(src)[m])


# -----------------------------------------------------------------------------
# NIS


def test_name_noisy_modality_relative_and_absolute():
    before = {"rgb": 10.0, "lidar": 8.0, "mmwave": 1.0, "wifi-csi": 0.5}
    after = {"rgb": 9.0, "lidar": 7.5, "mmwave": 0.3, "wifi-csi": 0.5}
    assert nis.name_noisy_modality(before, after, mode="relative") == "mmwave"  # -70 % beats rgb's -10 %
    assert nis.name_noisy_modality(before, after) == "rgb"  # the default, absolute: -1.0 beats -0.7
    # a near-zero score's fluctuation is measured against the floor, not against itself
    tiny = {"rgb": 10.0, "lidar": 8.0, "mmwave": 1.0, "wifi-csi": 0.001}
    assert nis.name_noisy_modality(tiny, dict(after, **{"wifi-csi": -0.01}), mode="relative") == "mmwave"
    with pytest.raises(ValueError, match="same"):
        nis.name_noisy_modality(before, {"rgb": 1.0})
    with pytest.raises(ValueError, match="finite"):
        nis.name_noisy_modality(before, dict(after, rgb=float("nan")))


def test_naming_answers_none_below_each_modalitys_threshold_and_the_largest_excess_above():
    reference = {"rgb": 10.0, "lidar": 8.0, "mmwave": 1.0, "wifi-csi": 0.5}
    scores = {"rgb": 9.0, "lidar": 7.5, "mmwave": 0.3, "wifi-csi": 0.6}  # drops 1.0, 0.5, 0.7, -0.1
    assert nis.score_drops(reference, scores) == pytest.approx({"rgb": 1.0, "lidar": 0.5, "mmwave": 0.7,
                                                               "wifi-csi": -0.1})
    assert nis.name_noisy_modality(reference, scores, threshold={"rgb": 1.5, "lidar": 1.0, "mmwave": 0.8}) == "none"
    # rgb drops most, but mmwave exceeds what a clean task shows by more (0.5 against rgb's 0.2)
    assert nis.name_noisy_modality(reference, scores, threshold={"rgb": 0.8, "mmwave": 0.2, "lidar": 1.0}) == "mmwave"
    assert nis.name_noisy_modality(reference, reference) == "none"  # no threshold: only a real drop names
    assert nis.name_noisy_modality(reference, dict(reference, lidar=7.9)) == "lidar"
    with pytest.raises(ValueError, match="threshold names"):
        nis.name_noisy_modality(reference, scores, threshold={"depth": 1.0})


def test_gmm_recovers_a_bimodal_split():
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.normal(0.05, 0.01, 800), rng.normal(0.3, 0.05, 200)])
    corrupted = np.arange(1000) >= 800
    perm = rng.permutation(1000)
    mask, posterior = nis.gmm_clean_mask(losses[perm], seed=0)
    q = nis.split_quality(mask, corrupted[perm])
    assert q["clean_precision"] > 0.99 and q["clean_recall"] > 0.99
    assert q["noisy_precision"] > 0.99 and q["noisy_recall"] > 0.99 and q["accuracy"] > 0.99
    assert posterior.shape == (1000,) and ((posterior >= 0) & (posterior <= 1)).all()
    assert np.array_equal(mask, posterior >= 0.5)
    # scale-free: min-max normalisation makes millimetres give the same split
    assert np.array_equal(nis.gmm_clean_mask(losses[perm] * 1000, seed=0)[0], mask)


def test_gmm_degenerate_inputs():
    for bad, what in (([0.1, np.nan, 0.2], "1 NaN"), ([0.1, np.inf], "1 inf")):
        with pytest.raises(ValueError, match=what):
            nis.gmm_clean_mask(bad)
    mask, post = nis.gmm_clean_mask(np.full(7, 0.2))
    assert mask.all() and (post == 1).all()
    mask, post = nis.gmm_clean_mask([0.3])
    assert mask.tolist() == [True] and post.tolist() == [1.0]
    mask, post = nis.gmm_clean_mask([])
    assert mask.shape == (0,) and post.shape == (0,)
    with pytest.raises(ValueError, match="1-D"):
        nis.gmm_clean_mask(np.zeros((3, 2)))


def test_split_quality_counts():
    q = nis.split_quality([True, True, False, False, True], [False, True, True, False, False])
    assert q["clean_precision"] == pytest.approx(2 / 3) and q["clean_recall"] == pytest.approx(2 / 3)
    assert q["noisy_recall"] == pytest.approx(1 / 2) and q["noisy_precision"] == pytest.approx(1 / 2)
    assert q["accuracy"] == pytest.approx(3 / 5) and q["kept"] == 3 and q["corrupted"] == 2
    assert np.isnan(nis.split_quality([True, True], [False, False])["noisy_recall"])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(dim=8)


def make_batch(fake_batch, b, seed):
    batch = fake_batch(b)
    g = torch.Generator().manual_seed(seed)
    for k in ("rgb", "lidar", "mmwave", "wifi-csi"):  # differ between batches
        batch[k] = batch[k] + 0.1 * torch.rand(batch[k].shape, generator=g)
    batch["gt"] = torch.randn(b, 17, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 3.0])
    batch["index"] = torch.arange(b) + 100 * seed
    return batch


def test_per_sample_losses(model, fake_batch):
    batches = [make_batch(fake_batch, 4, 1), make_batch(fake_batch, 3, 2)]
    model.train()
    losses, idx = nis.per_sample_losses(model, batches, return_indices=True)
    assert model.training  # mode restored
    assert losses.shape == (7,) and idx.tolist() == [100, 101, 102, 103, 200, 201, 202]
    model.eval()
    with torch.no_grad():
        expected = mpjpe_loss(model(batches[0]), batches[0]["gt"])
    model.train()
    assert losses[:4].mean() == pytest.approx(float(expected), rel=1e-5)


def test_gradient_stop_freezes_superior_encoders_and_restores(model, fake_batch):
    names = {m: ewc.branch_names(model, m) for m in model.modalities}
    params = dict(model.named_parameters())
    params["encoders.rgb.net.0.bias"].requires_grad_(False)  # frozen before: must stay frozen after
    try:
        with gradient_stop(model, ["rgb", "lidar"]) as frozen:
            assert frozen == ("rgb", "lidar")
            for n, p in params.items():
                expect = not (n in names["rgb"] | names["lidar"] or n == "encoders.rgb.net.0.bias")
                assert p.requires_grad == expect, n
            model.zero_grad(set_to_none=True)
            batch = make_batch(fake_batch, 3, 1)
            mpjpe_loss(model(batch), batch["gt"]).backward()
            assert all(params[n].grad is None for n in names["rgb"] | names["lidar"])
            assert all(params[n].grad is not None for n in names["wifi-csi"])
        assert all(p.requires_grad for n, p in params.items() if n != "encoders.rgb.net.0.bias")
        assert not params["encoders.rgb.net.0.bias"].requires_grad
        with pytest.raises(RuntimeError, match="boom"):
            with gradient_stop(model, "wifi-csi"):
                raise RuntimeError("boom")
        assert all(params[n].requires_grad for n in names["wifi-csi"])
        with pytest.raises(ValueError, match="depth"):
            with gradient_stop(model, ["depth"]):
                pass
    finally:
        params["encoders.rgb.net.0.bias"].requires_grad_(True)
        model.zero_grad(set_to_none=True)


# -----------------------------------------------------------------------------
# EWC


def test_branch_names(model):
    names = ewc.branch_names(model, "wifi-csi")
    assert names and all(n.startswith("encoders.wifi-csi.") for n in names)
    assert len(names) == len(list(model.encoders["wifi-csi"].parameters()))
    with pytest.raises(ValueError, match="modality"):
        ewc.branch_names(model, "depth")


def test_ewc_penalty_zero_at_anchor_and_hand_computed(model):
    anchor = ewc.anchor_of(model)
    fisher = {n: torch.rand_like(p) for n, p in model.named_parameters()}
    assert ewc.ewc_penalty(model, fisher, anchor).item() == 0.0
    with torch.no_grad():
        params = dict(model.named_parameters())
        params["head.bias"] += 0.5
        params["encoders.rgb.net.0.weight"][0, :3] -= torch.tensor([1.0, 2.0, 3.0])
    try:
        f = {"head.bias": torch.full_like(params["head.bias"], 2.0),
             "encoders.rgb.net.0.weight": torch.zeros_like(params["encoders.rgb.net.0.weight"])}
        f["encoders.rgb.net.0.weight"][0, :3] = torch.tensor([1.0, 10.0, 100.0])
        expected = (51 * 2.0 * 0.25 + 1.0 * 1 + 10.0 * 4 + 100.0 * 9) / 2  # 51 head outputs
        penalty = ewc.ewc_penalty(model, ewc.Fisher(f, "per_sample", 1), anchor)
        assert penalty.item() == pytest.approx(expected, rel=1e-6)
        penalty.backward()  # differentiable: d/dtheta = F * (theta - theta*)
        assert torch.allclose(params["head.bias"].grad, torch.full_like(params["head.bias"], 1.0))
        with pytest.raises(ValueError, match="anchor"):
            ewc.ewc_penalty(model, f, {})
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(anchor[n])
        model.zero_grad(set_to_none=True)


def manual_grads(model, batches, per_sample):
    """Squared-gradient sums by the textbook loop: batch-of-one forwards (per sample) or batch forwards."""
    model.eval()
    out, count = {n: torch.zeros_like(p) for n, p in model.named_parameters()}, 0
    for batch in batches:
        b = batch["gt"].shape[0]
        units = [{k: v[i:i + 1] for k, v in batch.items()} for i in range(b)] if per_sample else [batch]
        for unit in units:
            model.zero_grad(set_to_none=True)
            mpjpe_loss(model(unit), unit["gt"]).backward()
            for n, p in model.named_parameters():
                if p.grad is not None:
                    out[n] += (1 if per_sample else b) * p.grad.square()
        count += b
    model.zero_grad(set_to_none=True)
    model.train()
    return {n: v / count for n, v in out.items()}


@pytest.fixture
def fisher_batches(fake_batch):
    return [make_batch(fake_batch, 4, 1), make_batch(fake_batch, 3, 2)]


def test_fisher_per_sample_equals_manual_loop(model, fisher_batches):
    model.train()
    f = ewc.fisher_generic(model, fisher_batches, per_sample=True)
    assert f.estimator == "per_sample" and f.samples == 7 and model.training
    manual = manual_grads(model, fisher_batches, per_sample=True)
    assert set(f.values) == set(manual)
    for n in manual:
        torch.testing.assert_close(f.values[n], manual[n], rtol=1e-4, atol=1e-10)


def test_fisher_skips_frozen_parameters_and_keeps_the_others_exact(model, fisher_batches):
    full = ewc.fisher_generic(model, fisher_batches, per_sample=True)
    with gradient_stop(model, ["rgb"]):
        part = ewc.fisher_generic(model, fisher_batches, per_sample=True)
    rgb = ewc.branch_names(model, "rgb")
    assert set(part.values) == set(full.values) - rgb and rgb
    for n in part.values:
        torch.testing.assert_close(part.values[n], full.values[n])


def test_fisher_batched_is_the_batch_mean_formula(model, fisher_batches):
    f = ewc.fisher_generic(model, fisher_batches, per_sample=False)
    assert f.estimator == "batched" and f.samples == 7
    manual = manual_grads(model, fisher_batches, per_sample=False)
    for n in manual:
        torch.testing.assert_close(f.values[n], manual[n], rtol=1e-4, atol=1e-10)
    # (mean_b g)^2 <= mean_b g^2 element by element: the batched estimate drops the within-batch variance
    exact = ewc.fisher_generic(model, fisher_batches, per_sample=True)
    assert all((f.values[n] <= exact.values[n] * (1 + 1e-4) + 1e-12).all() for n in exact.values)
    assert not all(torch.allclose(f.values[n], exact.values[n], rtol=1e-2) for n in exact.values)
    # with batches of one sample the two estimators agree
    singles = [{k: v[i:i + 1] for k, v in b.items()} for b in fisher_batches for i in range(b["gt"].shape[0])]
    one = ewc.fisher_generic(model, singles, per_sample=False)
    for n in exact.values:
        torch.testing.assert_close(one.values[n], exact.values[n], rtol=1e-4, atol=1e-10)


def test_fisher_adaptive_is_eq9_on_the_branch_only(model, fisher_batches):
    branch = ewc.branch_names(model, "lidar")
    g = torch.Generator().manual_seed(5)
    previous = ewc.Fisher({n: torch.rand(p.shape, generator=g) for n, p in model.named_parameters()},
                          "per_sample", 10)
    beta = 0.3
    adaptive = ewc.fisher_adaptive(model, fisher_batches, previous, beta, branch)
    generic = ewc.fisher_generic(model, fisher_batches)
    assert adaptive.beta == beta and set(adaptive.branch) == branch and adaptive.estimator == "per_sample"
    for n, v in adaptive.values.items():
        if n in branch:
            assert torch.equal(v, beta * generic.values[n] + (1 - beta) * previous.values[n]), n
        else:
            assert torch.equal(v, generic.values[n]), n
    # Eq. 8-9 literally: the mean over samples of F_i = beta g_i^2 + (1 - beta) I_prev
    model.eval()
    literal = {n: torch.zeros_like(previous.values[n]) for n in branch}
    params = dict(model.named_parameters())
    for batch in fisher_batches:
        for i in range(batch["gt"].shape[0]):
            unit = {k: v[i:i + 1] for k, v in batch.items()}
            model.zero_grad(set_to_none=True)
            mpjpe_loss(model(unit), unit["gt"]).backward()
            for n in branch:
                literal[n] += beta * params[n].grad.square() + (1 - beta) * previous.values[n]
    model.zero_grad(set_to_none=True)
    model.train()
    for n in branch:
        torch.testing.assert_close(adaptive.values[n], literal[n] / 7, rtol=1e-4, atol=1e-10)
    with pytest.raises(ValueError, match="beta"):
        ewc.fisher_adaptive(model, fisher_batches, previous, 1.5, branch)
    with pytest.raises(ValueError, match="no entry"):
        ewc.fisher_adaptive(model, fisher_batches, ewc.Fisher({}, "per_sample", 1), beta, branch)


def test_fisher_describe_is_json():
    f = ewc.Fisher({"a": torch.ones(2)}, "batched", 3, 0.3, ("a",))
    assert json.loads(json.dumps(f.describe())) == {"estimator": "batched", "samples": 3, "beta": 0.3,
                                                    "branch": ["a"], "parameters": 1}
