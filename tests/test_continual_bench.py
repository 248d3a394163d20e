"""``poise continual-bench``: the plan matches 001 Table 4's rows, the tiny preset runs end to end and reads back."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from poise.cli import main
from poise.bench import continual as cbench
from poise.continual.config import ContinualConfig
from poise.data.layout import MODALITIES as ALL


def test_table4_rows_run_exactly_the_parts_they_tick(tmp_path):
    configs = cbench.plan(cbench.PRESETS["small"], "data", tmp_path)
    by_variant = {cbench.ablation_label(c.recipe, c.ablate): c for c in configs if c.seed == 0}
    for (a_ewc, relearn, nis), recipe, ablate in cbench.ABLATION_ROWS:
        c = by_variant[cbench.ablation_label(recipe, ablate)]
        assert (bool(c.ewc) and c.ewc["mode"] == "adaptive", bool(c.relearn), bool(c.nis)) == (a_ewc, relearn, nis)
        assert not c.relearn or c.relearn["relearn_epoch"] == 1  # the preset's r, wherever re-learning is on
    generic = by_variant[cbench.ablation_label(*cbench.GENERIC_FISHER_ROW)]
    assert generic.ewc["mode"] == "generic" and generic.nis
    seeds = len(cbench.PRESETS["small"].seeds)
    # Fig. 3 needs the probe without gradient-stop on exactly one run per seed
    assert [cbench.variant_of(c) for c in configs if c.nis and c.nis["compare_gradient_stop"]] == ["ours"] * seeds
    # what NIS names when nothing is corrupted: ours on a clean stream, once per seed
    assert sum(c.noise == "none" and c.recipe == "ours" for c in configs) == seeds
    assert len({c.run_name for c in configs}) == len(configs)
    # like for like: ours with the baselines' online EWC, labelled as the table says
    like = [c for c in configs if cbench.variant_of(c) == cbench.LIKE_FOR_LIKE_LABEL]
    assert len(like) == seeds and all(c.ewc["mode"] == "online" and c.nis and c.relearn for c in like)
    # the diagnostic streams: ours only, LiDAR fixed on one, both unaligned kinds
    diagnostic = {(c.noise, c.noisy_modality) for c in configs if c.seed == 0 and
                  (c.noisy_modality or c.noise != "raw") and c.noise != "none"}
    assert diagnostic == {("raw", "lidar"), ("unaligned", ""), ("unaligned_far", "")}


def test_ablating_ewc_drops_the_penalty_and_the_fisher():
    c = ContinualConfig(ablate=["ewc"])
    assert c.ewc is False and c.nis and c.relearn
    assert ContinualConfig.from_dict(c.to_dict()) == c  # the resolved strategies round-trip through config.yaml
    with pytest.raises(ValueError, match="ablate"):
        ContinualConfig(recipe="ewc", ablate=["nis"])


def test_tiny_preset_writes_tables_plots_and_reads_back(stream_root, tmp_path, capsys):
    """The preset's three seeds: each seed's thresholds come from the two others' clean tasks (one per seed)."""
    out = tmp_path / "bench"
    data = tmp_path / "data"  # the root under a name that can be taken away (a clean clone has no data)
    data.symlink_to(stream_root)
    args = ["continual-bench", "--preset", "tiny", "--data", str(data), "--out", str(out), "--quiet"]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    for heading in ("001 Table 2 analogue", "What NIS sees", "per corrupted modality", "Task x task MPJPE", "Findings"):
        assert heading in report
    assert "| naive | " in report and "| ours | " in report and "GMM split (gradient-stop)" in report
    assert "| rgb | " in report.split("Which modality NIS names")[1]  # the tiny preset corrupts RGB
    noise = report.split("per corrupted modality")[1].split("###")[0]
    assert "| raw | rgb | 3 |" in noise and "| unaligned_far | rgb | 3 |" in noise  # 3 seeds x 1 noisy task
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 12 and {r["variant"] for r in rows} == {"naive", "ours"}  # 3 seeds x (2 + control + far)
    assert all(0 <= float(r["nis_clean_precision"]) <= 1 for r in rows if r["variant"] == "ours" and r["noise"] != "none")
    tasks = list(csv.DictReader(open(out / "nis.csv")))
    noisy = [t for t in tasks if t["noise"] != "none"]  # and one clean control task per seed
    assert len(tasks) == 9 and len(noisy) == 6
    assert all(0 <= float(t[k]) <= 1 for t in noisy for k in ("auc_before", "auc_after"))
    assert all(float(t["loss_ratio_before"]) > 0 for t in noisy)
    assert {t["noise"] for t in noisy} == {"raw", "unaligned_far"} and {t["corrupted"] for t in noisy} == {"rgb"}
    assert all(float(t["source_mpjpe_mm"]) > 0 for t in tasks if t["noise"] == "unaligned_far")
    for t in noisy:  # the GMM's split as made, and what the task trained on (everything when NIS named none)
        assert all(0 <= float(t[k]) <= 1 for k in ("gmm_clean_precision", "trained_clean_precision"))
        if t["named"] == "none":
            assert float(t["trained_noisy_recall"]) == 0
    # each seed's thresholds: the other two seeds' clean drops, kept in thresholds.json, used by its noisy runs
    thresholds = json.loads((out / "thresholds.json").read_text())
    clean = {int(t["seed"]): {m: float(t[f"drop_{m}"]) for m in ALL} for t in tasks if t["noise"] == "none"}
    for seed in (0, 1, 2):
        others = [clean[s] for s in clean if s != seed]
        for m in ALL:
            values = [d[m] for d in others]
            assert thresholds[str(seed)][m] == pytest.approx(np.mean(values) + 3 * np.std(values, ddof=1))
    for run in (out / "runs").iterdir():
        config = ContinualConfig.load(run / "config.yaml")
        if config.noise == "none":  # the control measures only
            assert config.nis["separate"] == "never" and config.nis["threshold"] == {}
            nis = json.loads((run / "tasks.json").read_text())[1]["nis"]
            assert nis["named"] == "none" and not nis["separated"]
        elif config.nis:
            assert config.nis["threshold"] == pytest.approx(thresholds[str(config.seed)])
    assert (out / "fig5.png").stat().st_size > 0 and (out / "fig3.png").stat().st_size > 0
    first = {r["run"]: r["avg_mpjpe_mm"] for r in rows}
    capsys.readouterr()
    assert main(args) == 0  # a second invocation reads every run back
    again = {r["run"]: r["avg_mpjpe_mm"] for r in csv.DictReader(open(out / "results.csv"))}
    assert again == first
    capsys.readouterr()
    assert main(args + ["--plan"]) == 0  # the plan asks for the noisy runs under the recorded thresholds too
    plan = capsys.readouterr().out
    assert "refused" not in plan and "12 finished (read back), 0 tasks left" in plan
    for checkpoint in out.glob("runs/*/checkpoint.pt"):  # carried to another machine as small files only
        checkpoint.unlink()
    written = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/tasks.json")}
    assert main(args) == 0
    assert {r["run"]: r["avg_mpjpe_mm"] for r in csv.DictReader(open(out / "results.csv"))} == first
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/tasks.json")} == written  # nothing retrained
    data.unlink()  # a clean clone: the committed small files, no data
    assert main(args) == 0
    assert {r["run"]: r["avg_mpjpe_mm"] for r in csv.DictReader(open(out / "results.csv"))} == first
    moved = tmp_path / "elsewhere" / "bench"  # a copy under another --out (its configs name the old one)
    shutil.copytree(out, moved)
    elsewhere = [a if a != str(out) else str(moved) for a in args]
    capsys.readouterr()
    assert main(elsewhere[:-1]) == 0  # not --quiet: the lines say what was read back
    assert [r["avg_mpjpe_mm"] for r in csv.DictReader(open(moved / "results.csv"))] == list(first.values())
    assert "read back; trained in" in "".join(capsys.readouterr())
    other = elsewhere[:4] + [str(tmp_path / "other-data")] + elsewhere[5:]  # no record says it is the same data
    assert main(other) != 0 and f"pass --data {data} to read it back" in capsys.readouterr().err
    results = next(out.glob("runs/*/results.json"))
    unfinished = json.loads(results.read_text())
    results.write_text(json.dumps({**unfinished, "tasks_done": 1}))
    capsys.readouterr()
    err = (main(args), capsys.readouterr().err)[1]  # one left to train needs the data
    assert "no such MM-Fi root, and 1 of the preset's 12 runs are not finished" in err
    assert f"poise simulate --preset tiny-continual --out {data}" in err


def test_thresholds_unset_for_lack_of_drops_are_set_later_and_force_sets_them_anew(tmp_path):
    def control(seed, drops):
        return {"seed": seed, "nis_tasks": [{"drops": {"rgb": d}} for d in drops]}

    assert cbench.settled_thresholds(tmp_path, [control(0, [0.1]), control(1, [0.2])], (0, 1)) == {0: {}, 1: {}}
    rows = [control(0, [0.1]), control(1, [0.2]), control(2, [0.4])]
    later = cbench.settled_thresholds(tmp_path, rows, (0, 1, 2))  # two drops under the other seeds now
    assert later[0]["rgb"] == pytest.approx(np.mean([0.2, 0.4]) + 3 * np.std([0.2, 0.4], ddof=1))
    assert cbench.read_thresholds(tmp_path / "thresholds.json") == later
    retrained = [control(0, [1.0]), control(1, [2.0]), control(2, [4.0])]
    assert cbench.settled_thresholds(tmp_path, retrained, (0, 1, 2)) == later  # set: kept
    anew = cbench.settled_thresholds(tmp_path, retrained, (0, 1, 2), force=True)
    assert anew[0]["rgb"] == pytest.approx(np.mean([2.0, 4.0]) + 3 * np.std([2.0, 4.0], ddof=1))
    kept = cbench.settled_thresholds(tmp_path, retrained[:2], (0, 1), force=True)  # --force --seeds 0 1
    assert cbench.read_thresholds(tmp_path / "thresholds.json") == {**anew, **kept}  # seed 2's stays
    (tmp_path / "thresholds.json").write_text('{"0": {"rgb": 1.0}')  # cut short
    with pytest.raises(ValueError, match=r"thresholds.json: not a bench's naming thresholds.*delete it"):
        cbench.settled_thresholds(tmp_path, retrained, (0, 1, 2))
    assert cbench.settled_thresholds(tmp_path, retrained, (0, 1, 2), force=True) == anew  # --force repairs it


def test_thresholds_once_set_stay_when_seeds_are_added(tmp_path):
    def control(seed, drops):
        return {"seed": seed, "nis_tasks": [{"drops": {"rgb": d}} for d in drops]}

    first = cbench.settled_thresholds(tmp_path, [control(0, [0.1, 0.3]), control(1, [0.2, 0.4])], (0, 1))
    rows = [control(0, [0.1, 0.3]), control(1, [0.2, 0.4]), control(2, [9.0, 9.0])]
    more = cbench.settled_thresholds(tmp_path, rows, (0, 1, 2))
    assert more[0] == first[0] and more[1] == first[1]  # finished runs keep the thresholds they ran with
    assert more[2]["rgb"] == pytest.approx(np.mean([0.1, 0.3, 0.2, 0.4]) + 3 * np.std([0.1, 0.3, 0.2, 0.4], ddof=1))
    assert json.loads((tmp_path / "thresholds.json").read_text()).keys() == {"0", "1", "2"}


def test_a_run_from_an_older_poise_is_not_passed_off_as_this_benchs(tmp_path):
    config = cbench.plan(cbench.PRESETS["tiny"], "data", tmp_path)[0]
    run_dir = tmp_path / "runs" / config.run_name
    run_dir.mkdir(parents=True)
    old = {k: v for k, v in config.to_dict().items() if k not in ("reference_holdout", "precision")}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(old))
    (run_dir / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="older poise .*precision, reference_holdout"):
        cbench.run_one(config)


@pytest.mark.parametrize("checkpoint", [True, False])  # without: begun, killed in its first task or carried
def test_a_run_with_other_settings_is_named_not_reused(stream_root, tmp_path, checkpoint):
    preset = cbench.PRESETS["tiny"]
    config = cbench.plan(preset, str(stream_root), tmp_path)[0]
    run_dir = tmp_path / "runs" / config.run_name
    run_dir.mkdir(parents=True)
    changed = ContinualConfig.from_dict({**config.to_dict(), "epochs": 1})
    changed.save(run_dir / "config.yaml")
    if checkpoint:
        (run_dir / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="epochs: 1 there, 2 asked"):
        cbench.run_one(config)
    assert ContinualConfig.load(run_dir / "config.yaml").epochs == 1  # named, not wiped
    ContinualConfig.from_dict({**config.to_dict(), "data": "data/elsewhere"}).save(run_dir / "config.yaml")
    then = "to continue it" if checkpoint else "to train it on that data"
    with pytest.raises(ValueError, match=f"made on the data at data/elsewhere.*pass --data data/elsewhere {then}"):
        cbench.run_one(config)
    (run_dir / "config.yaml").write_text("epochs: [2\n")
    with pytest.raises(ValueError, match="config.yaml: cannot read the config"):
        cbench.run_one(config)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({**config.to_dict(), "lrr": 0.01}))
    with pytest.raises(ValueError, match="unknown key 'lrr' \\(did you mean 'lr'\\?\\)"):
        cbench.run_one(config)


def test_the_data_defaults_to_the_presets_root_and_the_command_names_what_was_given(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(cbench, "continual_bench", lambda preset, data, out, **kw: seen.append(
        (cbench.PRESETS[preset].data if data is None else data, kw["command"])) or "")
    assert main(["continual-bench", "--preset", "small", "--plan"]) == 0
    assert main(["continual-bench", "--preset", "paper", "--plan"]) == 0
    assert main(["continual-bench", "--preset", "small", "--data", "data/mmfi-p1", "--out", "runs/continual-p1",
                 "--jobs", "2", "--plan"]) == 0
    assert seen == [("data/mmfi-p1", "poise continual-bench --preset small"),
                    ("data/mmfi-continual", "poise continual-bench --preset paper"),
                    ("data/mmfi-p1", "poise continual-bench --preset small --data data/mmfi-p1 --out runs/continual-p1 "
                                     "--jobs 2")]  # the committed report's Command line


def test_a_finished_run_without_its_config_is_refused_not_read_back(tmp_path):
    config = cbench.plan(cbench.PRESETS["tiny"], "data", tmp_path)[0]
    run_dir = tmp_path / "runs" / config.run_name
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="holds checkpoint.pt but no config.yaml"):  # begun: not retrained either
        cbench.run_one(config)
    (run_dir / "results.json").write_text(json.dumps({"tasks_done": 2}))
    with pytest.raises(ValueError, match="results.json and checkpoint.pt but no config.yaml"):
        cbench.run_one(config)


def test_the_naming_confusion_counts_corrupted_against_named_with_none():
    rows = [{"naming": [["rgb", "rgb"], ["wifi-csi", "none"], ["none", "lidar"], ["none", "none"]]},
            {"naming": [["rgb", "mmwave"]]}]
    table = cbench.naming_confusion(rows, modalities=("rgb", "lidar", "mmwave", "wifi-csi"))
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert lines["rgb"] == "| rgb | 1 | 0 | 1 | 0 | 0 | 2 | 50% |"
    assert lines["wifi-csi"] == "| wifi-csi | 0 | 0 | 0 | 0 | 1 | 1 | 0% |"
    assert lines["none"] == "| none | 0 | 1 | 0 | 0 | 1 | 2 | 50% |"  # a clean task: any name is a false alarm
    assert "False alarms (a modality named on a clean task): 1 of 2 clean tasks (50%)" in table
    assert "Named right in 33% of 3 noisy tasks" in table and "answered none in 33%" in table


def test_each_seeds_thresholds_come_from_the_other_seeds_clean_tasks():
    def control(seed, drops):
        return {"seed": seed, "nis_tasks": [{"drops": {"rgb": d, "lidar": -d}} for d in drops]}

    rows = [control(0, [0.1, 0.3]), control(1, [0.2, 0.4]), control(2, [5.0, 5.0])]
    thresholds = cbench.naming_thresholds(rows, (0, 1, 2))
    others = [0.2, 0.4, 5.0, 5.0]  # seed 0's: seeds 1 and 2
    assert thresholds[0]["rgb"] == pytest.approx(np.mean(others) + cbench.THRESHOLD_SDS * np.std(others, ddof=1))
    assert thresholds[2]["lidar"] == pytest.approx(np.mean([-0.1, -0.3, -0.2, -0.4])
                                                   + cbench.THRESHOLD_SDS * np.std([-0.1, -0.3, -0.2, -0.4], ddof=1))
    assert cbench.naming_thresholds([control(0, [0.1])], (0, 1)) == {0: {}, 1: {}}  # one clean drop: no threshold


@pytest.mark.parametrize("preset", ["small", "p1"])
def test_the_plan_lists_every_run_with_an_estimate_and_trains_nothing(tmp_path, capsys, preset):
    out = tmp_path / "out"
    assert main(["continual-bench", "--preset", preset, "--data", str(tmp_path / "none"), "--out", str(out),
                 "--plan"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    runs = cbench.plan(cbench.PRESETS[preset], "data", out)
    assert len(lines) == len(runs) + 1 and all(c.run_name in text for c, text in zip(runs, lines))
    tasks = sum(c.tasks or 7 for c in runs)
    assert f"{len(runs)} runs, {tasks} tasks" in lines[-1] and " h with --jobs 2" in lines[-1]
    assert "Nothing was trained" in lines[-1] and not out.exists()

    first = runs[0]  # a finished run leaves the estimate, a begun one keeps only its tasks left
    (Path(first.out) / first.run_name).mkdir(parents=True)
    (Path(first.out) / first.run_name / "results.json").write_text(json.dumps({"tasks_done": first.tasks or 7}))
    assert main(["continual-bench", "--preset", preset, "--data", str(tmp_path / "none"), "--out", str(out),
                 "--plan"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()  # results without config.yaml: refused, as run_one does
    assert f"{first.run_name}" in printed[0] and "refused: " in printed[0] and "no config.yaml" in printed[0]
    assert "; 1 refused as they are" in printed[-1]
    runs = cbench.plan(cbench.PRESETS[preset], str(tmp_path / "none"), out)  # the configs the command plans
    first, second = runs[:2]
    first.save(Path(first.out) / first.run_name / "config.yaml")
    assert main(["continual-bench", "--preset", preset, "--data", str(tmp_path / "none"), "--out", str(out),
                 "--plan"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"1 finished (read back), {tasks - (first.tasks or 7)} tasks left" in last and "refused" not in last
    # begun: 1 task done, resumable only with its checkpoint
    (Path(second.out) / second.run_name).mkdir(parents=True)
    (Path(second.out) / second.run_name / "results.json").write_text(json.dumps({"tasks_done": 1}))
    second.save(Path(second.out) / second.run_name / "config.yaml")
    for checkpoint, left in ((False, tasks - (first.tasks or 7)), (True, tasks - (first.tasks or 7) - 1)):
        if checkpoint:
            (Path(second.out) / second.run_name / "checkpoint.pt").write_bytes(b"")
        assert main(["continual-bench", "--preset", preset, "--data", str(tmp_path / "none"), "--out", str(out),
                     "--plan"]) == 0
        assert f"{left} tasks left" in capsys.readouterr().out.strip().splitlines()[-1]
