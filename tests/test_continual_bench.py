"""``poise continual-bench``: the plan matches 001 Table 4's rows, the tiny preset runs end to end and reads back."""

import csv

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
    # Fig. 3 needs the probe without gradient-stop on exactly one run per seed
    assert [compare.ablation_label(c.method, c.ablate) for c in configs if c.compare_gradient_stop] == ["ours"] * 2
    # what NIS names when nothing is corrupted: ours on a clean stream, once per seed
    assert sum(c.noise == "none" and c.method == "ours" for c in configs) == 2
    assert len({c.run_name for c in configs}) == len(configs)


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
    for heading in ("001 Table 2 analogue", "NIS quality", "Task x task MPJPE", "Findings"):
        assert heading in report
    assert "| naive | " in report and "| ours | " in report and "NIS (gradient-stop)" in report
    assert "| rgb | " in report.split("Which modality NIS names")[1]  # the tiny preset corrupts RGB
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 4 and {r["variant"] for r in rows} == {"naive", "ours"}
    assert all(0 <= float(r["nis_clean_precision"]) <= 1 for r in rows if r["variant"] == "ours")
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


def test_the_naming_confusion_counts_corrupted_against_named():
    rows = [{"naming": [["rgb", "rgb"], ["wifi-csi", "rgb"], ["none", "lidar"]]}, {"naming": [["rgb", "mmwave"]]}]
    table = compare.naming_confusion(rows, modalities=("rgb", "lidar", "mmwave", "wifi-csi"))
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert lines["rgb"] == "| rgb | 1 | 0 | 1 | 0 | 2 | 50% |"
    assert lines["wifi-csi"] == "| wifi-csi | 1 | 0 | 0 | 0 | 1 | 0% |"
    assert lines["none"] == "| none | 0 | 1 | 0 | 0 | 1 | - |"  # a clean task: any name is a false alarm
    assert "Named right in 33% of 3 noisy tasks" in table
