"""`poise calibrate`: Table 3's 11 modality sets trained as bench runs, and the comparison with its targets."""

import json
import math

import pytest

from poise import calibration
from poise.bench.presets import TINY_TRAIN
from poise.bench.runs import subset_name
from poise.cli import main
from poise.errors import PoiseError


def rows_from(table: dict, scale: float = 1.0, seeds=(0, 1)) -> list:
    """Bench rows whose MPJPE / PA-MPJPE are ``table``'s numbers times ``scale`` (the same in every seed)."""
    return [{"subset": subset_name(s), "seed": seed, "test_mpjpe_mm": scale * m, "test_pa_mpjpe_mm": scale * pa,
             "val_change_mm": 0.0} for s, (m, pa) in table.items() for seed in seeds]


MEAN_POSE = {"mpjpe_mm": 230.0, "rootrel_mpjpe_mm": 150.0, "train_frames": 10, "test_frames": 10}


def test_table_3_itself_meets_every_target_at_any_scale():
    """Ratios to the four-modality model do not depend on the scale; the absolute target does."""
    report = calibration.report(rows_from(calibration.TABLE_3, scale=1.2), MEAN_POSE)
    assert all(c["met"] for c in report["checks"] if "within 25 %" not in c["target"])
    assert report["sets"]["M"]["mpjpe_ratio"] == pytest.approx(116.48 / 52.72)
    assert report["sets"]["M"]["information"] == pytest.approx(1 - 1.2 * 116.48 / 230.0)
    assert report["sets"]["R+L"]["information"] is None
    far = calibration.report(rows_from(calibration.TABLE_3, scale=1.3), MEAN_POSE)
    assert [c["met"] for c in far["checks"] if "within 25 %" in c["target"]] == [False, False]


def test_a_set_off_its_ratio_or_out_of_order_fails_its_target():
    table = dict(calibration.TABLE_3)
    table[("mmwave",)] = (52.72 * 1.05, 34.14 * 1.05)  # mmWave alone almost as good as all four (MM-Fi: 2.21x)
    report = calibration.report(rows_from(table), MEAN_POSE)
    assert not report["sets"]["M"]["mpjpe_ratio_ok"] and report["sets"]["L"]["mpjpe_ratio_ok"]
    met = {c["target"]: c["met"] for c in report["checks"]}
    assert not met["alone: R < L < M < W"] and not met["M+W better than M"]
    assert met["|all - (R+L)| within 2 % of R+L"]
    text = calibration.format_report(report)
    assert "| M | 55.4 ± 0.0 |" in text and "✗" in text and f"{sum(met.values())} of {len(met)} targets met" in text


def test_calibrate_trains_every_set_and_reads_them_back(tiny, tmp_path):
    out = tmp_path / "calibration"
    settings = dict(TINY_TRAIN, lr_step=1, lr_gamma=0.5)
    report = calibration.calibrate(tiny, out, seeds=(0,), epochs=1, progress=False, split="S3", settings=settings)
    assert list(report["sets"]) == [subset_name(s) for s in calibration.TABLE_3]
    assert all(math.isfinite(s["test_mpjpe_mm"]) and math.isfinite(s["test_rootrel_mpjpe_mm"])
               for s in report["sets"].values())
    assert report["mean_pose"]["mpjpe_mm"] > 0
    paths = calibration.save(report, out)
    assert json.loads(paths[0].read_text())["sets"]["all"]["seeds"] == [0]
    again = calibration.calibrate(tiny, out, seeds=(0,), epochs=1, progress=False, split="S3", settings=settings)
    assert again["sets"] == report["sets"]  # read back, not retrained
    from poise.data.synth.writer import GENERATOR_VERSION

    written = f"poise generator v{GENERATOR_VERSION}, preset tiny, seed 3"
    assert report["trained_on"] == f"Runs trained on: {written}." and written in calibration.format_report(report)
    record = json.loads((out / "runs" / "baseline-concat-all-seed0" / "data.json").read_text())
    assert record["generator"] == {"version": GENERATOR_VERSION, "preset": "tiny", "seed": 3}
    record["generator"]["version"] = GENERATOR_VERSION - 1  # as if the root was rewritten by a newer generator
    (out / "runs" / "baseline-concat-all-seed0" / "data.json").write_text(json.dumps(record))
    with pytest.raises(PoiseError, match=f"trained on poise generator v{GENERATOR_VERSION - 1}.*now holds poise "
                                         f"generator v{GENERATOR_VERSION}"):
        calibration.calibrate(tiny, out, seeds=(0,), epochs=1, progress=False, split="S3", settings=settings)


def test_runs_on_different_data_are_flagged_not_mixed_silently():
    from poise.bench.runs import data_text

    rows = rows_from(calibration.TABLE_3)
    rows[0]["data"] = "poise generator v3, preset demo, seed 0"
    text = data_text(rows)
    assert text.startswith("**Warning: these runs trained on different data**") and "generator v3" in text
    assert "not recorded (a run from before 2026-12-06)" in text  # the other rows have no record


def test_the_command_plans_33_runs(capsys):
    assert main(["calibrate", "--plan"]) == 0
    text = capsys.readouterr().out
    assert "33 runs" in text and "baseline-concat-M+W-seed2" in text
    assert "epoch_frames" not in text
    assert main(["calibrate", "--plan", "--epoch-frames", "2850"]) == 0  # a P1-scale root: a fresh draw each epoch
    assert capsys.readouterr().out.count("epoch_frames=2850") == 33
    assert main(["bench", "--preset", "quick", "--plan", "--epoch-frames", "100"]) == 0
    assert "epoch_frames=100" in capsys.readouterr().out
