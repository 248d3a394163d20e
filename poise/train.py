"""The training loop: data -> model -> method hooks -> metrics, contributions and a run directory.

Building a run (``build_run``): the datasets (with ``holdout`` of the training sequences set aside as a
validation set, never trained on), the model, then the method's ``setup``, then the optimiser over one
parameter group per modality, ``"fusion"`` and each module the method owns (``poise.optim``: the method's
reference optimiser unless the config names one), then, on resume, the checkpoint (set up, then restore).

Each epoch (``poise.epoch``: the steps, then validation, test metrics and the Shapley-Pearson assessment on the
epochs ``evaluates`` picks), then the method's ``on_epoch_end`` and ``epoch_metrics``, the metric files and a
checkpoint (``poise.checkpoint``); the plots once the run is done (``poise.run_dir.write_reports``). The
frames a run trains on: ``poise.selection``; what the loop and the hooks share: ``poise.run.Run``.

A task stream (``poise.continual``) runs each task as a phase of this loop (``Run`` with no directory,
``phase_of``, ``prepare``, ``fit``), with a ``Composite`` of its strategies as the method.

The run directory holds ``config.yaml``, ``method.json`` (the method's hyper-parameters and the resolved
optimiser), ``metrics.csv`` / ``metrics.json`` (one row per epoch), ``contributions.csv``, ``checkpoint.pt``
(written to a temporary file and renamed) and ``curves.png`` / ``contributions.png``. ``resume(run_dir)``
continues from the last checkpoint and, on CPU with the same seed, ends with the same numbers as an
uninterrupted run: the data order depends only on (seed, epoch), and the checkpoint holds the optimiser,
scheduler, method (and its modules) and RNG states.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from poise import distributed, memory, methods, optim, precision
from poise.config import TrainConfig
from poise.methods.base import Probe, snapshot
from poise.models.capabilities import require
from poise.models.pose import build_model
from poise.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from poise.run_dir import clear_run, write_environment, write_reports
from poise.runtime import configure, gradient_stop, resolve_device, run_lock, to_device, trained_from_python
from poise.epoch import encoder_drift, epoch_evaluation, evaluates, train_epoch
from poise.errors import PoiseError
from poise.run import Run
from poise.selection import holdout_rows, load_datasets, subject_rows

# what a run (and the commands run on it) write into its directory: an --overwrite removes these before it
# writes the new config, so that nothing of the old run can be resumed or read back under the new one
logger = logging.getLogger(__name__)


RUN_FILES = (CHECKPOINT, CHECKPOINT + ".tmp", "metrics.csv", "metrics.json", "contributions.csv", "curves.png",
             "contributions.png", "robust.json", "robust.md", "robust.png", "contrib.json", "contrib.png",
             "report.html", "skeletons.png", "unimodal.png", "*.partial", "config.yaml", "method.json", "data.json",
             "env.json")


def build_run(config: TrainConfig, run_dir: Path, progress: bool = True, rebuild_cache: bool = False) -> Run:
    method = methods.get(config.method, **config.method_params)  # fail on a bad name before loading data
    if config.batch_size % distributed.world():
        raise PoiseError(f"batch_size={config.batch_size} does not split evenly over {distributed.world()} "
                         f"processes; under torchrun choose a batch_size divisible by --nproc_per_node")
    with distributed.main_first():  # rank 0 builds a missing cache; the others then open it
        train, test = load_datasets(config, progress and distributed.is_main(), rebuild_cache)
    train_rows, val_rows = holdout_rows(train, config.holdout, config.seed,
                                        subject_rows(train, config.train_subjects, config.seed))
    torch.manual_seed(config.seed)
    model = build_model(config.modalities, fusion=config.fusion, dim=config.dim, rgb_window=config.rgb_window,
                        encoder=config.encoder)
    model.set_mean_pose(torch.from_numpy(train.poses(train_rows).mean(0)))
    device = resolve_device(config.device)
    configure(device, config.deterministic)
    model.to(device)
    rows = np.random.default_rng(config.seed).permutation(train_rows)[: config.assess_frames]
    assess_batch = to_device(train.batch(np.sort(rows)), device)  # the whole slice on every rank: identical scores
    run = Run(config, run_dir, model, method, train, test, train_rows, val_rows, assess_batch, device=device)
    prepare(run)
    return run


def phase_of(run: Run, rows: np.ndarray, epochs: int, method: methods.Method, **changes) -> Run:
    """A new training phase of ``run``'s model on ``rows`` of its training data for ``epochs`` epochs with
    ``method`` (e.g. NIS's probe, or the next task of a stream): no run directory and no test metrics unless
    ``changes`` say otherwise; set up and ready to ``fit``."""
    config = dataclasses.replace(run.config, epochs=epochs)
    phase = dataclasses.replace(run, config=config, dir=None, method=method, train_rows=np.asarray(rows),
                                val_rows=run.val_rows[:0], test_rows=np.zeros(0, np.int64), epoch=0, history=[],
                                record={}, optimizer=None, scheduler=None, loggers=[], assessed=None, **changes)
    prepare(phase)
    return phase


def run_probe(run: Run, probe: Probe) -> dict:
    """A probe a method asked for (``Method.probes``): ``probe.epochs`` epochs of the pose loss alone on
    ``probe.rows`` with the task's optimiser, ``probe.frozen`` encoders held; ``probe.measure`` of the fitted
    phase, then the model as it was. The loop runs it, so that no method calls the loop."""
    saved = copy.deepcopy(run.model.state_dict())
    plain = methods.Method()  # the probe trains the pose loss alone
    plain.reference_optimizer = run.method.reference_optimizer  # the task's optimiser (``optimizer: auto``)
    plain.reference_lr = run.method.reference_lr
    with gradient_stop(run.model, probe.frozen):
        phase = phase_of(run, probe.rows, probe.epochs, plain, epoch_offset=run.epoch_offset + 100 * probe.phase,
                         label=probe.label)
        fit(phase, run.progress)
        probe.result = probe.measure(phase)
    run.model.load_state_dict(saved)
    return probe.result


def prepare(run: Run) -> None:
    """The method's ``setup`` (once the model has the capabilities it ``needs``), then the optimiser over one
    parameter group per modality, ``"fusion"`` and each module the method owns, and its learning-rate schedule
    (a checkpoint is restored after this)."""
    require(run.model, f"method {run.method.name!r}", *run.method.needs)
    run.method.setup(run)
    groups = {**run.model.modality_parameters(),
              **{name: list(m.parameters()) for name, m in run.method.modules().items()}}
    run.optimizer = optim.build(optim.resolve(run.config, run.method), groups)
    run.scheduler = torch.optim.lr_scheduler.StepLR(run.optimizer, step_size=run.config.lr_step,
                                                    gamma=run.config.lr_gamma)
    run.scaler = precision.grad_scaler(run.config.precision, run.device)


def fit(run: Run, progress: bool = True) -> Run:
    """Train from ``run.epoch`` to the configured number of epochs, checkpointing after each."""
    while run.epoch < run.config.epochs:
        start = time.perf_counter()
        run.method.on_epoch_start(run)
        lr = optim.base_lr(run.optimizer)
        train_loss = train_epoch(run, progress)
        row = {"epoch": run.epoch + 1, "lr": lr, f"train_{run.objective.loss_name}": train_loss}
        if run.epoch == 0:
            params = run.model.modality_parameters()
            run.drift_anchor = {m: snapshot(params[m]) for m in run.model.modalities}
        if run.drift_anchor is not None:  # None: resumed from a checkpoint written before runs recorded it
            row.update(encoder_drift(run))
        if evaluates(run):
            row.update(epoch_evaluation(run))
            run.assessment()
        run.model.eval()  # as an evaluation leaves it: every on_epoch_end sees the model in one mode
        run.method.on_epoch_end(run)
        if run.assessed is not None:  # by the cadence, or a method read the scores: recorded either way
            scores, spread = run.assessed
            row.update({f"shapley_{m}": s for m, s in scores.items()})
            std = run.objective.named("unimodal_std")
            row.update({f"{std}_{m}": spread[m] for m in scores}, **{run.objective.named("gt_std"): spread["gt"]})
        row.update(run.method.epoch_metrics(run))
        row["seconds"] = time.perf_counter() - start
        run.history.append(row)
        distributed.check_in_sync(run.model, *run.method.modules().values())
        run.epoch += 1
        if distributed.is_main() and run.dir is not None:
            write_reports(run)  # before the checkpoint: a kill between the two retrains the epoch and rewrites them
            save_checkpoint(run)
        for log in run.loggers if distributed.is_main() else ():
            log(row)
        if progress and distributed.is_main():
            names = list(run.objective.metrics)  # val: the first metric; test: the first two
            val, test = (" / ".join(f"{name} {row[f'{part}_{name}']:.4g}" for name in names[:shown]
                                    if f"{part}_{name}" in row) for part, shown in (("val", 1), ("test", 2)))
            shapley = [f"{m} {row[f'shapley_{m}']:.2f}" for m in run.model.modalities if f"shapley_{m}" in row]
            logger.info(f"{run.label}epoch {run.epoch}/{run.config.epochs}: train {run.objective.loss_name} "
                        f"{train_loss:.4g}" + (f", val {val}" if val else "") + (f", test {test}" if test else "")
                     + ("; Shapley " + ", ".join(shapley) if shapley else ""))
    distributed.barrier()  # no rank leaves (and tears the process group down) while another still works
    return run


def train(config: TrainConfig, progress: bool = True, overwrite: bool = False, rebuild_cache: bool = False,
          tensorboard: bool = False) -> Run:
    """A new run of ``config`` in ``config.out / config.run_name`` (``rebuild_cache``: build the data's packed
    cache again even if one matches; ``tensorboard``: also log each epoch to ``RUN_DIR/tensorboard``)."""
    run_dir = Path(config.out) / config.run_name
    if (run_dir / CHECKPOINT).exists() and not overwrite:
        raise FileExistsError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, or choose "
                              f"another --name (or --overwrite)")
    memory.check_fits(config, resolve_device(config.device))  # a size the machine cannot hold: before any data
    distributed.barrier()  # every rank has checked before rank 0 writes
    with run_lock(run_dir) if distributed.is_main() else contextlib.nullcontext():
        run = build_run(config, run_dir, progress, rebuild_cache)  # a start that fails here leaves no run folder behind
        if distributed.is_main():
            from poise.data.synth.writer import provenance

            data = provenance(config.data)  # which data, which generator (never raises)
            clear_run(run_dir, RUN_FILES)  # --overwrite: the old run's state goes before the new config comes
            config.save(run_dir / "config.yaml")
            (run_dir / "method.json").write_text(json.dumps({"name": config.method, "params": run.method.params(),
                                                             "module": type(run.method).__module__,
                                                             "optimizer": optim.resolve(config, run.method)}, indent=1))
            (run_dir / "data.json").write_text(json.dumps(data, indent=1))
            write_environment(run)
        return fit_logged(run, progress, tensorboard, fresh=True)


def resume(run_dir, progress: bool = True, epochs: int | None = None, rebuild_cache: bool = False,
           tensorboard: bool = False) -> Run:
    """Continue the run in ``run_dir`` from its last checkpoint (optionally to more ``epochs``)."""
    run_dir = Path(run_dir)
    check_cli_run(run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / CHECKPOINT).is_file():
        raise PoiseError(f"{run_dir} is not a run directory with a checkpoint (config.yaml and {CHECKPOINT}); "
                         f"start it with `poise train`")
    config = TrainConfig.load(run_dir / "config.yaml", epochs=epochs)
    memory.check_fits(config, resolve_device(config.device))
    with run_lock(run_dir) if distributed.is_main() else contextlib.nullcontext():
        run = build_run(config, run_dir, progress, rebuild_cache)
        load_checkpoint(run)
        if epochs is not None and epochs < run.epoch:
            raise PoiseError(f"{run_dir} has trained {run.epoch} epochs already; --epochs {epochs} would shorten "
                             f"it. Pass more epochs to continue it, or start a new run")
        if epochs is not None and distributed.is_main():
            config.save(run_dir / "config.yaml")
        if distributed.is_main():
            write_environment(run, resumed=True)
        if run.epoch >= config.epochs and distributed.is_main():
            write_reports(run)  # nothing left to train: the files say what the checkpoint holds, whatever a kill left
        return fit_logged(run, progress, tensorboard)


def fit_logged(run: Run, progress: bool, tensorboard: bool, fresh: bool = False) -> Run:
    """``fit``, with each epoch also logged to ``run.dir/tensorboard`` when asked (main rank only; ``fresh``: a
    new run, so earlier event files there go)."""
    if not tensorboard or not distributed.is_main():
        return fit(run, progress)
    from poise.tensorboard import TensorBoardLog

    log = TensorBoardLog(run.dir / "tensorboard", fresh=fresh)
    run.loggers.append(log)
    try:
        return fit(run, progress)
    finally:
        log.close()


def check_cli_run(run_dir: Path) -> None:
    """A run trained from Python (``poise.fit``: its folder holds ``api.json``) is rebuilt from the user's model
    and data, which only the user's code has; the command line says so rather than building an MM-Fi run."""
    if trained_from_python(run_dir):
        raise PoiseError(f"{run_dir} was trained from Python (poise.fit): its model and data are your code's, so the "
                         f"command line cannot rebuild it; continue it with poise.fit(model, data, ..., "
                         f"out={str(run_dir)!r}, resume=True)")


def load_run(run_dir, progress: bool = False) -> Run:
    """A finished (or interrupted) run, rebuilt from its config and last checkpoint, for analysis."""
    run_dir = Path(run_dir)
    check_cli_run(run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / CHECKPOINT).is_file():
        raise PoiseError(f"{run_dir} is not a run directory with a checkpoint (config.yaml and {CHECKPOINT}); "
                         f"train one with `poise train`")
    run = build_run(TrainConfig.load(run_dir / "config.yaml"), run_dir, progress)
    load_checkpoint(run, "train the run again, or point at a run whose checkpoint is intact")
    return run
