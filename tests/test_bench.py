"""``poise bench``: the plan, the statistics, and a full tiny preset from the command line."""

import csv
import json
import math
from pathlib import Path

import pytest

from poise import bench
from poise.cli import main
from poise.errors import PoiseError


def test_the_plan_has_every_cell_once_with_its_optimiser_and_schedule():
    preset = bench.PRESETS["standard"]
    configs = bench.plan(preset, "data", Path("out"))
    names = [c.run_name for c in configs]
    assert len(names) == len(set(names))
    cells = sum(len(preset.fusions_of(v)) for v in preset.variants) + len(preset.subsets) - 1  # all = baseline's
    assert len(configs) == cells * len(preset.seeds)
    assert {tuple(c.modalities) for c in configs if c.method != "baseline"} == {bench.ALL}
    by_name = {c.run_name: c for c in configs}
    assert by_name["ogm_ge-concat-all-seed0"].optimizer == "auto"  # its reference: SGD
    assert by_name["baseline_sgd-concat-all-seed0"].optimizer == "sgd"
    assert {c.fusion for c in configs} == {"concat"}  # mlp and attention are the `fusions` preset
    ablation = {c.run_name: c for c in bench.plan(bench.PRESETS["ablation"], "data", Path("out"))}
    assert ablation["ogm_ge_adam-concat-all-seed0"].optimizer == "adam"
    assert ablation["ogm_ge-concat-all-seed0"] == by_name["ogm_ge-concat-all-seed0"]  # reused from standard
    fusions = bench.plan(bench.PRESETS["fusions"], "data", Path("out"))
    assert {c.fusion for c in fusions} == {"mlp", "attention"} and {c.epochs for c in fusions} == {72}
    assert all(c.epochs == preset.epochs_of(c.fusion) and c.lr_step == round(0.6 * c.epochs) and c.lr_gamma == 0.1
               and c.holdout == 0.1 for c in configs)  # paper 000's schedule, scaled to the run


@pytest.mark.parametrize("name", sorted(bench.PRESETS))
def test_every_variant_is_compared_with_a_row_trained_by_the_same_optimiser(name):
    """A method trained under its reference optimiser (SGD for OGM-GE, Adam for CGGM, ...) is paired seed by seed
    with joint training under that optimiser at the same learning rate, never across optimisers."""
    from poise import methods, optim

    preset = bench.PRESETS[name]
    configs = {c.run_name: c for c in bench.plan(preset, "data", Path("out"))}

    def recipe(config) -> tuple:
        spec = optim.resolve(config, methods.get(config.method, **config.method_params))
        return spec["optimizer"], spec["lr"]

    for variant in preset.variants:
        if variant.against is None:
            continue
        for run, config in configs.items():
            if run.startswith(variant.label + "-"):
                pair = configs[run.replace(variant.label, variant.against, 1)]
                assert recipe(config) == recipe(pair), (run, pair.run_name)


def test_plan_prints_every_run_and_trains_nothing(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--preset", "standard", "--out", str(out), "--data", str(tmp_path / "nowhere"),
                 "--plan"]) == 0
    text = capsys.readouterr().out
    configs = bench.plan(bench.PRESETS["standard"], "x", out)
    assert sum("optimizer=" in line for line in text.splitlines()) == len(configs)
    assert "agm-concat-all-seed0" in text and "optimizer=sgd" in text and "Nothing was trained" in text
    assert not out.exists()


def test_plan_counts_only_the_epochs_left(tmp_path, capsys):
    """The estimate counts what ``run_one`` would train: nothing for a finished run, the epochs after its last
    recorded one for a run with a checkpoint, every epoch for one without (or with --force); a run of other
    settings is flagged, as the bench will refuse it."""
    from dataclasses import replace

    out = tmp_path / "bench"
    args = ["bench", "--preset", "quick", "--out", str(out), "--plan"]
    configs = bench.plan(bench.PRESETS["quick"], "data/mmfi-demo", out)
    total, epochs = sum(c.epochs for c in configs), configs[0].epochs
    for config, done, checkpoint in zip(configs[:4], (epochs, 5, 5, 5), (False, True, False, True)):
        run_dir = Path(config.out) / config.run_name
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text(json.dumps([{}] * done))
        (config if config is not configs[3] else replace(config, lr=0.5)).save(run_dir / "config.yaml")
        if checkpoint:
            (run_dir / "checkpoint.pt").write_bytes(b"")
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    left = total - epochs - 5 - 5  # the third (no checkpoint) trains again from scratch
    assert f"1 finished (read back), 2 to resume, {left} epochs left" in lines[-1]
    assert lines[0].endswith(" done") and lines[1].endswith(" resumes=5") and "other-settings" in lines[3]
    assert main([*args, "--force"]) == 0
    assert "epochs left" not in capsys.readouterr().out.strip().splitlines()[-1]


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
    for name in ("report.md", "results.csv", "methods.png", "subsets.png", "contributions.png", "curves.png"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 6  # (baseline, relearn) x 2 seeds + the rgb subset x 2 seeds
    report = (out / "report.md").read_text()
    base = [float(r["test_mpjpe_mm"]) for r in rows if r["method"] == "baseline" and r["subset"] == "all"]
    assert f"| baseline | adam 0.001 | {bench.fmt(base)} |" in report
    rgb = [float(r["test_mpjpe_mm"]) for r in rows if r["subset"] == "R"]
    assert f"| R | {bench.fmt(rgb)} |" in report
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/checkpoint.pt")}
    assert main(args) == 0  # finished runs are read back, not retrained
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("runs/*/checkpoint.pt")}
    assert "Findings" in capsys.readouterr().out
    # carried elsewhere as its small files only: read back, nothing retrained, the same report
    carried = tmp_path / "carried"
    for run in out.glob("runs/*"):
        (carried / "runs" / run.name).mkdir(parents=True)
        for name in ("config.yaml", "method.json", "metrics.json"):
            (carried / "runs" / run.name / name).write_bytes((run / name).read_bytes())
    assert main(args[:-3] + ["--out", str(carried), "--quiet"]) == 0  # their config.yaml still names the old --out
    assert not list(carried.glob("runs/*/checkpoint.pt"))
    again = list(csv.DictReader(open(carried / "results.csv")))
    assert [r["test_mpjpe_mm"] for r in again] == [r["test_mpjpe_mm"] for r in rows]


def test_bench_errors_name_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="poise simulate"):
        bench.bench("quick", str(tmp_path / "missing"), tmp_path / "out")
    with pytest.raises(ValueError, match="choose one of"):
        bench.bench("huge", str(tmp_path), tmp_path / "out")


def _rows(variant, subset, values):
    return [dict(variant=variant, method=variant.split("_")[0], fusion="concat", subset=subset, seed=s,
                 test_mpjpe_mm=v, gt_std_mm=150.0, **{f"unimodal_std_mm_{m}": 10.0 for m in bench.ALL})
            for s, v in enumerate(values)]


def test_findings_say_whether_a_difference_beats_seed_noise():
    preset = bench.Preset(variants=(bench.Variant("baseline", "baseline", against=None), bench.Variant("awc", "awc"),
                                    bench.Variant("relearn", "relearn")), fusions=("concat",),
                          subsets=(("rgb", "lidar"), bench.ALL), seeds=(0, 1, 2), epochs=1)
    rows = (_rows("baseline", "all", [60.0, 62.0, 61.0]) + _rows("baseline", "R+L", [50.0, 51.0, 52.0])
            + _rows("awc", "all", [61.0, 60.0, 63.0])        # diffs +1, -2, +2: noise
            + _rows("relearn", "all", [70.0, 72.0, 71.0]))   # diffs +10 each: clear
    text = "\n".join(bench.findings(rows, preset))
    assert "loses to RGB + LiDAR" in text and "+10.0 ± 1.0 mm" in text and "paper 001 Table 3" in text
    awc = next(line for line in bench.findings(rows, preset) if line.startswith("awc vs baseline"))
    assert "within seed noise" in awc and "95 % t-interval" in awc and "no different" in awc and "worse" not in awc
    relearn = next(line for line in bench.findings(rows, preset) if line.startswith("relearn vs baseline"))
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
    run_dir = Path(config.out) / config.run_name
    (run_dir / "checkpoint.pt").unlink()  # begun but nothing to resume (killed in epoch 1, or carried without it)
    with pytest.raises(ValueError, match="epochs: 1 there, 2 asked"):  # named, not wiped and retrained
        bench.run_one(replace(config, epochs=2))
    assert "epochs: 1" in (run_dir / "config.yaml").read_text()


def test_a_run_is_found_by_its_settings_and_data_not_by_the_paths_it_was_made_under(tmp_path):
    from dataclasses import replace

    from poise.config import TrainConfig

    config = TrainConfig(data="data/a", out=str(tmp_path / "runs"), name="run")
    run_dir = tmp_path / "runs" / "run"
    run_dir.mkdir(parents=True)
    replace(config, data="data/b", out="elsewhere/runs").save(run_dir / "config.yaml")
    assert bench.saved_diff(run_dir, config) == "data: 'data/b' there, 'data/a' asked"  # no record of which data
    (run_dir / "data.json").write_text(json.dumps({"generator": None}))  # not poise's data: only its path says
    assert bench.saved_diff(run_dir, config) == "data: 'data/b' there, 'data/a' asked"
    (run_dir / "data.json").write_text(json.dumps({"generator": {"version": 5, "preset": "p1", "seed": 0}}))
    assert bench.saved_diff(run_dir, config) == ""  # check_same_data checks the data itself
    assert bench.saved_diff(run_dir, replace(config, epochs=3)) == "epochs: 20 there, 3 asked"


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


def test_a_variant_is_paired_with_the_baseline_trained_the_same_way():
    """OGM-GE under SGD is compared with joint training under SGD, not with the Adam baseline."""
    preset = bench.Preset(variants=(bench.Variant("baseline", "baseline", against=None),
                                    bench.Variant("baseline_sgd", "baseline", train={"optimizer": "sgd"}, against=None),
                                    bench.Variant("ogm_ge", "ogm_ge", against="baseline_sgd")),
                          fusions=("concat",), subsets=(), seeds=(0, 1, 2), epochs=1)
    rows = (_rows("baseline", "all", [60.0, 62.0, 61.0]) + _rows("baseline_sgd", "all", [80.0, 81.0, 82.0])
            + _rows("ogm_ge", "all", [70.0, 71.0, 72.0]))
    lines = bench.findings(rows, preset)
    assert any(line.startswith("ogm_ge vs baseline_sgd (concat): -10.0 ± 0.0 mm") for line in lines)
    assert not any(line.startswith("baseline_sgd vs") for line in lines)  # a reference row is compared with nothing
    from poise.bench.report import differences_table

    assert "| ogm_ge | baseline_sgd | -10.0" in differences_table(rows, preset)


def test_a_variant_label_cannot_break_run_names():
    with pytest.raises(ValueError, match="use '_'"):
        bench.Variant("awc-norm", "awc")


def test_the_summary_averages_awcs_shares_over_its_window(tmp_path):
    from poise.bench.runs import summary
    from poise.config import TrainConfig

    def epoch(e, active, share):
        return {"epoch": e, "test_mpjpe_mm": 100.0 - e, "test_pa_mpjpe_mm": 50.0, "train_mpjpe_mm": 90.0,
                "val_mpjpe_mm": 110.0 - e, "seconds": 1.0, "awc_active": active,
                **{f"shapley_{m}": 1.0 for m in bench.ALL}, **{f"unimodal_std_mm_{m}": 1.0 for m in bench.ALL},
                **{f"awc_share_{m}": share if m == "rgb" else (1 - share) / 3 for m in bench.ALL},
                **{f"awc_superior_{m}": int(m == "rgb") for m in bench.ALL},
                **{f"awc_fisher_{m}": 2.0 for m in bench.ALL}, **{f"awc_force_{m}": share / 10 for m in bench.ALL}}

    history = [epoch(1, 0, 0.0), epoch(2, 1, 0.5), epoch(3, 1, 0.7), epoch(4, 0, 0.0), epoch(5, 0, 0.0)]
    row = summary(TrainConfig(method="awc"), history, tmp_path, "awc")
    assert row["awc_share_rgb"] == pytest.approx(0.6) and row["awc_superior_rgb"] == 1.0
    assert row["awc_superior_lidar"] == 0.0 and row["awc_fisher_rgb"] == 2.0
    assert row["awc_force_wifi-csi"] == pytest.approx(0.06)  # over the window's epochs, as the shares
    assert row["val_change_mm"] == pytest.approx(-1.0)  # epoch 5 against epoch 4 (the last 20 % of 5 epochs)


def test_the_force_table_pairs_awcs_drift_with_the_baselines_of_the_same_seed(tmp_path):
    """'Whom AWC holds back': the force ratio averaged over the window, and each encoder's drift against the paired
    run's at the same epochs (penalised epochs only), seed by seed."""
    import json

    from poise.bench.mechanisms import awc_force_table, held_back

    def run(name, drift, active=None):
        history = [{"epoch": e + 1, "awc_active": int(active is not None and e in active),
                    **{f"drift_{m}": d * (1.0 if m == "rgb" else 2.0) for m in bench.ALL}} for e, d in enumerate(drift)]
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(history))
        return str(tmp_path / name)

    rows = []
    for seed, awc_drift in ((0, [0.0, 1.0, 1.0, 5.0]), (1, [0.0, 1.0, 3.0, 5.0])):
        rows.append(dict(variant="baseline", fusion="concat", subset="all", seed=seed,
                         run=run(f"b{seed}", [0.0, 2.0, 4.0, 6.0])))
        rows.append(dict(variant="awc", fusion="concat", subset="all", seed=seed, run=run(f"a{seed}", awc_drift, {1, 2}),
                         **{f"awc_force_{m}": 0.1 * (seed + 1) for m in bench.ALL}))
    preset = bench.PRESETS["quick"]
    awc = preset.variant("awc")
    assert held_back(rows, rows[1], awc, "rgb") == pytest.approx((1 / 2 + 1 / 4) / 2)  # epochs 2 and 3 only
    assert held_back(rows, rows[3], awc, "lidar") == pytest.approx((1 / 2 + 3 / 4) / 2)  # both runs' lidar x2
    table = awc_force_table(rows, preset)
    assert "| awc | concat | 15.0% | 15.0% | 15.0% | 15.0% | 0.50 ± 0.18 |" in table
    rows[0]["run"] = run("old", [0.0])  # a pair from before runs recorded drift: no number, not a wrong one
    assert math.isnan(held_back(rows, rows[1], awc, "rgb"))


def test_a_carried_robust_run_is_read_from_its_robust_json_or_says_what_it_lacks(tmp_path):
    from poise.bench.runs import BENCH_DROP, BENCH_SEEDS, robust_row

    report = {"epochs": 2, "subsets": [{"subset": "all", "mpjpe_mm": 50.0}, {"subset": "rgb", "mpjpe_mm": 90.0}],
              "mean_mpjpe_mm": 70.0, "worst": {"subset": "rgb", "mpjpe_mm": 90.0},
              "drops": [{"drop": BENCH_DROP, "seeds": BENCH_SEEDS, "mpjpe_mm": 60.0}]}
    (tmp_path / "robust.json").write_text(__import__("json").dumps(report))
    row = robust_row(tmp_path, epochs=2)
    assert row["robust_all_mm"] == 50.0 and row["robust_mean_mm"] == 70.0 and row["robust_drop_mm"] == 60.0
    with pytest.raises(PoiseError, match="no checkpoint and no robust.json of its last epoch"):
        robust_row(tmp_path, epochs=3)  # scored an older model: needs the checkpoint to score again


def test_an_ablation_row_is_paired_with_its_own_reference(tmp_path):
    """OGM-GE under SGD is compared with SGD joint training, OGM-GE under Adam with the Adam baseline."""
    from poise.bench.report import ablation_table

    preset = bench.PRESETS["ablation"]
    table = next(a for a in preset.ablations if "optimiser" in a.title)
    values = dict(baseline=[60.0, 62.0, 61.0], baseline_sgd=[80.0, 81.0, 82.0], ogm_ge=[70.0, 71.0, 72.0],
                  agm=[79.0, 80.0, 81.0], ogm_ge_adam=[61.0, 63.0, 62.0], agm_adam=[60.0, 62.0, 61.0])
    rows = [dict(r, test_pa_mpjpe_mm=40.0, run=str(tmp_path)) for label, v in values.items()
            for r in _rows(label, "all", v)]
    lines = {line.split(" | ")[0].strip("| "): line for line in ablation_table(rows, table, preset).splitlines()[2:]}
    assert "| baseline_sgd | -10.0" in lines["ogm_ge"] and "| baseline_sgd | -1.0" in lines["agm"]
    assert "| baseline | +1.0" in lines["ogm_ge_adam"] and "| baseline | +20.0" in lines["baseline_sgd"]
    assert "| – | – |" in lines["baseline"]
    from poise.bench.plots import plot_ablations

    paths = []
    plot_ablations(rows, preset, tmp_path, paths)
    assert paths == [tmp_path / "ablations.png"] and paths[0].stat().st_size > 0


def test_variants_keeps_the_named_ones_with_their_pairs_and_cuts_the_ablations(tmp_path, capsys):
    preset = bench.PRESETS["ablation"].only(["ogm_ge", "awc_k20"])
    assert [v.label for v in preset.variants] == ["baseline", "awc_k20", "baseline_sgd", "ogm_ge"]
    assert {a.title: a.rows for a in preset.ablations} == {
        "AWC's learning window K": ("baseline", "awc_k20"),
        "The optimiser under gradient modulation": ("baseline_sgd", "ogm_ge", "baseline")}
    with pytest.raises(PoiseError, match="variants awk: not in this preset; choose from baseline, awc"):
        bench.PRESETS["ablation"].only(["awk"])
    only_sgd = bench.PRESETS["ablation"].only(["ogm_ge"])
    from poise.bench.report import ablation_table

    assert "| baseline_sgd | sgd" not in ablation_table([], only_sgd.ablations[0], only_sgd)  # no runs: no setting
    assert [line.split(" | ")[4] for line in ablation_table([], only_sgd.ablations[0], only_sgd).splitlines()[2:]] \
        == ["–", "baseline_sgd"]  # no Adam baseline in the preset: the SGD one is paired with nothing
    quick = bench.PRESETS["quick"]
    assert quick.only(["awc"]).subsets == () and quick.only(["baseline", "awc"]).subsets == quick.subsets
    assert main(["bench", "--preset", "ablation", "--variants", "awc", "--seeds", "3", "4", "--out",
                 str(tmp_path / "b"), "--plan"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines() if "optimizer=" in line]
    assert names == [f"{v}-concat-all-seed{s}" for s in (3, 4) for v in ("baseline", "awc")]


def test_an_ablation_setting_resolves_the_default_window_and_epoch_to_epochs(tmp_path):
    import json

    from poise.bench.report import _settings

    optimizer = {"optimizer": "adam", "lr": 0.001}
    (tmp_path / "method.json").write_text(json.dumps({"name": "awc", "optimizer": optimizer, "params": {
        "alpha_s": 20000.0, "alpha_i": 0.0, "window": 0}}))
    assert _settings([dict(run=str(tmp_path), epochs=48)]) == "adam 0.001, alpha_s=20000, alpha_i=0, window=19 of 48"
    (tmp_path / "method.json").write_text(json.dumps({"name": "relearn", "optimizer": optimizer, "params": {
        "relearn_epoch": None}}))
    assert _settings([dict(run=str(tmp_path), epochs=49)]) == "adam 0.001, relearn_epoch=20 of 49"  # round(19.6)
    (tmp_path / "method.json").write_text(json.dumps({"name": "ogm_ge", "optimizer": optimizer, "params": {
        "alpha": 0.1, "window": 0}}))
    assert _settings([dict(run=str(tmp_path), epochs=48)]) == "adam 0.001"  # another method's window is not AWC's K


def test_run_all_shares_the_cores_out_over_the_jobs(monkeypatch):
    """threads 0 is never torch's default (all cores in every process: two such processes on 2 cores ran 7x
    slower in `poise calibrate`), but the cores / jobs."""
    from types import SimpleNamespace

    from poise.bench.runs import run_all

    monkeypatch.setattr("poise.bench.runs.usable_cpus", lambda: 4)
    seen = []

    def fake(config, threads, force):
        seen.append(threads)
        return {}

    run_all([SimpleNamespace(run_name="a")], fake, lambda c, r: "", "x", jobs=1, progress=False)
    assert seen == [4]


def test_the_noise_floor_is_the_reference_against_itself_under_other_seeds():
    import math

    from poise.bench.presets import PRESETS
    from poise.bench.report import noise_floor
    from poise.bench.stats import seeds_for, t_half_width

    rows = [{"variant": "baseline", "fusion": "concat", "subset": "all", "seed": s, "test_mpjpe_mm": v,
             "test_pa_mpjpe_mm": 20.0 + s / 10} for s, v in enumerate((40.0, 42.0, 44.0))]
    text = noise_floor(rows, PRESETS["quick"])
    sd = 2.0 * math.sqrt(2)  # between-seed std 2 mm, and a difference of two independent runs
    assert f"| MPJPE | 2.00 mm | {sd:.2f} mm | ±{t_half_width(sd, 3):.2f} mm | {seeds_for(sd, 1.5)} |" in text
    assert t_half_width(sd, seeds_for(sd, 1.5)) <= 1.5 < t_half_width(sd, seeds_for(sd, 1.5) - 1)
    assert "root-relative" not in text  # runs that did not record it
    assert noise_floor(rows[:1], PRESETS["quick"]) == ""  # one seed: no floor to estimate


def _workers(parent: int) -> list:
    """The pool workers a bench process spawned (not its resource tracker)."""
    import subprocess

    found = subprocess.run(["pgrep", "-P", str(parent), "-f", "multiprocessing.spawn"], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_killed_bench_leaves_no_worker_behind(tiny, tmp_path, how):
    """Issue 28, item 5: the bench's workers die with it, killed outright or terminated; terminated, it says
    which runs were finished."""
    import signal
    import subprocess
    import sys
    import time

    command = [sys.executable, "-m", "poise.cli", "bench", "--preset", "tiny", "--data", str(tiny), "--split", "S3",
               "--out", str(tmp_path / "bench"), "--seeds", "0", "1", "2", "3", "4", "5", "--jobs", "2", "--quiet",
               "--no-report"]
    bench_process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(workers := _workers(bench_process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers) == 2, "the bench never started its two workers"
    bench_process.send_signal(getattr(signal, how))
    bench_process.wait(timeout=60)
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), f"workers {workers} outlived the bench ({how})"
    if how == "SIGTERM":
        err = bench_process.stderr.read()
        assert bench_process.returncode == 130 and "runs finished" in err and "re-run the same command" in err


def test_a_run_extended_with_more_epochs_is_summarised_from_its_evaluated_epochs():
    """A 20-epoch run extended to 22 evaluated by its first length's cadence: epoch round(0.8 x 22) = 18 has no
    validation number, so the convergence check starts from the last evaluated epoch before it (16, where the
    first length's last 20 % began)."""
    from types import SimpleNamespace

    from poise.bench.runs import summary

    history = [{"epoch": e, "train_mpjpe_mm": 50.0, "seconds": 1.0,
                **({"val_mpjpe_mm": 100.0 - e, "test_mpjpe_mm": 60.0, "test_pa_mpjpe_mm": 30.0, "shapley_rgb": 1.0,
                    "unimodal_std_mm_rgb": 9.0}
                   if e in (1, 5, 10, 15, 16, 20, 22) else {})} for e in range(1, 23)]
    config = SimpleNamespace(method="baseline", method_params={}, fusion="concat", modalities=["rgb"], seed=0)
    row = summary(config, history, "r", "baseline")
    assert row["val_change_mm"] == (100.0 - 22) - (100.0 - 16)
