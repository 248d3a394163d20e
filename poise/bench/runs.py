"""Turning a preset into runs, and running them: every configuration is an ordinary ``poise train`` run under
``OUT/runs/NAME``; a finished run is read back, an interrupted one resumed, so re-running the same command
picks up where it stopped. ``--jobs N`` trains N runs at once in separate processes, one torch thread each by
default (2 processes x 1 thread beat 1 x 2 threads on 2 cores for these small models)."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from poise.bench.presets import AGAINST_RUN, ALL, BASELINE, LR_DECAY_AT, LR_GAMMA, SHORT, Preset
from poise.errors import PoiseError

logger = logging.getLogger(__name__)


SECONDS_PER_EPOCH = (3.0, 3.6)  # the lite model with all four modalities at the bench's settings in float32, 2
# runs at once on 2 idle cores, 1 thread each: 3.05 s the average 48-epoch run's epoch (benchmarks/epoch_cost.py),
# 3.6 s measured in a bench run beside the test suite (2026-12-06); bf16 autocast 2.3 s. A busy machine is slower.


def subset_name(modalities) -> str:
    return "all" if tuple(modalities) == ALL else "+".join(SHORT[m] for m in modalities)


def cells(preset: Preset) -> list:
    """(variant, fusion, modalities) of every configuration of a preset, once each."""
    out = [(v, f, ALL) for v in preset.variants for f in preset.fusions_of(v)]
    out += [(BASELINE, preset.fusions[0], tuple(s)) for s in preset.subsets if tuple(s) != ALL]
    if preset.subsets and not any(v.label == BASELINE.label for v in preset.variants):
        out.append((BASELINE, preset.fusions[0], ALL))
    return out


def plan(preset: Preset, data: str, out: Path, protocol: str = "P1", split: str = "S1", on_error: str = "raise") -> list:
    """The TrainConfigs of a preset, one per (variant, fusion, subset, seed), seed-major (a cut-short bench has
    whole seeds done, and ``--seeds`` with those reports them)."""
    from poise.config import TrainConfig

    configs, seen = [], set()
    for seed, (variant, fusion, modalities) in itertools.product(preset.seeds, cells(preset)):
        epochs = preset.epochs_of(fusion)
        schedule = dict(lr_step=max(1, round(LR_DECAY_AT * epochs)), lr_gamma=LR_GAMMA)
        name = f"{variant.label}-{fusion}-{subset_name(modalities)}-seed{seed}"
        if name in seen:
            continue
        seen.add(name)
        params = {k: (str(out / "runs" / name.replace(variant.label, variant.against, 1)) if v == AGAINST_RUN else v)
                  for k, v in variant.params.items()}
        configs.append(TrainConfig(data=data, method=variant.method, method_params=params,
                                   fusion=fusion, modalities=list(modalities), protocol=protocol, split=split,
                                   seed=seed, epochs=epochs, out=str(out / "runs"), name=name, on_error=on_error,
                                   **{**schedule, **preset.train, **variant.train}))
    return configs


def plan_text(preset: Preset, configs: list, force: bool = False) -> str:
    """One line per run (name, method, optimiser, fusion, modalities, seed, epochs) and the totals, counting only
    the epochs a run would train now (``epochs_left``)."""
    from poise import methods, optim

    lines, left = [], []
    for c in configs:
        spec = optim.resolve(c, methods.get(c.method, **c.method_params))
        left.append(epochs_left(c, force))
        state = ("" if left[-1] == c.epochs else " done" if left[-1] == 0 else f" resumes={c.epochs - left[-1]}")
        if state and saved_diff(Path(c.out) / c.run_name, c):
            state = " other-settings (the bench refuses it: use another --out, or --force)"
        lines.append(f"{c.run_name:44s} method={c.method:17s} optimizer={spec['optimizer']:4s} fusion={c.fusion:9s} "
                     f"modalities={','.join(SHORT[m] for m in c.modalities):7s} seed={c.seed} epochs={c.epochs}"
                     + (f" epoch_frames={c.epoch_frames}" if c.epoch_frames else "") + state)
    epochs = sum(c.epochs for c in configs)
    todo = sum(left)
    fast, slow = SECONDS_PER_EPOCH
    full = sum(c.epochs for c in configs if len(c.modalities) == len(ALL))
    done = sum(n == 0 for n in left)
    begun = sum(0 < n < c.epochs for c, n in zip(configs, left))
    lines.append(f"{len(configs)} runs, {epochs} epochs in all ({full} of them with all four modalities; "
                 f"{len(preset.seeds)} seeds)"
                 + (f"; {done} finished (read back), {begun} to resume, {todo} epochs left" if todo < epochs else "")
                 + f". Measured on 2 idle CPU cores with --jobs 2 (1 thread per run): "
                 f"{fast:g}-{slow:g} s per four-modality epoch per run, so about {todo * fast / 2 / 3600:.1f}-"
                 f"{todo * slow / 2 / 3600:.1f} h (fewer modalities are cheaper; anything else running on the "
                 f"machine slows it down). Nothing was trained.")
    return "\n".join(lines)


def epochs_left(config, force: bool = False) -> int:
    """The epochs ``run_one`` would train for ``config``: none for a finished run (read back), those after its
    last recorded epoch for one it can resume (a checkpoint), all of them otherwise or with ``force``."""
    from poise.checkpoint import CHECKPOINT

    run_dir = Path(config.out) / config.run_name
    if force:
        return config.epochs
    history = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else []
    if len(history) >= config.epochs and (run_dir / "config.yaml").is_file():
        return 0
    return config.epochs - len(history) if (run_dir / CHECKPOINT).is_file() else config.epochs


def data_of(run_dir: Path) -> str:
    """The data a run trained on, in words, from its ``data.json`` (runs before 2026-12-06 have none)."""
    from poise.data.synth.writer import provenance_text

    path = Path(run_dir) / "data.json"
    return provenance_text(json.loads(path.read_text()) if path.is_file() else None)


def data_text(rows: list) -> str:
    """One line on the data a bench's runs trained on; a warning when they differ (e.g. generator versions)."""
    from poise.data.synth.writer import provenance_text

    kinds = sorted({r.get("data") or provenance_text(None) for r in rows})
    if len(kinds) == 1:
        return f"Runs trained on: {kinds[0]}."
    return ("**Warning: these runs trained on different data** (" + "; ".join(kinds) + "): their numbers do not "
            "compare; re-run the older ones (`--force`) on one dataset.")


def summary(config, history: list, run_dir: Path, label: str) -> dict:
    """The bench's row of one run: its last epoch, how much it still moved over its last 20 % of epochs, and
    the method's mechanism numbers (its ``Method.statistic``, AWC's penalty shares averaged over its window)."""
    from poise import methods

    last = history[-1]
    row = {"variant": label, "method": config.method, "fusion": config.fusion,
           "subset": subset_name(config.modalities), "seed": config.seed, "epochs": len(history),
           "test_mpjpe_mm": last["test_mpjpe_mm"], "test_pa_mpjpe_mm": last["test_pa_mpjpe_mm"],
           "train_mpjpe_mm": last["train_mpjpe_mm"], "gt_std_mm": last.get("gt_std_mm", math.nan),
           "seconds": sum(h["seconds"] for h in history), "run": str(run_dir), "data": data_of(run_dir)}
    if "test_rootrel_mpjpe_mm" in last:  # runs before 2026-12-06 did not record it
        row["test_rootrel_mpjpe_mm"] = last["test_rootrel_mpjpe_mm"]
    if "val_mpjpe_mm" in last:
        row["val_mpjpe_mm"] = last["val_mpjpe_mm"]
        # over the last 20 % of the epochs: from epoch round(0.8 N), or the last evaluated one before it (a run
        # extended with --epochs evaluated by its first length's cadence)
        start = max(0, round(0.8 * len(history)) - 1)
        back = next((h for h in reversed(history[:start + 1]) if "val_mpjpe_mm" in h), last)
        row["val_change_mm"] = last["val_mpjpe_mm"] - back["val_mpjpe_mm"]
    for m in config.modalities:
        row[f"shapley_{m}"] = last[f"shapley_{m}"]
        row[f"unimodal_std_mm_{m}"] = last[f"unimodal_std_mm_{m}"]
    window = [h for h in history if h.get("awc_active")]
    statistic = methods.get(config.method, **config.method_params).statistic
    kept = {"awc_fisher": "last", "modality_resample_added": "mean",
            **({statistic.key: statistic.over} if statistic else {})}
    for m in config.modalities:
        for key in ("awc_share", "awc_superior", "awc_force"):
            if window and f"{key}_{m}" in window[0]:
                row[f"{key}_{m}"] = sum(h[f"{key}_{m}"] for h in window) / len(window)
        for key, over in kept.items():  # the method's statistic, AWC's Fisher, the duplicates re-sampling adds
            if f"{key}_{m}" in last:
                row[f"{key}_{m}"] = last[f"{key}_{m}"] if over == "last" else \
                    sum(h[f"{key}_{m}"] for h in history) / len(history)
    return row


def run_history(row) -> list:
    """The per-epoch metrics of a bench row's run (its metrics.json)."""
    return json.loads((Path(row["run"]) / "metrics.json").read_text())


def depends_on(config) -> list[str]:
    """The run directories a configuration's method reads (MMANet's teacher): they must finish first."""
    return [v for k, v in config.method_params.items() if k == "teacher" and v]


BENCH_DROP, BENCH_SEEDS = 0.3, 5  # the per-sample missingness a robust bench reports


def robust_row(run_dir: Path, epochs: int) -> dict:
    """``poise robust``'s numbers for a finished run (read back from its robust.json when that scored this
    epoch's model), as bench columns: ``robust_<subset>_mm``, the mean and worst subset, the 0.3 drop."""
    from poise.robust import robustness, save_robustness
    from poise.train import load_run

    path, checkpoint = run_dir / "robust.json", run_dir / "checkpoint.pt"
    report = json.loads(path.read_text()) if path.is_file() else {}
    current = (report.get("epochs") == epochs
               and (not checkpoint.is_file() or path.stat().st_mtime_ns >= checkpoint.stat().st_mtime_ns)
               and [(d["drop"], d["seeds"]) for d in report.get("drops", [])][:1] == [(BENCH_DROP, BENCH_SEEDS)])
    if not current and not checkpoint.is_file():
        raise PoiseError(f"{run_dir} has no checkpoint and no robust.json of its last epoch with the bench's drops "
                         f"({BENCH_DROP}, {BENCH_SEEDS} seeds); bring its checkpoint.pt, or --force to retrain it")
    if not current:  # none yet, or of an older model, or with other drops (a user's own `poise robust`)
        report = robustness(load_run(run_dir), drops=(BENCH_DROP,), seeds=BENCH_SEEDS)
        save_robustness(report, run_dir)
    row = {f"robust_{r['subset']}_mm": r["mpjpe_mm"] for r in report["subsets"]}
    row.update(robust_mean_mm=report["mean_mpjpe_mm"], robust_worst_mm=report["worst"]["mpjpe_mm"],
               robust_worst=report["worst"]["subset"], robust_drop_mm=report["drops"][0]["mpjpe_mm"])
    return row


def run_one(config, threads: int = 0, force: bool = False, robust: bool = False) -> dict:
    """Train (or resume, or read back) one configuration; its summary row (the variant label is the first part
    of the run's name), with ``robust``: and its missing-modality numbers."""
    import torch

    from poise.checkpoint import CHECKPOINT
    from poise.train import resume, train

    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(config.out) / config.run_name
    metrics = run_dir / "metrics.json"
    history = json.loads(metrics.read_text()) if metrics.is_file() else []
    # A finished run is read back from its small files (config.yaml, method.json, metrics.json, robust.json)
    # even without its checkpoint, so that a bench can be carried to another machine and continued there.
    begun = (run_dir / "config.yaml").is_file()
    finished = len(history) >= config.epochs and begun
    if not force and begun:
        diff = saved_diff(run_dir, config)
        if diff:
            raise PoiseError(f"{run_dir} holds a run with other settings than this bench asks for ({diff}); use "
                             f"another --out, or --force to retrain it")
        check_method_params(run_dir, config)
    if not force and ((run_dir / CHECKPOINT).is_file() or finished):
        check_same_data(run_dir, config)
        if len(history) < config.epochs:
            history = resume(run_dir, progress=False).history
    else:
        if not force and begun:
            logger.warning(f"{run_dir}: begun with these settings but without a checkpoint to resume from (killed "
                           f"in its first epoch, or carried without it): training it from the start")
        history = train(config, progress=False, overwrite=True).history
    row = summary(config, history, run_dir, config.run_name.split("-")[0])
    return {**row, **robust_row(run_dir, len(history))} if robust else row


def check_same_data(run_dir: Path, config) -> None:
    """A run is reused only on the data it trained on: a root that poise has since rewritten with another
    generator (or preset, or seed) has the same path but other frames. Runs from before 2026-12-06 recorded no
    ``data.json``; the report says so for them."""
    from poise.data.synth.writer import provenance, provenance_text

    record = recorded_data(run_dir)
    if record is None:
        return
    if not Path(config.data).is_dir():
        raise PoiseError(f"{config.data}: no such data folder, and {run_dir} is reused only on the data it trained "
                         f"on ({provenance_text(record)}): point --data at that data")
    then, now = record.get("generator"), provenance(config.data)["generator"]
    if then != now:
        raise PoiseError(f"{run_dir} trained on {provenance_text({'generator': then})}, but {config.data} now holds "
                         f"{provenance_text({'generator': now})}: its numbers are not this data's. Point --data at "
                         f"the data it trained on, use another --out, or --force to retrain it")


WHERE = ("out",)  # where a run's folder lies, not what it learned: a bench re-read from a copy or another path


def differing_keys(existing, asked, ignore=WHERE) -> list:
    """The fields where two configs of one dataclass differ, but those in ``ignore``."""
    return [k for k in vars(asked) if k not in ignore and getattr(existing, k) != getattr(asked, k)]


def settings_diff(existing, asked, ignore=WHERE) -> str:
    """"key: X there, Y asked" for every field where two configs of one dataclass differ, but those in
    ``ignore`` ('' when they agree)."""
    return ", ".join(f"{k}: {getattr(existing, k)!r} there, {getattr(asked, k)!r} asked"
                     for k in differing_keys(existing, asked, ignore))


def saved_diff(run_dir: Path, config) -> str:
    """How the run saved in ``run_dir`` differs from ``config`` ('' when it is the same run). Where the folder
    lies does not count, nor where the data lies when the run recorded which synthetic data it trained on
    (``data.json``: ``check_same_data`` checks the data by that); a run on other data (the real MM-Fi) or from
    before ``data.json`` was written is asked for under its data path."""
    from poise.config import TrainConfig

    existing = TrainConfig.load(run_dir / "config.yaml")
    recorded = (recorded_data(run_dir) or {}).get("generator") is not None
    return settings_diff(existing, config, ignore=(*WHERE, "data") if recorded else WHERE)


def recorded_data(run_dir: Path) -> dict | None:
    """The run's ``data.json`` (which data it trained on), or None for a run from before it was written."""
    path = run_dir / "data.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except ValueError as err:
        raise PoiseError(f"{path}: cannot read which data the run trained on ({err}); restore it (git checkout, or "
                         f"from where the run came from), or --force to retrain the run") from err
    return record


def check_method_params(run_dir: Path, config) -> None:
    """A run is reusable only if its method and optimiser ran with the settings the code would use now (a
    changed default does not show in config.yaml, only in method.json)."""
    from poise import methods, optim

    path = run_dir / "method.json"
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    method = methods.get(config.method, **config.method_params)
    for what, then, now in (("method", saved["params"], method.params()),
                            ("optimiser", saved.get("optimizer"), optim.resolve(config, method))):
        now = json.loads(json.dumps(now))
        if then is not None and then != now:
            diff = ", ".join(f"{k}: {then.get(k)!r} there, {now.get(k)!r} now" for k in sorted(set(then) | set(now))
                             if then.get(k) != now.get(k))
            raise PoiseError(f"{run_dir} was trained with other {config.method} {what} settings ({diff}); delete "
                             f"it, use another --out, or --force to retrain")


def execute(configs: list, jobs: int = 1, threads: int = 0, force: bool = False, progress: bool = True,
            robust: bool = False) -> list:
    """Run every config (``jobs`` at a time, each with ``threads`` torch threads); their summary rows in order.
    Runs that read other runs (``depends_on``) go in a second wave, after everything else has finished."""
    from poise.selection import load_datasets

    for modalities in sorted({tuple(c.modalities) for c in configs}):  # build each cache here, not in N workers
        load_datasets(next(c for c in configs if tuple(c.modalities) == modalities), progress=progress)

    def line(config, row) -> str:
        return (f"{config.run_name}: MPJPE {row['test_mpjpe_mm']:.1f} / PA {row['test_pa_mpjpe_mm']:.1f} mm "
                f"({row['seconds']:.0f} s)")

    first = [c for c in configs if not depends_on(c)]
    second = [c for c in configs if depends_on(c)]
    names = {str(Path(c.out) / c.run_name) for c in configs}
    for config in second:
        for needed in depends_on(config):
            if needed not in names and not (Path(needed) / "checkpoint.pt").is_file():
                raise PoiseError(f"bench run {config.run_name} reads {needed}, which this bench does not train")
    work = functools.partial(run_one, robust=robust)
    rows = run_all(first, work, line, "bench", jobs, threads, force, progress)
    rows += run_all(second, work, line, "bench (second wave)", jobs, threads, force, progress) if second else []
    by_name = {r["run"]: r for r in rows}
    return [by_name[str(Path(c.out) / c.run_name)] for c in configs]


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a container's or taskset's limit, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_all(configs: list, run_one, line, what: str, jobs: int = 1, threads: int = 0, force: bool = False,
            progress: bool = True) -> list:
    """``run_one(config, threads, force)`` for every config, ``jobs`` at a time in spawned processes, with a
    progress bar and ``line(config, row)`` printed as each finishes; the rows in ``configs``' order. The first
    failure stops the pool and names its run. ``jobs`` 0: one per usable CPU; ``threads`` 0: the usable CPUs
    shared out over the jobs (two two-thread processes on 2 cores run several times slower than two one-thread
    ones)."""
    from tqdm import tqdm

    jobs = jobs or usable_cpus()
    threads = threads or max(1, usable_cpus() // jobs)

    rows: dict = {}
    bar = tqdm(total=len(configs), desc=what, unit="run", disable=not progress)

    def done(config, row):
        rows[config.run_name] = row
        bar.update()
        if progress:
            bar.write(line(config, row))

    try:
        if jobs <= 1:
            for config in configs:
                done(config, run_one(config, threads, force))
        else:
            _run_pool(configs, run_one, what, jobs, threads, force, done)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (poise.cli): say what is kept
        bar.close()
        finished = [c.run_name for c in configs if c.run_name in rows]
        logger.warning(f"{what}: stopped; {len(finished)} of {len(configs)} runs finished"
                    + (f" ({', '.join(finished)})" if finished else "") + "; re-run the same command to continue")
        raise
    bar.close()
    return [rows[c.run_name] for c in configs]


def _run_pool(configs, run_one, what, jobs, threads, force, done) -> None:
    """The runs in ``jobs`` spawned worker processes. However the pool ends (a failed run, Ctrl-C, SIGTERM), the
    runs in flight are stopped at once, not finished first; and each worker dies with this process, even when
    it is killed outright (``_die_with_parent``), so none goes on training under PID 1."""
    pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_die_with_parent)
    try:
        futures = {pool.submit(run_one, c, threads, force): c for c in configs}
        for future in as_completed(futures):
            config = futures[future]
            try:
                row = future.result()
            except Exception as error:  # stop now instead of after every other run has finished
                kind = PoiseError if isinstance(error, (PoiseError, OSError)) else RuntimeError
                raise kind(f"{what} run {config.run_name} failed: {error}; finished runs are kept, "
                           f"re-run the same command to resume after fixing it") from error
            done(config, row)
    except BaseException:
        for process in list((pool._processes or {}).values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()


def _die_with_parent() -> None:
    """A pool worker's first act: ask Linux to send it SIGTERM when the process that started it dies (prctl
    PR_SET_PDEATHSIG), and exit if that has happened already. Elsewhere a killed bench's workers outlive it."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:
        os._exit(1)
