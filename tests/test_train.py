"""The training loop: a run directory with everything in it, exact resume, configs that reject bad keys. What
every method must do in it (learn, resume exactly, ...) is ``test_method_contract.py``'s."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from poise import methods
from poise.config import TrainConfig
from poise.train import resume, train


def tiny_config(tiny, tmp_path, **kw) -> TrainConfig:
    values = dict(data=str(tiny), split="S3", epochs=2, batch_size=64, dim=16, lidar_points=64, mmwave_points=16,
                  assess_frames=128, out=str(tmp_path / "runs"), name="t", lr_step=1)
    values.update(kw)
    return TrainConfig(**values)


def test_a_run_writes_its_directory_and_learns(tiny, tmp_path):
    from poise.methods.base import RunView

    run = train(tiny_config(tiny, tmp_path, epochs=3), progress=False)
    assert isinstance(run, RunView)  # what the hooks are told they see (the Protocol's every member)
    d = run.dir
    for name in ("config.yaml", "metrics.csv", "metrics.json", "contributions.csv", "checkpoint.pt", "curves.png",
                 "contributions.png", "method.json", "data.json"):
        assert (d / name).is_file(), name
    history = json.loads((d / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_mpjpe_mm"] < history[0]["train_mpjpe_mm"]
    assert history[1]["lr"] == pytest.approx(0.5 * history[0]["lr"])  # step decay each epoch here
    assert set(run.scores()) == {"rgb", "lidar", "mmwave", "wifi-csi"}
    assert all(h["unimodal_std_mm_rgb"] >= 0 for h in history)
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(tiny, tmp_path, epochs=3), progress=False)


@pytest.mark.parametrize("method, params", [("baseline", {}), ("awc", {"window": 3, "fisher_frames": 64})])
def test_the_evaluation_cadence_changes_no_number(tiny, tmp_path, method, params):
    """Evaluating and assessing every epoch, or on epoch 1, every 3rd and the last 20 % only: the same numbers at
    every epoch both record, the same training everywhere, and the same model at the end. AWC reads the scores
    in its window, so those epochs are assessed (and recorded) under either cadence."""
    kw = dict(epochs=6, method=method, method_params=params, lr_step=10, eval_stride=2)
    every = train(tiny_config(tiny, tmp_path, eval_every=1, name="every", **kw), progress=False)
    sparse = train(tiny_config(tiny, tmp_path, eval_every=3, name="sparse", **kw), progress=False)
    assert [("test_mpjpe_mm" in h) for h in sparse.history] == [True, False, True, False, True, True]
    assert all("test_mpjpe_mm" in h and "shapley_rgb" in h for h in every.history)
    if method == "awc":  # penalised epochs 2-3 read the scores at the end of epochs 1-3
        assert [("shapley_rgb" in h) for h in sparse.history] == [True, True, True, False, True, True]
    for a, b in zip(every.history, sparse.history):
        assert set(b) <= set(a)
        for key in b:
            if key != "seconds":
                assert a[key] == b[key], (a["epoch"], key)
    for (name, p), q in zip(every.model.state_dict().items(), sparse.model.state_dict().values()):
        assert torch.equal(p, q), name
    rows = (sparse.dir / "contributions.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(h["epoch"]) for h in sparse.history if "shapley_rgb" in h]


def test_drift_shows_whom_awc_holds_back(tiny, tmp_path):
    """Every run records how far each encoder moved since its first epoch (``drift_<m>``); joint training and AWC
    of one seed are the same run until AWC's window opens, and a strong penalty then keeps every encoder nearer
    its anchor than joint training's (0.5-0.7x here: under Adam a dominant pull moves a parameter by about the
    learning rate a step, back and forth about theta*), with a force ratio recorded per encoder."""
    kw = dict(epochs=3, lr_step=10)
    base = train(tiny_config(tiny, tmp_path, name="base", **kw), progress=False).history
    awc = train(tiny_config(tiny, tmp_path, name="awc", method="awc", method_params={
        "window": 2, "alpha_s": 1e7, "alpha_i": 1e7, "fisher_frames": 64}, **kw), progress=False).history
    modalities = ("rgb", "lidar", "mmwave", "wifi-csi")
    assert base[0]["train_mpjpe_mm"] == awc[0]["train_mpjpe_mm"]  # the same run until the window opens
    assert base[0]["test_mpjpe_mm"] == awc[0]["test_mpjpe_mm"]
    for b, a in zip(base[1:], awc[1:]):
        for m in modalities:
            assert 0 < a[f"drift_{m}"] < 0.8 * b[f"drift_{m}"], (a["epoch"], m)  # Adam: it oscillates about theta*
            assert a[f"awc_force_{m}"] > 10  # the penalty's pull dominates the loss's
    assert base[1]["drift_rgb"] < base[2]["drift_rgb"]  # joint training keeps moving


def test_env_json_records_code_libraries_device_and_data_per_start_and_resume(tiny, tmp_path, capsys):
    """Issue 31, item 6: which poise (and git commit, from a checkout), which libraries, which device and which
    data (generator and a fingerprint of its files) made a run; a resume adds its own record."""
    import poise
    from poise.cli import main

    train(tiny_config(tiny, tmp_path, epochs=1, name="e", device="cpu"), progress=False)
    run_dir = tmp_path / "runs" / "e"
    (first,) = json.loads((run_dir / "env.json").read_text())
    assert first["poise"] == poise.__version__ and first["torch"] == torch.__version__ and first["device"] == "cpu"
    assert first["data"]["generator"]["preset"] == "tiny" and len(first["data"]["fingerprint"]) == 32
    assert first["git"] is None or len(first["git"]["commit"]) == 40
    resume(run_dir, progress=False, epochs=2)
    records = json.loads((run_dir / "env.json").read_text())
    assert len(records) == 2 and records[1]["data"]["fingerprint"] == first["data"]["fingerprint"]
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"poise {poise.__version__}"
    version = subprocess.run([sys.executable, "-m", "poise", "--version"], capture_output=True, text=True,
                             timeout=120)
    assert version.stdout.strip() == f"poise {poise.__version__}", version.stderr  # python -m poise: the same CLI


def test_progress_goes_through_the_poise_logger_and_the_command_line_prints_it(tiny, tmp_path, capsys, caplog):
    """Issue 31, item 6: the library logs through ``logging.getLogger("poise")`` (a Python user silences or
    redirects it); ``poise train`` prints those lines on stderr."""
    import logging

    import yaml

    from poise.cli import main

    with caplog.at_level(logging.INFO, logger="poise"):
        train(tiny_config(tiny, tmp_path, epochs=1, name="logged"), progress=True)
    assert any(r.name == "poise.train" and "epoch 1/1: train" in r.getMessage() for r in caplog.records)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny, tmp_path, epochs=1, name="cli").to_dict()))
    assert main(["train", "--config", str(path)]) == 0
    assert "epoch 1/1: train" in capsys.readouterr().err


def test_a_modality_subset_trains_only_those_encoders(tiny, tmp_path):
    run = train(tiny_config(tiny, tmp_path, epochs=1, modalities=["rgb", "lidar"]), progress=False)
    assert run.model.modalities == ("rgb", "lidar") and set(run.scores()) == {"rgb", "lidar"}


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'epochs'"):
        TrainConfig.from_dict({"epoch": 3})
    path = tmp_path / "c.yaml"
    path.write_text("fusion: mlp\nbatch_sise: 8\n")
    with pytest.raises(ValueError, match=r"c\.yaml: unknown key 'batch_sise' \(did you mean 'batch_size'\?\)"):
        TrainConfig.load(path)
    with pytest.raises(ValueError, match="'epochs' must be a positive integer"):
        TrainConfig(epochs=0)


def test_methods_are_found_by_name_and_reject_unknown_parameters():
    assert "baseline" in methods.available()
    with pytest.raises(ValueError, match="did you mean 'baseline'"):
        methods.get("baselin")
    with pytest.raises(ValueError, match="has no parameter 'alpha'"):
        methods.get("baseline", alpha=1.0)


def test_resume_of_a_folder_without_a_run_says_so(tmp_path):
    with pytest.raises(ValueError, match="not a run directory"):
        resume(tmp_path)


def test_a_damaged_checkpoint_is_named_and_a_shorter_resume_refused(tiny, tmp_path, capsys):
    from poise.cli import main

    run = train(tiny_config(tiny, tmp_path, epochs=2), progress=False)
    config = (run.dir / "config.yaml").read_text()
    assert main(["train", "--resume", str(run.dir), "--epochs", "1"]) == 2
    assert "trained 2 epochs already" in capsys.readouterr().err
    assert (run.dir / "config.yaml").read_text() == config  # the run's record is untouched
    for damage in (b"not a checkpoint", (run.dir / "checkpoint.pt").read_bytes()[:200]):
        (run.dir / "checkpoint.pt").write_bytes(damage)
        assert main(["train", "--resume", str(run.dir), "--epochs", "3"]) == 2
        err = capsys.readouterr().err
        assert "is not a readable poise checkpoint" in err and "weights_only" not in err
    torch.save({"model": {}}, run.dir / "checkpoint.pt")  # a torch file, but not a run's
    assert main(["train", "--resume", str(run.dir), "--epochs", "3"]) == 2
    assert "lacks method_modules" in capsys.readouterr().err


def test_two_processes_cannot_write_one_run_directory(tiny, tmp_path):
    from poise.runtime import run_lock

    config = tiny_config(tiny, tmp_path, epochs=1)
    run_dir = tmp_path / "runs" / config.run_name
    with run_lock(run_dir):  # as another process training into it would hold it
        with pytest.raises(FileExistsError, match="is being written by poise process .* on "):
            train(config, progress=False)
    assert [p.name for p in run_dir.iterdir()] == [".lock"]  # the refused run wrote nothing
    run = train(config, progress=False)  # released: the run goes ahead
    assert run.epoch == 1 and (run_dir / "checkpoint.pt").is_file()


def test_a_damaged_file_stops_training_by_name_unless_skip_is_asked_for(tiny, tmp_path, capsys):
    import shutil

    import yaml

    from poise.cli import main

    root = tmp_path / "root"
    shutil.copytree(tiny, root, ignore=shutil.ignore_patterns(".poise_cache"))
    bad = root / "E01" / "S01" / "A02" / "wifi-csi" / "frame005.mat"
    bad.write_bytes(b"truncated")
    config = tiny_config(root, tmp_path, epochs=1).to_dict()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--quiet"]) == 2
    assert str(bad) in capsys.readouterr().err
    with pytest.warns(UserWarning, match="train part: MM-Fi read report: 1 frames skipped"):
        assert main(["train", "--config", str(tmp_path / "c.yaml"), "--quiet", "--on-error", "skip"]) == 0
    assert yaml.safe_load((tmp_path / "runs" / "t" / "config.yaml").read_text())["on_error"] == "skip"


def test_rebuild_cache_builds_the_data_cache_again(tiny, tmp_path, monkeypatch):
    import yaml

    from poise.cli import main
    from poise.data import cache as cache_mod

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_config(tiny, tmp_path, epochs=1).to_dict()))
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--quiet", "--name", "a"]) == 0  # cache exists now
    built = []
    real = cache_mod.build
    monkeypatch.setattr(cache_mod, "build", lambda *a, **k: (built.append(a[0]), real(*a, **k)))
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--quiet", "--name", "b"]) == 0
    assert built == []
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--quiet", "--name", "c", "--rebuild-cache"]) == 0
    assert len(built) == 1  # once: the train and test parts share the cache


def test_contrib_reports_every_profit_for_a_trained_run(tiny, tmp_path, capsys):
    from poise.cli import main

    run = train(tiny_config(tiny, tmp_path, epochs=1), progress=False)
    assert main(["contrib", str(run.dir)]) == 0
    out = capsys.readouterr().out
    assert "| pearson |" in out and "| neg_mse |" in out and "output std (mm)" in out
    report = json.loads((run.dir / "contrib.json").read_text())
    assert set(report["scores"]["pearson"]) == {"rgb", "lidar", "mmwave", "wifi-csi"}
    assert (run.dir / "contrib.png").is_file()
    assert main(["contrib", str(tmp_path)]) == 2


def test_a_method_that_would_never_act_is_an_error(tiny, tmp_path):
    with pytest.raises(ValueError, match="would never act"):
        train(tiny_config(tiny, tmp_path, epochs=1, method="awc", name="a"), progress=False)
    with pytest.raises(ValueError, match="holdout"):
        train(tiny_config(tiny, tmp_path, epochs=3, method="gblending", name="g"), progress=False)
    with pytest.raises(ValueError, match="relearn_epoch"):
        train(tiny_config(tiny, tmp_path, epochs=2, method="relearn", method_params={"relearn_epoch": 2}),
              progress=False)
    with pytest.raises(ValueError, match="warmup"):
        train(tiny_config(tiny, tmp_path, epochs=2, method="modality_resample", method_params={"warmup": 2},
                          name="r"), progress=False)


def test_held_out_sequences_are_never_trained_on_and_validate_every_epoch(tiny, tmp_path):
    """On tiny, protocol P3 split S1 trains A02 on S31 and A03 on S01 and S31: the holdout (stratified by
    action) takes one of A03's two sequences, and never A02's only one."""
    from poise.epoch import epoch_order

    run = train(tiny_config(tiny, tmp_path, epochs=2, method="gblending", holdout=0.5, protocol="P3", split="S1",
                            method_params={"super_epoch": 1}), progress=False)
    g = run.method
    trained, held = set(run.train.sequence_of(run.train_rows)), set(run.train.sequence_of(run.val_rows))
    assert trained and held and not trained & held
    actions = lambda seqs: sorted(run.train.sequences[i].action for i in seqs)  # noqa: E731
    assert actions(held) == ["A03"] and actions(trained) == ["A02", "A03"]
    assert set(run.train.sequence_of(g.val_slice)) <= held and set(run.train.sequence_of(g.train_slice)) <= trained
    samples, _ = epoch_order(run)
    assert not set(run.train.sequence_of(samples)) & held
    assert all(h["val_mpjpe_mm"] > 0 for h in run.history)
    assert len(g.history) == 2 and sum(g.weights.values()) == pytest.approx(1.0)
    assert g.weights != {k: 1 / 5 for k in g.weights}  # the estimate moved the weights off uniform
    assert run.history[-1]["gblending_w_fused"] == g.weights["fused"]
    assert {g["name"] for g in run.optimizer.param_groups} >= {"gblending_heads", "fusion", "rgb"}
    with pytest.raises(ValueError, match="super_epoch"):
        train(tiny_config(tiny, tmp_path, epochs=2, method="gblending", name="g", holdout=0.5, protocol="P3", split="S1",
                          method_params={"super_epoch": 2}), progress=False)
    with pytest.raises(ValueError, match="single training sequence"):  # split S3: one sequence per action
        train(tiny_config(tiny, tmp_path, epochs=2, holdout=0.5, name="h"), progress=False)


def test_the_paper_encoders_train_through_the_same_loop(tiny, tmp_path):
    """The config's ``encoder: paper`` reaches the model (RGB and mmWave only, to stay quick on a CPU; every
    paper encoder is tested on its own in test_paper_encoders.py)."""
    from poise.models.paper import PointTransformer, TemporalConvNet

    run = train(tiny_config(tiny, tmp_path, epochs=1, encoder="paper", rgb_window=1, batch_size=32, train_stride=4,
                            modalities=["rgb", "mmwave"], name="paper"), progress=False)
    assert {m: type(e) for m, e in run.model.encoders.items()} == {"rgb": TemporalConvNet, "mmwave": PointTransformer}
    assert run.model.encoders["rgb"].receptive_field == 3
    assert all(math.isfinite(v) for v in run.history[0].values())
    with pytest.raises(ValueError, match="encoder"):
        tiny_config(tiny, tmp_path, encoder="huge")


def test_device_is_validated_and_batches_move(tiny, tmp_path):
    from poise.runtime import resolve_device, to_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        tiny_config(tiny, tmp_path, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")
    batch = to_device({"gt": torch.zeros(2, 17, 3), "subject": ["S01", "S02"]}, "cpu")
    assert batch["subject"] == ["S01", "S02"] and batch["gt"].device.type == "cpu"


def test_a_diverging_run_stops_with_the_learning_rate_named(tiny, tmp_path):
    """The error names the learning rate, and crosses a process boundary whole (a bench's workers send it to
    their parent by pickling)."""
    import pickle

    from poise.errors import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="diverged.*'lr'") as caught:
        train(tiny_config(tiny, tmp_path, epochs=1, optimizer="sgd", lr=1e6, name="boom"), progress=False)
    again = pickle.loads(pickle.dumps(caught.value))
    assert str(again) == str(caught.value) and again.epoch == 1 and str(again.loss) == str(caught.value.loss)


def test_train_subjects_draws_nested_subject_sets_per_action(tmp_path):
    from conftest import write_tree

    from poise.data.dataset import MMFiDataset
    from poise.errors import PoiseError
    from poise.selection import subject_rows

    root = write_tree(tmp_path / "mmfi", subjects=("S01", "S02", "S03", "S33"), actions=("A02", "A03"), n_frames=5)
    train = MMFiDataset(root, protocol="P1", split="S3", part="train", progress=False, cache_dir=tmp_path / "cache")

    def subjects(rows) -> dict:
        seqs = [train.sequences[i] for i in np.unique(train.sequence_of(rows))]
        return {a: {s.subject for s in seqs if s.action == a} for a in ("A02", "A03")}

    assert len(subject_rows(train, 0, seed=0)) == len(train)
    one, two = subjects(subject_rows(train, 1, seed=0)), subjects(subject_rows(train, 2, seed=0))
    assert all(len(one[a]) == 1 and len(two[a]) == 2 and one[a] <= two[a] for a in one)
    assert len(subject_rows(train, 2, seed=0)) == 2 * len(train) // 3
    with pytest.raises(PoiseError, match="'train_subjects' = 4: action A02 has only 3"):
        subject_rows(train, 4, seed=0)
    with pytest.raises(PoiseError, match="'train_subjects' must be an integer >= 0"):
        TrainConfig(train_subjects=-1)


def test_an_overwrite_killed_in_its_first_epoch_leaves_nothing_of_the_old_run(tiny, tmp_path, monkeypatch):
    """Issue 28, item 4: the old run (lr 1e-3) replaced by one with lr 1e-2, killed before its first epoch ends,
    must not resume as the old run under the new config (nor be read back by a bench as finished)."""
    import poise.train as loop

    old = train(tiny_config(tiny, tmp_path, epochs=2), progress=False)
    (old.dir / "notes.txt").write_text("mine")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny, tmp_path, epochs=2, lr=0.01, seed=7), progress=False, overwrite=True)
    left = sorted(p.name for p in old.dir.iterdir())
    assert left == [".lock", "config.yaml", "data.json", "env.json", "method.json", "notes.txt"], left
    assert TrainConfig.load(old.dir / "config.yaml").lr == 0.01
    with pytest.raises(ValueError, match="not a run directory with a checkpoint"):
        resume(old.dir, progress=False)


def test_a_kill_between_the_result_files_and_the_checkpoint_resumes_to_the_same_files(tiny, tmp_path, monkeypatch):
    """Issue 28, item 3: killed after the last epoch's files are written but before its checkpoint, a resume
    retrains that epoch and ends with the files of an uninterrupted run; a resume with nothing left to train
    rewrites files a kill left behind."""
    import poise.train as loop

    straight = train(tiny_config(tiny, tmp_path, epochs=2, name="straight"), progress=False)
    save = loop.save_checkpoint

    def killed_at_the_last(run, *args, **kwargs):
        if run.epoch == 2:
            raise KeyboardInterrupt
        save(run, *args, **kwargs)

    monkeypatch.setattr(loop, "save_checkpoint", killed_at_the_last)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny, tmp_path, epochs=2, name="cut"), progress=False)
    monkeypatch.setattr(loop, "save_checkpoint", save)
    cut = tmp_path / "runs" / "cut"
    resume(cut, progress=False)

    def numbers(run_dir):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in json.loads((run_dir / "metrics.json").read_text())]

    assert numbers(cut) == numbers(straight.dir)
    assert (cut / "contributions.csv").read_text() == (straight.dir / "contributions.csv").read_text()
    history = json.loads((cut / "metrics.json").read_text())
    (cut / "metrics.json").write_text(json.dumps(history[:1]))  # as a kill mid-way through the old order left it
    (cut / "metrics.csv").write_text("epoch\n1\n")
    resume(cut, progress=False)
    assert numbers(cut) == numbers(straight.dir) and len((cut / "metrics.csv").read_text().splitlines()) == 3


def test_epoch_frames_trains_a_fresh_draw_of_k_frames_each_epoch(tiny, tmp_path):
    """A P1-scale root is too big to train on every frame every epoch: ``epoch_frames`` = k trains an epoch on k
    trained-on frames (k / batch_size steps), a new draw each epoch (from the seed and the epoch, so a resumed
    run repeats it)."""
    from poise.errors import PoiseError
    from poise.epoch import epoch_order
    from poise.train import build_run, train_epoch

    run = build_run(tiny_config(tiny, tmp_path, epochs=2, epoch_frames=50, holdout=0.5, protocol="P3", split="S1",
                                batch_size=16),
                    tmp_path / "r", progress=False)
    samples, first = epoch_order(run)
    run.epoch = 1
    _, second = epoch_order(run)
    assert len(first) == len(second) == 50 and len(set(first.tolist())) == 50
    assert set(samples[first].tolist()) <= set(run.train_rows.tolist())
    assert set(first.tolist()) != set(second.tolist())
    run.epoch = 0
    assert np.array_equal(epoch_order(run)[1], first)
    drawn = []
    batch = run.train.batch
    run.train.batch = lambda rows: drawn.append(len(rows)) or batch(rows)  # what the epoch asks the data for
    train_epoch(run, progress=False)
    assert drawn == [run.config.batch_size] * (50 // run.config.batch_size)  # batch_size 16: 3 full batches
    every = build_run(tiny_config(tiny, tmp_path, epochs=1, holdout=0.5, protocol="P3", split="S1", name="all"),
                      tmp_path / "a", progress=False)
    assert len(epoch_order(every)[1]) == len(every.train_rows) > 50
    with pytest.raises(PoiseError, match="'epoch_frames' must be an integer >= 0"):
        TrainConfig(epoch_frames=-5)


def test_a_full_disk_names_the_file_and_leaves_no_partial_file(tiny, tmp_path, monkeypatch):
    """Issue 28, item 6: torch says only "unexpected pos N vs M" when a checkpoint does not fit, and a text write
    says [Errno 28] without a path. Both now name the file, say "no space left", and leave no partial file."""
    import errno

    import poise.train as loop
    from poise.errors import PoiseError
    from poise.runtime import write_atomic

    run = train(tiny_config(tiny, tmp_path, epochs=1), progress=False)

    def full(state, path):
        Path(path).write_bytes(b"x" * 100)  # as far as it got
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 3938560 vs 3938448")

    monkeypatch.setattr(loop.torch, "save", full)
    with pytest.raises(PoiseError, match=r"checkpoint.pt: no space left on the device .* --resume"):
        loop.save_checkpoint(run)
    assert not (run.dir / "checkpoint.pt.tmp").exists() and (run.dir / "checkpoint.pt").is_file()

    def enospc(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", enospc)
    with pytest.raises(PoiseError, match="metrics.csv: no space left on the device"):
        write_atomic(run.dir / "metrics.csv", "epoch\n")
    assert not (run.dir / "metrics.csv.partial").exists()
    monkeypatch.setattr(Path, "write_text", lambda self, text: (_ for _ in ()).throw(OSError(errno.EACCES, "denied")))
    with pytest.raises(PermissionError):  # any other failure is not called a full disk
        write_atomic(run.dir / "metrics.csv", "epoch\n")
