"""``poise continual`` end to end on a two-task stream: results, NIS records, resume at a task boundary."""

import json

import numpy as np
import pytest

from poise.cli import main
from poise.continual.config import ContinualConfig, tuned
from poise.continual.runner import noise_plan, resume, run_continual, summary

SMALL = dict(split="S2", tasks=2, epochs=2, dim=16, lidar_points=32, mmwave_points=16, train_stride=3, batch_size=32,
             assess_frames=128)
TUNED = {"relearn": {"relearn_epoch": 0}, "nis": {"gamma": 1}, "ewc": {"fisher_frames": 64}}  # where they are on


def config(root, tmp_path, **kw):
    return ContinualConfig(**tuned(dict(data=str(root), out=str(tmp_path), **{**SMALL, **kw}), TUNED))


def test_ours_learns_the_stream_and_scores_its_noise_split(stream_root, tmp_path):
    run = run_continual(config(stream_root, tmp_path, noisy_modality="rgb", ratio=0.4), progress=False)
    s = summary(run)
    assert s["tasks_done"] == 2 and len(s["mpjpe_matrix_mm"]) == 2
    assert s["avg_mpjpe_mm"][1] == pytest.approx(np.mean(s["mpjpe_matrix_mm"][1]))  # 001 Eq. 13
    assert s["forgetting_mm"] == [s["mpjpe_matrix_mm"][1][0] - s["mpjpe_matrix_mm"][0][0]]
    record = run.records[1]
    assert record["noise"]["modality"] == "rgb" and record["noise"]["corrupted"] == round(0.4 * record["train_frames"])
    nis = record["nis"]
    assert nis["named"] in run.model.modalities and set(nis["frozen"]) <= set(run.model.modalities)
    assert nis["quality"]["samples"] == record["train_frames"] and nis["quality"]["corrupted"] > 0
    # the Fisher of a noisy task comes from the clean set only, and adapts on the named branch
    assert record["fisher"]["samples"] == min(TUNED["ewc"]["fisher_frames"], nis["kept"])
    assert record["fisher"]["beta"] == 0.3 and all(n.startswith(f"encoders.{nis['named']}.") for n in record["fisher"]["branch"])
    assert run.records[0]["fisher"]["beta"] is None  # task 0: the generic Fisher (Eq. 7)
    assert "relearn" in run.records[0] and "relearn" in record
    saved = json.loads((run.dir / "results.json").read_text())
    assert saved["avg_mpjpe_mm"] == s["avg_mpjpe_mm"]
    losses = np.load(run.dir / "losses-task1.npz")
    assert len(losses["nis"]) == record["train_frames"] and losses["nis.corrupted"].sum() > 0


def test_resume_at_a_task_boundary_equals_an_uninterrupted_run(stream_root, tmp_path):
    kw = dict(recipe="ours", noise="unaligned", ewc={"per_sample": False})  # NIS, re-learning and adaptive EWC: all stateful
    straight = run_continual(config(stream_root, tmp_path, name="straight", **kw), progress=False)
    run_continual(config(stream_root, tmp_path, name="cut", **{**kw, "tasks": 1}), progress=False)
    resumed = resume(tmp_path / "cut", progress=False, tasks=2)
    assert summary(resumed) == summary(straight)
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert (p == q).all(), name
    saved = (tmp_path / "cut" / "results.json").read_text()
    (tmp_path / "cut" / "results.json").write_text(json.dumps({"tasks_done": 1}))  # a kill's stale file
    resume(tmp_path / "cut", progress=False)  # nothing left to learn: the files are rewritten from the checkpoint
    assert (tmp_path / "cut" / "results.json").read_text() == saved
    (tmp_path / "cut" / "checkpoint.pt").write_bytes(b"not a checkpoint")  # damaged: named, no torch advice
    with pytest.raises(ValueError, match="is not a readable poise checkpoint") as err:
        resume(tmp_path / "cut", progress=False)
    assert "weights_only" not in str(err.value)


def test_the_baselines_and_ablations_run_what_they_say(stream_root, tmp_path):
    naive = run_continual(config(stream_root, tmp_path, recipe="naive", name="naive"), progress=False)
    assert all("fisher" not in r and "nis" not in r and "relearn" not in r for r in naive.records)
    ablated = run_continual(config(stream_root, tmp_path, ablate=["nis", "relearn"], name="ablated"), progress=False)
    noisy = ablated.records[1]
    assert "nis" not in noisy and "relearn" not in noisy and noisy["named_without_nis"] in (*ablated.model.modalities, "none")
    assert noisy["fisher"]["samples"] == min(TUNED["ewc"]["fisher_frames"], noisy["train_frames"])  # every frame kept


def test_continual_errors_name_the_key_or_what_to_do(tiny, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"'ablate' switches off \['nis'\], which recipe 'naive' does not have"):
        ContinualConfig(recipe="naive", ablate=["nis"])
    with pytest.raises(ValueError, match="'relearn'.*relearn_epoch"):
        ContinualConfig(epochs=2, relearn={"relearn_epoch": 2})
    with pytest.raises(ValueError, match="noisy_modality"):
        ContinualConfig(noisy_modality="sonar")
    with pytest.raises(ValueError, match="did you mean 'ratio'"):
        ContinualConfig.from_dict({"ratios": 0.2})
    # the tiny preset holds only task 0 of P1: the error says which tasks are empty
    assert main(["continual", "--data", str(tiny), "--split", "S3", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "task 1 (A04, A05): 0 train / 0 test frames" in err and "--preset continual" in err


def test_naming_keys_are_checked_by_name():
    assert ContinualConfig(nis={"threshold": {"rgb": "0.5"}}).nis["threshold"] == {"rgb": 0.5}
    for kw, message in ((dict(nis={"threshold": {"sonar": 1.0}}), "'nis' threshold names"),
                        (dict(nis={"threshold": {"rgb": "high"}}), "threshold"),
                        (dict(nis={"threshold": {"rgb": float("inf")}}), "finite"),
                        (dict(nis={"threshold": [1.0]}), "mapping"),
                        (dict(nis={"separate": "sometimes"}), "'nis'.*separate"),
                        (dict(reference_holdout=0), "'reference_holdout' is 0"),
                        (dict(reference_holdout=1.0), "'reference_holdout' must lie")):
        with pytest.raises(ValueError, match=message):
            ContinualConfig(**kw)
    assert ContinualConfig(recipe="naive", reference_holdout=0).reference_holdout == 0  # no NIS: nothing to name
    for kw in (dict(nis={"threshold": {"rgb": 1.0}}), dict(nis={"separate": "always", "on": False})):
        with pytest.raises(ValueError, match="'nis' sets parameters .* that is off"):
            ContinualConfig(recipe="naive", **kw)
    assert ContinualConfig(nis={"separate": "always"}).run_name == "continual-ours-separate_always-P1-raw0.2-seed0"


def test_the_command_line_sets_the_stream_and_nis_switches(stream_root, tmp_path):
    args = ["continual", "--data", str(stream_root), "--out", str(tmp_path), "--name", "one", "--tasks", "1",
            "--noisy-modality", "lidar", "--nis", "separate=always", "gamma=1", "--noise", "unaligned_far",
            "--epochs", "1", "--ablate", "relearn", "--ewc", "online", "lam=5e3", "--method", "ogm_ge", "--param",
            "alpha=0.5", "--quiet", "--no-report"]
    assert main(args) == 0
    config = ContinualConfig.load(tmp_path / "one" / "config.yaml")
    assert (config.tasks, config.noisy_modality, config.nis["separate"], config.noise) == (1, "lidar", "always",
                                                                                           "unaligned_far")
    assert (config.ewc["mode"], config.ewc["lam"], config.method, config.method_params) == ("online", 5000.0,
                                                                                            "ogm_ge", {"alpha": 0.5})
    assert main([*args[:-2], "--nis", "off", "gamma=2", "--quiet"]) == 2  # parameters of a strategy switched off


def test_noise_plan_keeps_task_0_clean_and_records_one_modality_per_task():
    plan = noise_plan(ContinualConfig(seed=3), 7)
    assert plan[0] is None and all(spec.ratio == 0.2 and spec.kind == "raw" for spec in plan[1:])
    assert len({spec.modality for spec in plan[1:]}) > 1  # drawn per task
    assert all(spec.modality == "wifi-csi" for spec in noise_plan(ContinualConfig(noisy_modality="wifi-csi"), 3)[1:])
    assert noise_plan(ContinualConfig(noise="none"), 3) == [None] * 3


@pytest.mark.parametrize("method", ["coteaching", "dividemix"])
def test_the_two_network_baselines_train_both_networks_with_ewc(stream_root, tmp_path, method):
    import torch

    run = run_continual(config(stream_root, tmp_path, recipe=method, ratio=0.4, epochs=2, name=method), progress=False)
    peer = next(p for p in run.strategies if p.name == method).peer
    ewc = next(p for p in run.strategies if p.name == "ewc")
    assert set(ewc.fisher) == {"model", "peer"} and ewc.mode == "online"  # each network protected, every task
    assert not all(torch.equal(p, q) for p, q in zip(run.model.parameters(), peer.parameters()))
    assert run.records[1]["fisher"]["beta"] is None and run.records[1]["fisher_networks"]["peer"]["mode"] == "online"
    if method == "dividemix":  # warm-up (1 epoch) on the new task first, then a co-divide before epoch index 1
        assert "division" not in run.records[0] and run.records[1]["division"]["epoch"] == 1
        assert run.records[1]["division"]["quality"]["corrupted"] == run.records[1]["noise"]["corrupted"]
    assert np.isfinite(summary(run)["avg_mpjpe_mm"]).all()


def test_coteaching_cross_updates_on_the_peers_small_loss_samples():
    import torch

    from poise.continual import peers

    la = torch.tensor([0.1, 0.9, 0.2, 0.8], requires_grad=True)
    lb = torch.tensor([0.7, 0.1, 0.2, 0.9], requires_grad=True)
    loss_a, loss_b, keep = peers.coteaching_losses(la, lb, forget=0.5)
    assert keep == 2
    assert loss_a.item() == pytest.approx((0.9 + 0.2) / 2)  # A learns on B's two smallest: samples 1, 2
    assert loss_b.item() == pytest.approx((0.7 + 0.2) / 2)  # B learns on A's: samples 0, 2
    assert peers.forget_rates(0.4, 4).tolist() == pytest.approx([0.0, 0.2, 0.4, 0.4])


def test_dividemix_targets_refine_labelled_and_co_guess_unlabelled():
    import torch

    from poise.continual import peers

    gt, own, peer = torch.zeros(2, 17, 3), torch.ones(2, 17, 3), 3 * torch.ones(2, 17, 3)
    target = peers.dividemix_targets(gt, own, peer, torch.tensor([0.75, 0.2]), torch.tensor([True, False]))
    assert torch.allclose(target[0], torch.full((17, 3), 0.25))  # 0.75 * 0 + 0.25 * 1
    assert torch.allclose(target[1], torch.full((17, 3), 2.0))   # (1 + 3) / 2


@pytest.mark.parametrize("seed", [0, 1])
def test_nis_names_the_corrupted_modality_on_a_tiny_stream(stream_root, tmp_path, seed):
    """RGB carries most of the pose in two-modality (RGB + LiDAR) training; with 90 % of task 1's RGB frames
    replaced by detector failures its score must drop most, and the GMM must keep mostly clean samples."""
    run = run_continual(config(stream_root, tmp_path, modalities=["rgb", "lidar"], noisy_modality="rgb", ratio=0.9,
                               epochs=3, seed=seed, ablate=["relearn"]), progress=False)
    nis = run.records[1]["nis"]
    assert nis["named"] == "rgb" and nis["separated"], nis
    assert nis["scores_after"]["rgb"] < nis["scores_reference"]["rgb"] and max(nis["drops"], key=nis["drops"].get) == "rgb"


def test_a_p2_stream_with_unaligned_noise_runs_dividemix(stream_root, tmp_path):
    """P2's first tasks (limb extension: A07, A08, A11; lunge: A09, A10) with unaligned LiDAR frames."""
    run = run_continual(config(stream_root, tmp_path, protocol="P2", noise="unaligned", noisy_modality="lidar",
                               ratio=0.4, recipe="dividemix", epochs=2), progress=False)
    first, second = run.records
    assert first["actions"] == ["A07", "A08", "A11"] and second["actions"] == ["A09", "A10"]
    assert first["noise"] is None and second["noise"]["kind"] == "unaligned"
    assert second["division"]["quality"]["corrupted"] == second["noise"]["corrupted"] > 0
    assert np.isfinite(summary(run)["avg_mpjpe_mm"]).all()


def test_an_overwrite_leaves_nothing_of_the_old_stream(stream_root, tmp_path, monkeypatch):
    """Issue 28, item 4, for streams: the old stream's files go before the new config is written."""
    import poise.continual.runner as runner

    old = tmp_path / "s"
    old.mkdir()
    for name in ("checkpoint.pt", "tasks.json", "results.json", "noise.json", "losses-task0.npz", "config.yaml"):
        (old / name).write_text("old")
    (old / "notes.txt").write_text("mine")

    def killed(run, progress=True):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "stream", killed)
    with pytest.raises(KeyboardInterrupt):
        run_continual(config(stream_root, tmp_path, name="s", lr=0.01), progress=False, overwrite=True)
    assert sorted(p.name for p in old.iterdir()) == [".lock", "config.yaml", "env.json", "notes.txt"]
    assert ContinualConfig.load(old / "config.yaml").lr == 0.01
