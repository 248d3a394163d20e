"""``poise bench``: the plan, the statistics, and a full tiny preset from the command line."""

import csv
import math

import pytest

from poise import bench
from poise.cli import main


def test_the_plan_has_every_cell_once():
    preset = bench.PRESETS["standard"]
    configs = bench.plan(preset, "data", __import__("pathlib").Path("out"))
    names = [c.run_name for c in configs]
    assert len(names) == len(set(names))
    cells = len(preset.methods) * len(preset.fusions) + len(preset.subsets) - 1  # the full set is baseline's cell
    assert len(configs) == cells * len(preset.seeds)
    assert {tuple(c.modalities) for c in configs if c.method != "baseline"} == {bench.ALL}


def test_statistics_are_paired_by_seed():
    rows = [dict(method="a", seed=s, test_mpjpe_mm=v) for s, v in ((0, 10.0), (1, 14.0), (2, 12.0))]
    rows += [dict(method="b", seed=s, test_mpjpe_mm=v) for s, v in ((0, 9.0), (1, 12.0))]  # seed 2 missing
    assert bench.paired(rows, "test_mpjpe_mm", dict(method="a"), dict(method="b")) == [1.0, 2.0]
    assert bench.mean_sd([10.0, 14.0, 12.0]) == (12.0, 2.0)
    assert bench.fmt([10.0, 14.0, 12.0]) == "12.0 ± 2.0"
    assert bench.fmt([3.0]) == "3.0" and math.isnan(bench.mean_sd([3.0])[1])


def test_tiny_bench_writes_tables_plots_and_resumes(tiny, tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["bench", "--preset", "tiny", "--data", str(tiny), "--split", "S3", "--out", str(out), "--quiet"]
    assert main(args + ["--jobs", "2"]) == 0
    for name in ("report.md", "results.csv", "methods.png", "subsets.png", "contributions.png"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 6  # (baseline, relearn) x 2 seeds + the rgb subset x 2 seeds
    report = (out / "report.md").read_text()
    base = [float(r["test_mpjpe_mm"]) for r in rows if r["method"] == "baseline" and r["subset"] == "all"]
    assert f"| baseline | {bench.fmt(base)} |" in report
    rgb = [float(r["test_mpjpe_mm"]) for r in rows if r["subset"] == "R"]
    assert f"| R | {bench.fmt(rgb)} |" in report
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/checkpoint.pt")}
    assert main(args) == 0  # finished runs are read back, not retrained
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("runs/*/checkpoint.pt")}
    assert "Findings" in capsys.readouterr().out


def test_bench_errors_name_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="poise simulate"):
        bench.bench("quick", str(tmp_path / "missing"), tmp_path / "out")
    with pytest.raises(ValueError, match="choose one of"):
        bench.bench("huge", str(tmp_path), tmp_path / "out")
