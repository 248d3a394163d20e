"""The continual bench's runs: the plan of a preset (one ``poise continual`` run per stream x recipe x seed),
NIS's naming thresholds from the clean control, running or reading back each run, and its row."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from poise.bench.continual.presets import ABLATION_ROWS, GENERIC_FISHER_ROW, LIKE_FOR_LIKE, Preset
from poise.bench.runs import differing_keys, run_all, settings_diff
from poise.continual import tasks as task_stream
from poise.continual.config import SWITCH_DEFAULTS, ContinualConfig, switch_of, tuned
from poise.continual.earlier import upgrade
from poise.continual.nis import NONE, name_from_drops
from poise.continual.results import forgetting
from poise.errors import PoiseError
from poise.runtime import write_atomic

logger = logging.getLogger(__name__)


# seconds per task of each recipe's run at P1 scale (poise simulate --preset p1), 5 epochs, every 2nd frame, the
# lite model, 2 runs at once on 2 CPU cores (runs/continual-p1, seed 0, tasks 1-3): (first task, later task)
SECONDS_PER_TASK = {"naive": (60, 68), "ewc": (60, 75), "coteaching": (170, 270), "dividemix": (185, 335),
                    "ours": (100, 210)}
THRESHOLD_SDS = 3.0  # a naming threshold: the clean drops' mean + 3 sd (under other seeds)


def ablation_label(recipe: str, ablate) -> str:
    return recipe + "".join(f"-no_{a}" for a in ablate)


def variant_of(config: ContinualConfig) -> str:
    """A run's row label: its recipe, the parts ablated, and any switch set by hand (``ours-ewc_online``)."""
    return ablation_label(config.recipe, config.ablate) + "".join(
        f"-{k}_{v}".lower() for k, v in config.custom_switches().items())


def plan(preset: Preset, data: str, out: Path, on_error: str = "raise") -> list:
    """The ContinualConfigs of a preset, seed-major, without duplicates (naming thresholds not yet set)."""
    first = preset.streams[0]
    cells = [(stream, method, (), {}) for stream in preset.streams for method in preset.recipes]
    if preset.like_for_like:
        cells += [(stream, *LIKE_FOR_LIKE) for stream in preset.streams]
    if preset.ablation:
        cells += [(first, method, tuple(ablate), {}) for _, method, ablate in ABLATION_ROWS]
        cells.append((first, *GENERIC_FISHER_ROW, {}))
    if preset.clean_control:  # NIS measures only: the drops of a stream trained as a run that named nothing
        cells.append(((first[0], "none", first[2]), "ours", (), {"nis": {"separate": "never"}}))
    cells += [(stream, "ours", (), {}) for stream in preset.diagnostics]
    shared = {k: v for k, v in preset.config.items() if k not in SWITCH_DEFAULTS}
    configs, seen = [], set()
    for seed in preset.seeds:
        for stream, recipe, ablate, switches in cells:
            fig3 = stream == first and recipe == "ours" and not ablate and not switches
            values = dict(stream_keys(stream), recipe=recipe, ablate=list(ablate), data=data, seed=seed,
                          out=str(out / "runs"), on_error=on_error, **shared, **switches)
            config = ContinualConfig(**tuned(values, {k: v for k, v in preset.config.items() if k in SWITCH_DEFAULTS},
                                             {"nis": {"compare_gradient_stop": True}} if fig3 else {}))
            if config.run_name not in seen:
                seen.add(config.run_name)
                configs.append(config)
    return configs


THRESHOLDS = "thresholds.json"  # OUT/thresholds.json: each seed's naming thresholds, set once


def settled_thresholds(out: Path, control_rows, seeds, force: bool = False) -> dict:
    """Each seed's naming thresholds: as ``OUT/thresholds.json`` recorded them when the seed's runs were first
    planned (so that adding seeds later leaves finished runs valid), else from ``naming_thresholds``; the file
    is rewritten with any seed new or set anew. A seed recorded without thresholds (too few clean drops then)
    takes them once the control runs give them; ``force`` (the control runs trained again) sets the asked seeds'
    anew and keeps the others'."""
    path = out / THRESHOLDS
    try:
        recorded = read_thresholds(path)
    except PoiseError:
        if not force:
            raise
        logger.warning(f"{path} is damaged: --force sets the asked seeds' thresholds anew and drops the rest")
        recorded = {}
    saved = {} if force else recorded
    fresh = naming_thresholds(control_rows, seeds)
    out_of = {seed: saved.get(seed) or fresh[seed] for seed in seeds}
    if any(recorded.get(seed) != out_of[seed] for seed in seeds):
        write_atomic(path, json.dumps({**recorded, **out_of}, indent=1, sort_keys=True))
    return out_of


def under_thresholds(configs: list, thresholds: dict) -> list:
    """The noisy streams' runs with NIS set to name under their seed's ``thresholds`` (where there are some for
    the seed); the clean control runs measure only, and keep theirs unset."""
    return [replace(c, nis={**c.nis, "threshold": thresholds[c.seed]})
            if c.nis and c.noise != "none" and c.seed in thresholds else c for c in configs]


def read_thresholds(path: Path) -> dict:
    """{seed: {modality: threshold}} from a bench's thresholds.json ({} when there is none)."""
    if not path.is_file():
        return {}
    what = ("restore it (git checkout, or from where the bench came from), or delete it to set the thresholds "
            "again from the clean control runs")
    try:
        values = json.loads(path.read_text())
        saved = {int(seed): {str(m): float(v) for m, v in t.items()} for seed, t in values.items()}
    except (ValueError, TypeError, AttributeError) as err:
        raise PoiseError(f"{path}: not a bench's naming thresholds ({err}): {what}") from err
    return saved


def naming_thresholds(control_rows, seeds) -> dict:
    """{seed: {modality: threshold}}: for each seed, the drops NIS measured on the clean control stream under
    the *other* seeds, mean + ``THRESHOLD_SDS`` standard deviations per modality. A seed's own clean tasks stay
    out of its thresholds, so its false alarms are not counted on the drops that set them; the other seeds
    learn the same tasks, though (other initialisations, noise draws and held-back sequences), so the rate is
    still on the optimistic side. {} where fewer than two clean drops of a modality are there to measure."""
    out = {}
    for seed in seeds:
        drops: dict = {}
        for row in control_rows:
            if row["seed"] != seed:
                for task in row.get("nis_tasks", []):
                    for m, d in task["drops"].items():
                        drops.setdefault(m, []).append(d)
        out[seed] = {m: float(np.mean(v) + THRESHOLD_SDS * np.std(v, ddof=1)) for m, v in drops.items() if len(v) > 1}
    return out


def _auc(losses, corrupted) -> float:
    """Area under the ROC curve of ``losses`` separating corrupted from clean samples (0.5: no separation)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(corrupted, losses))


def nis_tasks(records, run_dir: Path, threshold: dict | None = None) -> list:
    """Per task NIS ran on: the truth (corrupted modality, or "none"), the modality named (as the run named it,
    or from its recorded drops under ``threshold``), the drops, whether the task was split and how well, and how
    far the corruption moved the per-sample losses before and after the probe (mean ratio corrupted / clean,
    AUC)."""
    out = []
    for r in records:
        if "nis" not in r:
            continue
        nis, noise = r["nis"], r.get("noise") or {}
        task = {"task": r["task"], "truth": noise.get("modality", NONE), "kind": noise.get("kind", "none"),
                "named": nis["named"] if threshold is None else name_from_drops(nis["drops"], threshold),
                "drops": nis["drops"], "separated": nis["separated"], "quality": nis.get("quality"),
                "gmm_quality": nis["gmm"].get("quality"),
                **{k: v for k, v in noise.items() if k.startswith("source_")}}
        path = run_dir / f"losses-task{r['task']}.npz"
        if noise and path.is_file():
            with np.load(path) as saved:
                hit = saved["nis.corrupted"].astype(bool)
                if hit.any() and (~hit).any():
                    for key, when in (("nis.before", "before"), ("nis", "after")):
                        task[f"loss_ratio_{when}"] = float(saved[key][hit].mean() / saved[key][~hit].mean())
                        task[f"auc_{when}"] = _auc(saved[key], hit)
        out.append(task)
    return out


def row_of(config: ContinualConfig, run_dir: Path, threshold: dict | None = None) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    records = json.loads((run_dir / "tasks.json").read_text())
    row = {**stream_keys((config.protocol, config.noise, config.ratio, config.noisy_modality)), "recipe": config.recipe,
           "variant": variant_of(config), "seed": config.seed,
           "tasks": results["tasks_done"], "avg_mpjpe_mm": results["avg_mpjpe_mm"][-1],
           "avg_pa_mpjpe_mm": results["avg_pa_mpjpe_mm"][-1], "mean_forgetting_mm": results["mean_forgetting_mm"],
           "seconds": sum(r["seconds"] for r in records), "run": str(run_dir)}
    pa = results["pa_mpjpe_matrix_mm"]  # forgetting of the articulation alone (PA-MPJPE aligns position and scale)
    if len(pa) > 1:
        row["mean_pa_forgetting_mm"] = float(np.mean(forgetting(pa)))
    tasks = nis_tasks(records, run_dir, threshold)
    if tasks:
        row["nis_tasks"] = tasks
        row["naming"] = [[t["truth"], t["named"]] for t in tasks]
        noisy = [t for t in tasks if t["truth"] != NONE]
        if noisy:
            row["nis_named"] = float(np.mean([t["named"] == t["truth"] for t in noisy]))
            for key in ("clean_precision", "clean_recall", "noisy_recall"):  # the GMM's split, made or not
                row[f"nis_{key}"] = float(np.nanmean([t["gmm_quality"][key] for t in noisy]))
            row["nis_left_out"] = float(np.nanmean([t["quality"]["noisy_recall"] for t in noisy]))  # trained on
            ratios = [t["loss_ratio_after"] for t in noisy if "loss_ratio_after" in t]
            if ratios:
                row["nis_loss_ratio"] = float(np.mean(ratios))
        plain = [(r["nis"]["without_gradient_stop"], r) for r in records
                 if r.get("noise") and "without_gradient_stop" in r.get("nis", {})]
        if plain:
            row["plain_named"] = float(np.mean([p["named"] == r["noise"]["modality"] for p, r in plain]))
            for key in ("clean_precision", "clean_recall", "noisy_recall"):
                row[f"plain_{key}"] = float(np.nanmean([p["quality"][key] for p, _ in plain]))
    divided = [r["division"] for r in records if r.get("noise") and "division" in r]
    if divided:
        for key in ("clean_precision", "clean_recall", "noisy_recall"):
            row[f"division_{key}"] = float(np.nanmean([d["quality"][key] for d in divided]))
    return row


def tasks_done(config: ContinualConfig) -> int:
    """How many tasks of the run its ``results.json`` says are done (0 when it has not started)."""
    results = Path(config.out) / config.run_name / "results.json"
    return json.loads(results.read_text())["tasks_done"] if results.is_file() else 0


def finished(config: ContinualConfig) -> bool:
    """Whether the run's ``results.json`` says every task is done: such a run is read back from its small files
    alone, with neither its checkpoint nor the data."""
    return tasks_done(config) >= (config.tasks or len(task_stream.tasks(config.protocol)))


def check_saved(run_dir: Path, config: ContinualConfig, finished_run: bool) -> None:
    """The run saved in ``run_dir`` (if any) is the one ``config`` asks for, or an error naming the difference.
    Where the folder lies does not count. Where its data lay does: a continual run records no more of its data
    than the path, so a finished one (read back without the data) is asked for under the path it was made with.
    A run's results or checkpoint without its config.yaml is refused: nothing says what made them."""
    from poise.checkpoint import CHECKPOINT

    path = run_dir / "config.yaml"
    if not path.is_file():
        state = [name for name in ("results.json", CHECKPOINT) if (run_dir / name).is_file()]
        if state:
            raise PoiseError(f"{run_dir} holds {' and '.join(state)} but no config.yaml, so nothing says what made "
                             f"them: restore config.yaml (git checkout, or from where the run came from), or --force "
                             f"to run it again")
        return
    existing = ContinualConfig.load(path)  # a damaged file, or a mistyped key, is named here
    written = set(upgrade(yaml.safe_load(path.read_text()) or {}))
    missing = sorted(set(config.to_dict()) - written)
    if missing:  # a default filled in for a key the run never knew would pass it off as this bench's
        raise PoiseError(f"{run_dir} holds a continual run from an older poise (its config.yaml has no "
                         f"{', '.join(missing)}); use another --out, or --force to run it again")
    keys = differing_keys(existing, config)
    if keys == ["data"]:
        then = ("to read it back (a finished run needs no data there)" if finished_run else
                "to continue it" if (run_dir / CHECKPOINT).is_file() else "to train it on that data")
        raise PoiseError(f"{run_dir} was made on the data at {existing.data}, not {config.data}: pass --data "
                         f"{existing.data} {then}, or --force to train it again on {config.data}")
    if keys:
        thresholds = "nis" in keys and (existing.nis or {}).get("threshold") != (config.nis or {}).get("threshold")
        raise PoiseError(f"{run_dir} holds a continual run with other settings than this bench asks for "
                         f"({settings_diff(existing, config)})"
                         + (f"; the naming thresholds asked come from {Path(config.out).parent / THRESHOLDS}"
                            if thresholds else "") + "; use another --out, or --force to run it again")


def refusal(config: ContinualConfig) -> str:
    """Why ``run_one`` would refuse the run in the config's folder as it is ('' when it would train, resume or
    read it back)."""
    try:
        check_saved(Path(config.out) / config.run_name, config, finished(config))
    except PoiseError as err:
        return str(err)
    return ""


def run_one(config: ContinualConfig, threads: int = 0, force: bool = False) -> dict:
    """Run (or resume, or read back) one continual configuration; its summary row."""
    import torch

    from poise.checkpoint import CHECKPOINT
    from poise.continual.runner import resume, run_continual

    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(config.out) / config.run_name
    done = finished(config)
    begun = (run_dir / "config.yaml").is_file()
    if not force:
        check_saved(run_dir, config, done)  # a finished run or a checkpoint without config.yaml is refused here
    # a finished run is read back from its small files alone (carried between machines without its checkpoint)
    if not force and (done or (run_dir / CHECKPOINT).is_file()):
        if not done:
            resume(run_dir, progress=False)
    else:
        if not force and begun:
            logger.warning(f"{run_dir}: begun with these settings but without a checkpoint to resume from (killed "
                           f"in its first task, or carried without it): training it from its first task")
        run_continual(config, progress=False, overwrite=True)
    return row_of(config, run_dir)


def execute(configs: list, jobs: int = 1, threads: int = 0, force: bool = False, progress: bool = True) -> list:
    """Every config, ``jobs`` at a time; their rows in order."""
    from poise.continual.runner import load_stream

    todo = [c for c in configs if force or not finished(c)]  # the finished ones are read back without the data
    for protocol in sorted({c.protocol for c in todo}):  # build the caches here, not in N workers at once
        load_stream(next(c for c in todo if c.protocol == protocol), progress=progress)

    trained = {c.run_name for c in todo}

    def line(config, row) -> str:
        took = f"{row['seconds']:.0f} s"
        took = took if config.run_name in trained else f"read back; trained in {took}"
        return (f"{config.run_name}: avg-MPJPE {row['avg_mpjpe_mm']:.1f} / avg-PA {row['avg_pa_mpjpe_mm']:.1f} mm, "
                f"forgetting {row['mean_forgetting_mm']:+.1f} mm ({took})")

    return run_all(configs, run_one, line, "continual-bench", jobs, threads, force, progress)


def stream_keys(stream) -> dict:
    """A preset's stream, (protocol, noise, ratio[, noisy modality]), as the ContinualConfig keys (and row keys)."""
    protocol, noise, ratio, *modality = stream
    return dict(protocol=protocol, noise=noise, ratio=ratio, noisy_modality=modality[0] if modality else "")


def plan_text(preset: Preset, configs: list, force: bool = False) -> str:
    """One line per run (name, recipe, strategies, tasks, seed) and an estimate of the tasks left: none for a
    finished run, those after its last done task for one it can resume (a checkpoint), all with ``force``."""
    from poise.checkpoint import CHECKPOINT

    lines, seconds, finished_runs, tasks_left, total, refused = [], 0.0, 0, 0, 0, 0
    for c in configs:
        n = c.tasks or len(task_stream.tasks(c.protocol))
        total += n
        done = min(n, tasks_done(c))
        why = "" if force else refusal(c)
        if why:
            lines.append(f"{c.run_name:56s} refused: {why}")
            refused += 1
            continue
        if force or not (done == n or (Path(c.out) / c.run_name / CHECKPOINT).is_file()):
            done = 0  # run_one starts it over
        first, later = SECONDS_PER_TASK.get(c.recipe, SECONDS_PER_TASK["ours"])
        seconds += (first if done == 0 else 0) + (n - max(done, 1)) * later
        finished_runs += done == n
        tasks_left += n - done
        switches = " ".join(f"{k}={switch_of(k, getattr(c, k))}" for k in SWITCH_DEFAULTS)
        lines.append(f"{c.run_name:56s} {switches} tasks={n} seed={c.seed}" + (f" done={done}" if done else ""))
    lines.append(f"{len(configs)} runs, {total} tasks in all ({len(preset.seeds)} seeds)"
                 + (f"; {refused} refused as they are (see each; --force trains them again)" if refused else "")
                 + (f"; {finished_runs} finished (read back), {tasks_left} tasks left" if tasks_left < total
                    else "")
                 + f". Measured at P1 scale with 2 runs at once on 2 CPU cores "
                 f"(seconds per task: {', '.join(f'{k} {a}-{b}' for k, (a, b) in SECONDS_PER_TASK.items())}), so "
                 f"about {seconds / 2 / 3600:.1f} h with --jobs 2 (a smaller root is faster; anything else running "
                 f"on the machine slows it down). Nothing was trained.")
    return "\n".join(lines)
