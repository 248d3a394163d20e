"""Missing sensors: per-sample masks in decode, ``poise robust`` over every subset, and the four robustness methods
(modality dropout, DMRNet, MMANet, modality distillation) on their defining properties."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from poise.objective import POSE

from poise import methods
from poise.methods.dmrnet import ProbabilisticEmbedding, gaussian_kl, hard_combinations
from poise.methods.mmanet import mad_loss, teacher_uncertainty, weak_combinations
from poise.methods.modality_distill import FeatureRestorer, restoration_losses
from poise.methods.modality_dropout import combination_index, draw_masks
from poise.models.pose import build_model
from poise.robust import robustness, subsets
from poise.errors import PoiseError

ALL = ("rgb", "lidar", "mmwave", "wifi-csi")


def model_and_features(fake_batch, fusion="concat", b=12, dim=8):
    torch.manual_seed(0)
    model = build_model(fusion=fusion, dim=dim).eval()
    return model, model.encode(fake_batch(b))


# --- masks and decode ------------------------------------------------------------------------------------

def test_per_sample_masks_decode_each_row_as_its_own_subset(fake_batch):
    for fusion in ("concat", "attention"):
        model, features = model_and_features(fake_batch, fusion)
        mask = draw_masks(len(features["rgb"]), 4, 0.5)
        out = model.decode(features, mask)
        for i, row in enumerate(mask):
            present = [m for m, keep in zip(ALL, row) if keep]
            alone = model.decode({m: f[i:i + 1] for m, f in features.items()}, present)
            assert torch.allclose(out[i], alone[0], atol=1e-5), (fusion, present)
    with pytest.raises(ValueError, match="per-sample present mask"):
        model.decode(features, torch.ones(3, 4))


def test_rescaled_absence_multiplies_the_present_features_by_m_over_their_number(fake_batch):
    model, features = model_and_features(fake_batch)
    plain = {s: model.tokens(features, s) for s in (("rgb",), ("rgb", "lidar"), ALL)}
    model.set_absent("rescale")
    for s, factor in ((("rgb",), 4), (("rgb", "lidar"), 2), (ALL, 1)):
        assert torch.allclose(model.tokens(features, s), factor * plain[s]), s
    with pytest.raises(PoiseError, match="absent"):
        model.set_absent("mean")


def test_dropout_keeps_a_modality_and_draws_every_combination_equally_at_one_half():
    torch.manual_seed(0)
    mask = draw_masks(15_000, 4, 0.5)
    assert bool(mask.any(1).all())
    counts = np.bincount(combination_index(mask).numpy(), minlength=16)
    assert counts[0] == 0
    expected = 15_000 / 15
    chi2 = ((counts[1:] - expected) ** 2 / expected).sum()
    assert chi2 < 36.1, counts  # chi-square, 14 degrees of freedom, p = 0.001
    assert bool(draw_masks(2000, 4, 0.9).any(1).all())  # even when almost everything is dropped


# --- poise robust ----------------------------------------------------------------------------------------

def one_modality_model(dim=8):
    """A concat model whose head reads RGB's block only: every subset with RGB scores as the full set, every
    subset without it as the zero-padded (empty) model."""
    torch.manual_seed(0)
    model = build_model(dim=dim)
    with torch.no_grad():
        model.head.weight[:, dim:] = 0
    return model.eval()


def test_robust_scores_every_subset_as_the_zero_padded_model_does(tiny_dataset):
    model = one_modality_model()
    run = SimpleNamespace(model=model, test=tiny_dataset, device=torch.device("cpu"), dir="r", epoch=0, objective=POSE,
                          config=SimpleNamespace(method="baseline"), method=methods.get("baseline"))
    report = robustness(run, drops=(0.5,), seeds=2)
    rows = {r["subset"]: r for r in report["subsets"]}
    assert len(rows) == 15 and report["subsets"][0]["subset"] == "all"
    full, empty = rows["all"]["mpjpe_mm"], None
    from poise.runtime import encode_split
    features, gt = encode_split(model, tiny_dataset, torch.device("cpu"))
    from poise.metrics import mpjpe_mm
    empty = mpjpe_mm(model.decode(features, ()), gt)
    assert abs(full - empty) > 1  # RGB matters to this model
    for s in subsets(ALL):
        label = "all" if len(s) == 4 else "+".join(s)
        assert rows[label]["mpjpe_mm"] == pytest.approx(full if "rgb" in s else empty, rel=1e-5), label
    assert report["worst"]["mpjpe_mm"] == max(r["mpjpe_mm"] for r in report["subsets"])
    assert report["mean_mpjpe_mm"] == pytest.approx(np.mean([r["mpjpe_mm"] for r in report["subsets"]]))
    # losing each modality with p = 0.5: half the frames lose RGB, so the error lies between the two
    assert min(full, empty) < report["drops"][0]["mpjpe_mm"] < max(full, empty)
    with pytest.raises(PoiseError, match="--drop"):
        robustness(run, drops=(1.0,))


# --- DMRNet -----------------------------------------------------------------------------------------------

def test_dmrnet_samples_with_its_variance_in_training_and_reads_the_mean_in_evaluation(fake_batch):
    model, _ = model_and_features(fake_batch)
    model.install("embedding", ProbabilisticEmbedding(model.fusion.out_dim))
    method = methods.get("dmrnet")
    model.train()
    batch = fake_batch(256)
    features = model.encode(batch)
    run = SimpleNamespace(model=model, epoch=0, objective=POSE)
    pred = method.predict(run, batch, features)
    combination, mu, logvar = method._step
    assert pred.shape == (256, 17, 3)
    # z - mu has variance exp(logvar): recover it through the head's least squares on a fixed mu
    z = torch.linalg.lstsq(model.head.weight, (pred - model.mean_pose).reshape(256, -1).T - model.head.bias[:, None]).solution.T
    ratio = ((z - mu) ** 2).mean(0) / logvar.exp().mean(0)
    assert 0.6 < float(ratio.detach().mean()) < 1.4
    model.eval()
    assert torch.equal(model.decode(features), model.decode(features))
    assert torch.allclose(model.decode(features), model.regress(model.embedding.mu(model.fuse(features))))


def test_dmrnet_kl_is_zero_at_the_prior_and_the_hard_combinations_are_the_worst_seen():
    assert float(gaussian_kl(torch.zeros(4, 3), torch.zeros(4, 3))) == 0
    assert float(gaussian_kl(torch.ones(4, 3), torch.zeros(4, 3))) == pytest.approx(1.5)
    total, count = np.zeros(16), np.zeros(16)
    count[1:] = 10
    total[1:] = 10 * np.arange(1, 16)  # mean hardness grows with the index ...
    total[15] = 1e6  # ... the full combination never counts ...
    count[14] = 0  # ... nor one never seen
    assert hard_combinations(total, count, 3) == [11, 12, 13]


def test_dmrnet_hcr_adds_loss_only_on_hard_combination_samples(fake_batch):
    model, _ = model_and_features(fake_batch)
    method = methods.get("dmrnet", alpha=0.0, beta=1.0, warmup=1)
    model.install("embedding", ProbabilisticEmbedding(model.fusion.out_dim))
    model.train()
    batch = fake_batch(64)
    batch["gt"] = torch.randn(64, 17, 3)
    run = SimpleNamespace(model=model, epoch=3, objective=POSE)
    features = model.encode(batch)
    pred = method.predict(run, batch, features)
    step = SimpleNamespace(batch=batch, pred=pred)
    method.hard_set = []
    assert float(method.extra_loss(run, step)) == 0
    combination = method._step[0]
    method.hard_set = [int(combination[0])]
    from poise.metrics import sample_mpjpe
    chosen = combination == combination[0]
    expected = sample_mpjpe(pred, batch["gt"])[chosen].sum() / 64
    assert float(method.extra_loss(run, step)) == pytest.approx(float(expected), rel=1e-5)


def test_dmrnet_accumulates_each_combinations_loss_and_ranks_by_it_when_asked(fake_batch):
    model, _ = model_and_features(fake_batch)
    method = methods.get("dmrnet", by="loss", warmup=1, hard=2)
    run = SimpleNamespace(model=model, epoch=0, config=SimpleNamespace(epochs=3), objective=POSE)
    method.setup(run)
    model.train()
    batch = fake_batch(64)
    batch["gt"] = torch.randn(64, 17, 3)
    pred = method.predict(run, batch, model.encode(batch))
    method.extra_loss(run, SimpleNamespace(batch=batch, pred=pred))
    from poise.metrics import sample_mpjpe
    combination = method._step[0].numpy()
    losses = sample_mpjpe(pred, batch["gt"]).detach().double().numpy()
    method.on_epoch_end(run)  # this epoch's sums join the totals
    for c in range(1, 16):
        assert method.loss_sum[c] == pytest.approx(losses[combination == c].sum()), c
        assert method.count[c] == (combination == c).sum()
    method.loss_sum[:] = 0
    method.loss_sum[[3, 9]], method.count[:] = 100.0, 1.0
    method.variance_sum[[5, 6]] = 100.0
    method.on_epoch_end(run)  # epoch 0 = the warm-up's last (nothing new this epoch)
    assert method.hard_set == [3, 9]
    embedding = model.embedding
    method.setup(run)  # set up again on the same model (the next task of a stream): the trained part stays
    assert model.embedding is embedding
    with pytest.raises(PoiseError, match="already has a embedding"):
        model.install("embedding", torch.nn.Identity())  # another kind of part: one method per model part


# --- MMANet -----------------------------------------------------------------------------------------------

def test_mad_is_zero_for_equal_features_and_weights_the_uncertain_samples(fake_batch):
    teacher, features = model_and_features(fake_batch, b=8)
    weights = teacher_uncertainty(teacher, features)
    assert float(weights.sum()) == pytest.approx(1) and bool((weights >= 0).all())
    student = torch.randn(8, 5)
    assert float(mad_loss(student, student.clone(), weights)) == 0
    assert float(mad_loss(student, torch.randn(8, 5), weights)) > 0
    # a sample whose teacher prediction moves when a modality is taken away weighs more
    still = {m: f.clone() for m, f in features.items()}
    for m in ALL[1:]:
        still[m][0] = 0  # sample 0 has only RGB: removing any other modality moves nothing
    w = teacher_uncertainty(teacher, still)
    assert float(w[0]) < float(w[1:].min())


def test_the_teacher_and_the_regulariser_stay_out_of_evaluation(tiny, tmp_path):
    from poise.methods.mmanet import load_teacher
    from poise.train import build_run, train

    teacher = train(tiny_config(tiny, tmp_path, name="teacher", epochs=1), progress=False)
    config = tiny_config(tiny, tmp_path, name="m", method="mmanet", epochs=2,
                         method_params={"begin": 1, "mine_from": 0, "teacher": str(teacher.dir)})
    run = build_run(config, tmp_path / "runs" / "m", progress=False)
    frozen = load_teacher(str(teacher.dir), run)
    assert not any(p.requires_grad for p in frozen.parameters())
    batch = run.train.batch(run.train_rows[:16])
    run.model.eval()
    before = run.model(batch)
    with torch.no_grad():
        for p in run.method.regulariser.parameters():
            p.add_(1.0)
    assert torch.equal(before, run.model(batch))  # the regularisation network is never used at evaluation


def test_what_absent_means_is_saved_with_the_model_and_absent_nan_stays_out(fake_batch):
    model, features = model_and_features(fake_batch)
    model.set_absent("rescale")
    fresh = build_model(dim=8)
    fresh.load_state_dict(model.state_dict())
    assert fresh.absent == "rescale"
    old = {k: v for k, v in model.state_dict().items() if k != "absent_index"}  # a checkpoint from before
    fresh.load_state_dict(old)
    assert fresh.absent == "zero"
    broken = {**features, "wifi-csi": torch.full_like(features["wifi-csi"], float("nan"))}
    assert bool(torch.isfinite(model.decode(broken, ("rgb", "lidar", "mmwave"))).all())


def test_mar_mines_the_combination_that_lacks_the_informative_modality(tiny_dataset):
    """On held-out frames, a model that reads RGB only differs most from its full self without RGB: that
    combination and its sub-combinations are the weak ones."""
    model = one_modality_model()
    method = methods.get("mmanet", teacher="unused")
    run = SimpleNamespace(model=model, train=tiny_dataset, device=torch.device("cpu"))
    method.val_slice = np.arange(0, len(tiny_dataset), 7)
    method.discrepancy = {15 - 2 ** i: 0.0 for i in range(4)}
    d = method.measure_discrepancy(run)
    assert max(d, key=d.get) == 14 and d[13] == pytest.approx(0, abs=1e-3)  # 14 = L+M+W, 13: RGB kept
    assert weak_combinations(d, ALL) == [2, 4, 6, 8, 10, 12, 14]  # L+M+W and all its non-empty subsets


# --- modality distillation --------------------------------------------------------------------------------

def train_restorer(related: bool, steps=400, n=512, d=6, seed=0):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randn(n, d, generator=g)
    lidar = rgb @ torch.randn(d, d, generator=g) if related else torch.randn(n, d, generator=g)
    tokens = torch.stack([rgb, lidar], dim=1)
    restorer = FeatureRestorer(2, d, hidden=32)
    optimiser = torch.optim.Adam(restorer.parameters(), lr=3e-3)
    mask = torch.tensor([[1.0, 0.0]]).expand(n // 2, -1)
    for step in range(steps):
        part = tokens[: n // 2]
        restorer.track(part)
        regression, mmd = restoration_losses(restorer, part, mask)
        optimiser.zero_grad()
        (regression + 0.1 * mmd).backward()
        optimiser.step()
    held = tokens[n // 2:]
    with torch.no_grad():
        restored = restorer(held * mask[..., None], mask)[:, 1]
    error = float((restored - held[:, 1]).square().sum(1).mean())
    mean_error = float((held[:, 1] - tokens[: n // 2, 1].mean(0)).square().sum(1).mean())
    cosine = float(torch.nn.functional.cosine_similarity(restored, held[:, 1]).mean())
    return error / mean_error, cosine


def test_restored_features_approach_the_true_ones_only_when_they_can_be_known():
    ratio, cosine = train_restorer(related=True)
    assert ratio < 0.05 and cosine > 0.97, (ratio, cosine)
    ratio, _ = train_restorer(related=False)
    assert ratio > 0.95, ratio  # independent: no better than the training mean on held-out samples


def test_the_restorer_never_reads_an_absent_modality(fake_batch):
    model, features = model_and_features(fake_batch)
    model.install("restorer", FeatureRestorer(4, model.dim))
    with torch.no_grad():
        for p in model.restorer.parameters():
            p.normal_()
    present = ("rgb", "lidar")
    out = model.decode(features, present)
    changed = {**features, "mmwave": features["mmwave"] + 5, "wifi-csi": torch.randn_like(features["wifi-csi"])}
    assert torch.equal(out, model.decode(changed, present))
    assert not torch.allclose(out, model.decode({**features, "rgb": features["rgb"] + 1}, present))
    restorer, model.restorer = model.restorer, None
    full = model.decode(features)  # every modality present: nothing to restore
    model.restorer = restorer
    assert torch.equal(model.decode(features), full)


# --- training runs ----------------------------------------------------------------------------------------

def tiny_config(tiny, tmp_path, **kw):
    from poise.config import TrainConfig

    values = dict(data=str(tiny), protocol="P3", split="S1", holdout=0.5, epochs=2, batch_size=64, dim=16,
                  lidar_points=64, mmwave_points=16, assess_frames=128, out=str(tmp_path / "runs"), lr_step=10)
    values.update(kw)
    return TrainConfig(**values)


def test_mmanet_refuses_a_missing_or_unfinished_teacher(tiny, tmp_path):
    from poise.train import build_run

    config = tiny_config(tiny, tmp_path, name="m", method="mmanet", method_params={"begin": 1, "mine_from": 0})
    run = build_run(config, tmp_path / "runs" / "m", progress=False)
    with pytest.raises(PoiseError, match="--param teacher=RUN_DIR"):
        run.method.on_epoch_start(run)
    run.method.teacher = str(tmp_path)
    with pytest.raises(PoiseError, match="not a poise run directory"):
        run.method.on_epoch_start(run)


def test_poise_robust_runs_on_a_trained_run(tiny, tmp_path, capsys):
    from poise.cli import main
    from poise.train import train

    run = train(tiny_config(tiny, tmp_path, name="d", epochs=1, method="modality_dropout"), progress=False)
    assert main(["robust", str(run.dir), "--drop", "0.3", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "mean over the 15 subsets" in out and "0.3 (2 seeds)" in out
    for name in ("robust.json", "robust.md", "robust.png"):
        assert (run.dir / name).is_file(), name


def test_a_robust_bench_trains_the_teacher_first_and_tables_every_subset(tiny, tmp_path):
    from poise import bench
    from poise.bench.presets import AGAINST_RUN, BASELINE, TINY_TRAIN, Variant

    preset = bench.Preset(variants=(BASELINE, Variant("mmanet", "mmanet", params=dict(teacher=AGAINST_RUN, begin=1,
                                                                                      mine_from=0)),
                                    Variant("modality_dropout", "modality_dropout")),
                          fusions=("concat",), subsets=(), seeds=(0, 1), epochs=2, robust=True,
                          train=dict(TINY_TRAIN, holdout=0.5, lr_step=1))
    out = tmp_path / "bench"
    configs = bench.plan(preset, str(tiny), out, protocol="P3", split="S1")
    mmanet = next(c for c in configs if c.method == "mmanet" and c.seed == 1)
    assert mmanet.method_params["teacher"] == str(out / "runs" / "baseline-concat-all-seed1")
    assert configs.index(mmanet) < len(configs) - 1  # listed among the others: the waves put it after its teacher
    out.mkdir()
    rows = bench.execute(configs, jobs=2, progress=False, robust=True)
    assert [r["run"] for r in rows] == [str(out / "runs" / c.run_name) for c in configs]
    assert all(len([k for k in r if k.startswith("robust_") and k.endswith("_mm")]) == 15 + 3 for r in rows)
    from poise.bench.report import report

    text = report(rows, preset, "robust-test", out, "test", 1.0, "tiny")
    assert "## Missing sensors" in text and "| R+L+M |" in text and (out / "robust.png").is_file()
    for r in rows:  # MMANet mined its weak combinations before distillation began
        assert r["variant"] != "mmanet" or "mmanet_weak" in json.loads((Path(r["run"]) / "metrics.json").read_text())[-1]
    base = [r["robust_mean_mm"] for r in rows if r["variant"] == "baseline"]
    assert f"| baseline | {bench.fmt(r['test_mpjpe_mm'] for r in rows if r['variant'] == 'baseline')} | {bench.fmt(base)} |" in text


def test_a_damaged_checkpoint_read_for_analysis_gives_no_resume_advice(tiny, tmp_path, capsys):
    """Issue 28, item 8: `poise robust` / `contrib` on a run with a damaged checkpoint say what to do there,
    not 'instead of --resume' (which nobody gave)."""
    from poise.cli import main
    from poise.config import TrainConfig
    from poise.train import train

    config = TrainConfig(data=str(tiny), split="S3", epochs=1, batch_size=64, dim=16, lidar_points=32,
                         mmwave_points=16, assess_frames=64, out=str(tmp_path), name="r")
    run = train(config, progress=False)
    (run.dir / "checkpoint.pt").write_bytes(b"damaged")
    for command in ("robust", "contrib"):
        assert main([command, str(run.dir)]) == 2
        err = capsys.readouterr().err
        assert "not a readable poise checkpoint" in err and "--resume" not in err and "train the run again" in err
