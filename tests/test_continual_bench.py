"""``poise continual-bench``: the plan matches 001 Table 4's rows, the tiny preset runs end to end and reads back."""

import csv

import numpy as np
import pytest

from poise.cli import main
from poise.continual import compare
from poise.continual.config import ContinualConfig


def test_table4_rows_run_exactly_the_parts_they_tick(tmp_path):
    configs = compare.plan(compare.PRESETS["small"], "data", tmp_path)
    by_variant = {compare.ablation_label(c.method, c.ablate): c for c in configs if c.seed == 0}
    for (a_ewc, relearn, nis), method, ablate in compare.ABLATION_ROWS:
        c = by_variant[compare.ablation_label(method, ablate)]
        assert (c.ewc == "adaptive", c.relearn, c.nis) == (a_ewc, relearn, nis)
    generic = by_variant[compare.ablation_label(*compare.GENERIC_FISHER_ROW)]
    assert generic.ewc == "generic" and generic.nis
    seeds = len(compare.PRESETS["small"].seeds)
    # Fig. 3 needs the probe without gradient-stop on exactly one run per seed
    assert [compare.variant_of(c) for c in configs if c.compare_gradient_stop] == ["ours"] * seeds
    # what NIS names when nothing is corrupted: ours on a clean stream, once per seed
    assert sum(c.noise == "none" and c.method == "ours" for c in configs) == seeds
    assert len({c.run_name for c in configs}) == len(configs)
    # like for like: ours with the baselines' online EWC, labelled as the table says
    like = [c for c in configs if compare.variant_of(c) == compare.LIKE_FOR_LIKE_LABEL]
    assert len(like) == seeds and all(c.ewc == "online" and c.nis and c.relearn for c in like)
    # the diagnostic streams: ours only, LiDAR fixed on one, both unaligned kinds
    diagnostic = {(c.noise, c.noisy_modality) for c in configs if c.seed == 0 and
                  (c.noisy_modality or c.noise != "raw") and c.noise != "none"}
    assert diagnostic == {("raw", "lidar"), ("unaligned", ""), ("unaligned_far", "")}


def test_ablating_ewc_drops_the_penalty_and_the_fisher():
    c = ContinualConfig(ablate=["ewc"])
    assert c.ewc == "none" and c.nis and c.relearn
    assert ContinualConfig.from_dict(c.to_dict()) == c  # the resolved switches round-trip through config.yaml
    with pytest.raises(ValueError, match="ablate"):
        ContinualConfig(method="ewc", ablate=["nis"])


def test_tiny_preset_writes_tables_plots_and_reads_back(stream_root, tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["continual-bench", "--preset", "tiny", "--data", str(stream_root), "--out", str(out), "--quiet"]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    for heading in ("001 Table 2 analogue", "What NIS sees", "per corrupted modality", "Task x task MPJPE", "Findings"):
        assert heading in report
    assert "| naive | " in report and "| ours | " in report and "NIS (gradient-stop)" in report
    assert "| rgb | " in report.split("Which modality NIS names")[1]  # the tiny preset corrupts RGB
    noise = report.split("per corrupted modality")[1].split("###")[0]
    assert "| raw | rgb | 2 |" in noise and "| unaligned_far | rgb | 2 |" in noise  # 2 seeds x 1 noisy task
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 8 and {r["variant"] for r in rows} == {"naive", "ours"}  # 2 seeds x (2 + control + far)
    tasks = list(csv.DictReader(open(out / "nis.csv")))
    noisy = [t for t in tasks if t["noise"] != "none"]  # and one clean control task per seed
    assert len(tasks) == 6 and len(noisy) == 4 and all(0 <= float(t["auc_after"]) <= 1 for t in noisy)
    assert {t["noise"] for t in noisy} == {"raw", "unaligned_far"} and {t["corrupted"] for t in noisy} == {"rgb"}
    assert all(float(t["source_mpjpe_mm"]) > 0 for t in tasks if t["noise"] == "unaligned_far")
    assert all(0 <= float(r["nis_clean_precision"]) <= 1 for r in rows if r["variant"] == "ours" and r["noise"] != "none")
    assert (out / "fig5.png").stat().st_size > 0 and (out / "fig3.png").stat().st_size > 0
    first = {r["run"]: r["avg_mpjpe_mm"] for r in rows}
    capsys.readouterr()
    assert main(args) == 0  # a second invocation reads every run back
    again = {r["run"]: r["avg_mpjpe_mm"] for r in csv.DictReader(open(out / "results.csv"))}
    assert again == first


def test_a_run_with_other_settings_is_named_not_reused(stream_root, tmp_path, capsys):
    preset = compare.PRESETS["tiny"]
    config = compare.plan(preset, str(stream_root), tmp_path)[0]
    (tmp_path / "runs" / config.run_name).mkdir(parents=True)
    changed = ContinualConfig.from_dict({**config.to_dict(), "epochs": 1})
    changed.save(tmp_path / "runs" / config.run_name / "config.yaml")
    (tmp_path / "runs" / config.run_name / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="epochs: 1 there, 2 asked"):
        compare.run_one(config)


def test_the_naming_confusion_counts_corrupted_against_named_with_none():
    rows = [{"naming": [["rgb", "rgb"], ["wifi-csi", "none"], ["none", "lidar"], ["none", "none"]]},
            {"naming": [["rgb", "mmwave"]]}]
    table = compare.naming_confusion(rows, modalities=("rgb", "lidar", "mmwave", "wifi-csi"))
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
    thresholds = compare.naming_thresholds(rows, (0, 1, 2))
    others = [0.2, 0.4, 5.0, 5.0]  # seed 0's: seeds 1 and 2
    assert thresholds[0]["rgb"] == pytest.approx(np.mean(others) + compare.THRESHOLD_SDS * np.std(others, ddof=1))
    assert thresholds[2]["lidar"] == pytest.approx(np.mean([-0.1, -0.3, -0.2, -0.4])
                                                   + compare.THRESHOLD_SDS * np.std([-0.1, -0.3, -0.2, -0.4], ddof=1))
    assert compare.naming_thresholds([control(0, [0.1])], (0, 1)) == {0: {}, 1: {}}  # one clean drop: no threshold
