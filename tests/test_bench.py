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


def _rows(method, subset, values):
    return [dict(method=method, fusion="concat", subset=subset, seed=s, test_mpjpe_mm=v, gt_std_mm=150.0,
                 **{f"unimodal_std_mm_{m}": 10.0 for m in bench.ALL}) for s, v in enumerate(values)]


def test_findings_say_whether_a_difference_beats_seed_noise():
    preset = bench.Preset(methods=("baseline", "awc", "relearn"), fusions=("concat",),
                          subsets=(("rgb", "lidar"), bench.ALL), seeds=(0, 1, 2), epochs=1)
    rows = (_rows("baseline", "all", [60.0, 62.0, 61.0]) + _rows("baseline", "R+L", [50.0, 51.0, 52.0])
            + _rows("awc", "all", [61.0, 60.0, 63.0])        # diffs +1, -2, +2: noise
            + _rows("relearn", "all", [70.0, 72.0, 71.0]))   # diffs +10 each: clear
    text = "\n".join(bench.findings(rows, preset))
    assert "loses to RGB + LiDAR" in text and "+10.0 ± 1.0 mm" in text and "paper 001 Table 3" in text
    awc = next(line for line in bench.findings(rows, preset) if line.startswith("awc"))
    assert "within seed noise" in awc and "95 % t-interval" in awc
    relearn = next(line for line in bench.findings(rows, preset) if line.startswith("relearn"))
    assert relearn.endswith("worse.")
    assert "best single modality" not in text  # the singles did not run
    one = [r for r in rows if r["seed"] == 0]
    assert all("one seed: no noise estimate" in line for line in bench.findings(one, preset) if " vs " in line)
    assert not [line for line in bench.findings(_rows("baseline", "all", [60.0]), preset) if "RGB + LiDAR" in line]


def test_bench_refuses_a_run_with_other_settings_and_names_them(tiny, tmp_path):
    from dataclasses import replace

    config = bench.plan(bench.PRESETS["tiny"], str(tiny), tmp_path, split="S3")[0]
    config = replace(config, epochs=1)
    bench.run_one(config)
    with pytest.raises(ValueError, match="epochs: 1 there, 2 asked"):
        bench.run_one(replace(config, epochs=2))


def test_bench_refuses_a_run_made_with_other_method_defaults(tiny, tmp_path):
    import json

    config = next(c for c in bench.plan(bench.PRESETS["tiny"], str(tiny), tmp_path, split="S3") if c.method == "relearn")
    bench.run_one(config)
    path = __import__("pathlib").Path(config.out) / config.run_name / "method.json"
    saved = json.loads(path.read_text())
    saved["params"]["alpha_s"] = 0.25  # as if the default had changed since
    path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="alpha_s: 0.25 there, 0.5 now"):
        bench.run_one(config)
