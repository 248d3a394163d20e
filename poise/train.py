"""The training loop: data -> model -> method hooks -> metrics, contributions and a run directory.

Building a run (``build_run``): the datasets (with ``holdout`` of the training sequences set aside as a
validation set, never trained on), the model, then the method's ``setup``, then the optimiser over one
parameter group per modality, ``"fusion"`` and each module the method owns (``poise.optim``: the method's
reference optimiser unless the config names one), then, on resume, the checkpoint (set up, then restore).

One epoch: for each shuffled batch, ``encode`` once, ``decode`` with every modality (or the method's
``predict``), the objective w * MPJPE (paper 001, Eq. 10; w = the method's ``pose_loss_weight``, 1 for most) +
the method's ``extra_loss``, backward, the gradient all-reduce under torchrun, the method's ``after_backward``,
an optimiser step (the forward pass under ``precision``'s autocast; nothing in a step reads a value back from
the device). After the epoch, on the epochs ``evaluates`` picks (the first, every ``eval_every``-th, the first of
the last 20 % and the last): validation MPJPE on the held-out sequences (if any), test MPJPE / PA-MPJPE (on every
``eval_stride``-th test frame, every frame at the last epoch), and the assessment: the Shapley-Pearson
contribution of each modality on a fixed slice of the training frames (one encoder pass, 2^M decodes) and the
std of each modality's unimodal output (a collapsed modality predicts nearly the same pose for every frame;
``gt_std_mm`` is the ground truth's on the same frames). A method that reads the scores in another epoch has
them computed then (``Run.assessment``), and recorded too. Then the method's ``on_epoch_end`` and
``epoch_metrics``, the metric files and a checkpoint; the plots once the run is done.

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
import csv
import dataclasses
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from poise import distributed, memory, methods, optim, precision
from poise.config import TrainConfig
from poise.contrib.shapley import modality_contributions
from poise.data.dataset import MMFiDataset
from poise.methods.base import snapshot
from poise.metrics import M_TO_MM, mpjpe_loss
from poise.models.pose import PoseModel, build_model
from poise.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from poise.run_dir import clear_run, write_environment
from poise.runtime import batches, configure, evaluate, prefetched, resolve_device, run_lock, to_device, write_atomic
from poise.errors import PoiseError

# what a run (and the commands run on it) write into its directory: an --overwrite removes these before it
# writes the new config, so that nothing of the old run can be resumed or read back under the new one
logger = logging.getLogger(__name__)
RUN_FILES = (CHECKPOINT, CHECKPOINT + ".tmp", "metrics.csv", "metrics.json", "contributions.csv", "curves.png",
             "contributions.png", "robust.json", "robust.md", "robust.png", "contrib.json", "contrib.png",
             "report.html", "skeletons.png", "unimodal.png", "*.partial", "config.yaml", "method.json", "data.json",
             "env.json")
HOLDOUT_SEED = 7  # the held-out sequences are drawn from (seed, HOLDOUT_SEED)
SUBJECTS_SEED = 11  # the training subjects of ``train_subjects`` are drawn from (seed, SUBJECTS_SEED)


@dataclass
class Step:
    """What a method's per-step hooks see."""

    batch: dict
    features: dict
    pred: torch.Tensor
    loss: torch.Tensor


@dataclass
class Run:
    """Everything the loop and the method hooks share."""

    config: TrainConfig
    dir: Path | None  # None: a phase of a larger job (a task of a stream), which checkpoints it itself
    model: PoseModel
    method: methods.Method
    train: MMFiDataset
    test: MMFiDataset
    train_rows: np.ndarray  # the training frames trained on (``train`` minus the held-out sequences)
    val_rows: np.ndarray  # the held-out training frames (empty without ``holdout``)
    assess: dict  # a fixed batch of trained-on frames for the contribution assessment
    device: torch.device = torch.device("cpu")
    optimizer: torch.optim.Optimizer | None = None  # built after the method's setup
    scaler: torch.amp.GradScaler | None = None  # fp16's loss scaler (poise.precision), built with the optimiser
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    epoch: int = 0  # the epoch being trained (0-based); after the loop, the number of epochs done
    history: list = field(default_factory=list)  # one dict of metrics per finished epoch
    test_rows: np.ndarray | None = None  # test frames scored each epoch (None: every eval_stride-th; empty: none)
    task: int = 0  # in a task stream, the task this phase learns
    epoch_offset: int = 0  # epoch e draws the data order and point samples of epoch e + offset (a stream gives
    # each of its phases its own); 0 in Setting 1
    progress: bool = True  # progress bars for phases a method starts itself (NIS's probe)
    label: str = ""  # what progress bars call this phase ("task 2 ")
    record: dict = field(default_factory=dict)  # notes of the phase that method hooks add to
    loggers: list = field(default_factory=list)  # called on the main rank with each finished epoch's row
    assessed: tuple | None = None  # (scores, spreads) of the model as it left its last epoch; None: not asked yet
    drift_anchor: dict | None = None  # each encoder's parameters at the end of the first epoch (``encoder_drift``)

    @property
    def last_epoch(self) -> bool:
        return self.epoch == self.config.epochs - 1

    def assessment(self) -> tuple[dict, dict]:
        """The Shapley-Pearson scores and unimodal-output spreads of the model since its last trained epoch,
        computed on first use and kept until the next epoch trains: the loop asks at its evaluation cadence,
        before the method's ``on_epoch_end``; a method whenever it reads them (AWC and re-learning in their
        ``on_epoch_end``, modality re-sampling at the start of the next epoch, which no hook in between changes
        the model for); nothing else pays."""
        if self.assessed is None:
            self.assessed = assess(self)
        return self.assessed

    def scores(self) -> dict:
        """{modality: Shapley-Pearson score} of the model as it left its last trained epoch (``assessment``)."""
        return self.assessment()[0]


def load_datasets(config: TrainConfig, progress: bool = True, rebuild_cache: bool = False) -> tuple[MMFiDataset, MMFiDataset]:
    kw = dict(protocol=config.protocol, split=config.split, modalities=config.modalities,
              lidar_points=config.lidar_points, mmwave_points=config.mmwave_points, seed=config.seed,
              rgb_window=config.rgb_window, on_error=config.on_error, progress=progress)
    # One rebuild: the parts share the cache, and under torchrun the other ranks open what rank 0 built.
    rebuild_cache = rebuild_cache and distributed.is_main()
    train = MMFiDataset(config.data, part="train", frame_stride=config.train_stride, rebuild_cache=rebuild_cache, **kw)
    test = MMFiDataset(config.data, part="test", **kw)
    if len(train) == 0 or len(test) == 0:
        raise PoiseError(f"{config.data}: split {config.split} of protocol {config.protocol} leaves {len(train)} "
                         f"training and {len(test)} test frames; use a root with more subjects or another split")
    return train, test


def sequences_by_action(train: MMFiDataset, rows: np.ndarray) -> tuple[np.ndarray, dict]:
    """(the sequence of each of ``rows``, {action: its sequences among them}, actions in sorted order)."""
    sequence = train.sequence_of(rows)
    by_action: dict = {}
    for i in np.unique(sequence):
        by_action.setdefault(train.sequences[i].action, []).append(i)
    return sequence, {action: np.array(by_action[action]) for action in sorted(by_action)}


def subject_rows(train: MMFiDataset, per_action: int, seed: int) -> np.ndarray:
    """The training frames of ``per_action`` of each action's training subjects (0: all of them), drawn from the
    seed as the first ``per_action`` of one permutation, so that smaller sets are nested in larger ones: for
    measuring how a model's error falls as it sees more people. The test split is unchanged."""
    rows = np.arange(len(train))
    if not per_action:
        return rows
    sequence, by_action = sequences_by_action(train, rows)
    rng = np.random.default_rng([seed, SUBJECTS_SEED])
    keep = []
    for action, mine in by_action.items():
        if len(mine) < per_action:
            raise PoiseError(f"config key 'train_subjects' = {per_action}: action {action} has only {len(mine)} "
                             f"training subjects here; use at most {len(mine)}, or 0 for all of them")
        keep.extend(rng.permutation(mine)[:per_action].tolist())
    return rows[np.isin(sequence, keep)]


def holdout_rows(train: MMFiDataset, fraction: float, seed: int, rows=None,
                 key: str = "holdout") -> tuple[np.ndarray, np.ndarray]:
    """(trained rows, held-out rows) of ``rows`` (default: every training frame): ``fraction`` of each action's
    training *sequences* (whole sequences, drawn from the seed; at least one per action when ``fraction`` > 0,
    never all of them) set aside as a validation set. Stratified by action, as the test split is (S1 holds
    subjects out per action), so that the validation error weighs every action as the test error does. ``key``:
    the config key errors name."""
    rows = np.arange(len(train)) if rows is None else np.asarray(rows, dtype=np.int64)
    if not fraction:
        return rows, rows[:0]
    sequence, by_action = sequences_by_action(train, rows)
    rng = np.random.default_rng([seed, HOLDOUT_SEED])
    held = []
    for mine in by_action.values():
        n = min(max(1, int(round(fraction * len(mine)))), len(mine) - 1)
        held.extend(rng.choice(mine, n, replace=False).tolist())
    if not held:
        raise PoiseError(f"config key {key!r} = {fraction}: every action has a single training sequence here, so "
                         f"none can be held out; use {key}: 0 or a root with more subjects")
    is_val = np.isin(sequence, held)
    return rows[~is_val], rows[is_val]


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


def prepare(run: Run) -> None:
    """The method's ``setup``, then the optimiser over one parameter group per modality, ``"fusion"`` and each
    module the method owns, and its learning-rate schedule (a checkpoint is restored after this)."""
    run.method.setup(run)
    groups = {**run.model.modality_parameters(),
              **{name: list(m.parameters()) for name, m in run.method.modules().items()}}
    run.optimizer = optim.build(optim.resolve(run.config, run.method), groups)
    run.scheduler = torch.optim.lr_scheduler.StepLR(run.optimizer, step_size=run.config.lr_step,
                                                    gamma=run.config.lr_gamma)
    run.scaler = precision.grad_scaler(run.config.precision, run.device)


ASSESS_CHUNK = 128  # frames per encoder pass of the assessment (a pass over 512 costs 1.6x more per frame)


@torch.no_grad()
def assess(run: Run) -> tuple[dict, dict]:
    """Shapley-Pearson scores and the std (mm) of each modality's unimodal output, on the fixed slice (use
    ``run.assessment()``, which computes this once per epoch)."""
    run.model.eval()
    n = len(run.assess["gt"])
    chunks = [run.model.encode({k: v[i:i + ASSESS_CHUNK] for k, v in run.assess.items()})
              for i in range(0, n, ASSESS_CHUNK)]
    features = {m: torch.cat([c[m] for c in chunks]) for m in run.model.modalities}
    contrib = modality_contributions(run.model, features, run.assess["gt"])
    spread = {m: float(run.model.decode(features, (m,)).std(0).mean() * M_TO_MM) for m in run.model.modalities}
    spread["gt"] = float(run.assess["gt"].std(0).mean() * M_TO_MM)
    return contrib.scores, spread  # every rank scored the same slice with the same model: no all-reduce needed


def epoch_order(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """This epoch's sample list (the method's ``epoch_samples``, default every trained-on frame once) and a
    shuffled order of positions in it, cut to ``epoch_frames`` when set (a P1-scale root: consecutive frames are
    near-duplicates, so an epoch of a fresh draw of k frames costs k / batch_size steps, and the independent draws
    reach almost every frame over a run); both depend only on (seed, epoch, method state), so a resumed run sees
    the same batches. The cut applies to a method's own sample list too (modality re-sampling's duplicates)."""
    samples = run.method.epoch_samples(run)
    samples = run.train_rows if samples is None else np.asarray(samples, dtype=np.int64)
    order = np.random.default_rng([run.config.seed, run.epoch_offset + run.epoch]).permutation(len(samples))
    return samples, order[: run.config.epoch_frames or None]


def train_epoch(run: Run, progress: bool = True) -> float:
    """One epoch; returns the mean training MPJPE (mm). Each batch carries ``"sample"``: the positions of its
    frames in the epoch's sample list, so a method can treat its own duplicates differently.

    No step waits for the device: the loss is summed where it is computed and read once, at the end of the
    epoch (which is also where a diverged loss is caught), and on a GPU the next batch is built and copied from
    pinned memory while the current one trains (``runtime.prefetched``)."""
    model, config = run.model, run.config
    model.train()
    run.train.set_epoch(run.epoch_offset + run.epoch)
    samples, order = epoch_order(run)
    run.assessed = None  # the model is about to change
    trained = [model, *run.method.modules().values()]
    for module in trained:
        module.train()
    total, count = torch.zeros((), dtype=torch.float64, device=run.device), 0
    autocast = precision.autocast(config.precision, run.device)
    shards = [distributed.shard(p) for p in batches(order, config.batch_size)]  # this rank's share of each batch
    loaded = prefetched((run.train.batch(samples[p]) for p in shards), run.device)
    bar = tqdm(zip(shards, loaded), total=len(shards), desc=f"{run.label}epoch {run.epoch + 1}/{config.epochs}",
               unit="batch", leave=False, disable=not (progress and distributed.is_main()))
    for positions, batch in bar:
        batch["sample"] = positions  # a numpy array, on the host: methods index their own arrays with it
        with autocast:
            features = model.encode(batch)
            pred = run.method.predict(run, batch, features)
            pred = (model.decode(features) if pred is None else pred).float()
            loss = mpjpe_loss(pred, batch["gt"])
            step = Step(batch, features, pred, loss)
            weight = run.method.pose_loss_weight(run)
            objective = loss if weight == 1 else weight * loss
            extra = run.method.extra_loss(run, step)
            objective = objective if extra is None else objective + extra
        run.optimizer.zero_grad(set_to_none=True)
        if run.scaler is None:
            objective.backward()
        else:
            run.scaler.scale(objective).backward()
            run.scaler.unscale_(run.optimizer)  # the methods' gradient edits see true gradients
        distributed.average_gradients(*trained)
        run.method.after_backward(run, step)
        if run.scaler is None:
            run.optimizer.step()
        else:
            run.scaler.step(run.optimizer)  # skipped when fp16 overflowed (a host read: fp16 only)
            run.scaler.update()
        total += loss.detach().double() * len(pred)  # as the host summed it before: float64
        count += len(pred)
    run.scheduler.step()
    distributed.broadcast_buffers(model)
    total, count = distributed.all_sum([total.item(), count])
    if not math.isfinite(total):
        raise PoiseError(f"training diverged: the loss is {total} in epoch {run.epoch + 1}, with learning "
                         f"rate {optim.base_lr(run.optimizer):g} ({optim.resolve(config, run.method)['optimizer']}"
                         f"); lower the config key 'lr'")
    return total / max(count, 1) * M_TO_MM


def encoder_drift(run: Run) -> dict:
    """``drift_<m>``: how far each encoder has moved since the end of the run's first epoch (L2 distance over its
    parameters). A method that holds an encoder back leaves it closer than joint training of the same seed does
    (identical up to then), which is how the bench reads whom AWC constrains; one host read per epoch."""
    params = run.model.modality_parameters()
    distances = torch.stack([torch.sqrt(sum((p.detach().double() - a.double()).square().sum()
                                            for p, a in zip(params[m], anchor)))
                             for m, anchor in run.drift_anchor.items()])
    return {f"drift_{m}": d for m, d in zip(run.drift_anchor, distances.tolist())}


def tested_model(run: Run) -> torch.nn.Module:
    """The model that is evaluated: the method's ``test_model`` (DivideMix: both networks' mean), or the model."""
    return run.method.test_model(run) or run.model


def evaluates(run: Run) -> bool:
    """Whether the loop evaluates and assesses this epoch for the record: the first, every ``eval_every``-th,
    the one where the last 20 % of the run begins and the last. Every number a report reads is among them (the
    reported last epoch; the convergence check, which compares the validation error of the last epoch with that
    of epoch round(0.8 N)), and the curves keep a point every ``eval_every`` epochs. Skipping the others
    changes nothing else: neither an evaluation nor an assessment touches the model, the data order or an RNG."""
    done, total = run.epoch + 1, run.config.epochs
    return done in (1, round(0.8 * total), total) or done % run.config.eval_every == 0


def epoch_evaluation(run: Run) -> dict:
    """Validation metrics on the held-out sequences (if any) and test metrics: every ``eval_stride``-th test
    frame, every frame at the last epoch (the number that is reported); ``run.test_rows`` when given."""
    model = tested_model(run)
    metrics = evaluate(model, run.train, run.val_rows, prefix="val") if len(run.val_rows) else {}
    if run.test_rows is not None:
        rows = run.test_rows
    else:
        rows = np.arange(0, len(run.test), 1 if run.last_epoch else run.config.eval_stride)
    if not len(rows):
        return metrics
    return {**metrics, **evaluate(model, run.test, rows), "test_frames": len(rows)}


def csv_text(rows: list[dict], columns=None) -> str:
    """``rows`` as CSV, with every column any row has (in order of first appearance) unless ``columns`` says."""
    out = io.StringIO()
    writer = csv.DictWriter(out, columns or list(dict.fromkeys(k for r in rows for k in r)), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_reports(run: Run) -> None:
    """metrics.csv/json and contributions.csv from the history so far, each written atomically (the loop
    writes them before the checkpoint that claims their epochs); the two plots once the run is done."""
    if not run.history:
        return
    write_atomic(run.dir / "metrics.csv", csv_text(run.history))
    write_atomic(run.dir / "metrics.json", json.dumps(run.history, indent=1))
    first = f"shapley_{run.model.modalities[0]}"
    assessed = [{"epoch": h["epoch"], **{m: h[f"shapley_{m}"] for m in run.model.modalities}}
                for h in run.history if first in h]
    write_atomic(run.dir / "contributions.csv", csv_text(assessed, ["epoch", *run.model.modalities]))
    if run.epoch < run.config.epochs:
        return
    from poise.plots import plot_contributions, plot_curves

    plot_curves(run.history, run.dir / "curves.png", title=run.config.run_name)
    plot_contributions(run.history, run.dir / "contributions.png", title=run.config.run_name)


def fit(run: Run, progress: bool = True) -> Run:
    """Train from ``run.epoch`` to the configured number of epochs, checkpointing after each."""
    while run.epoch < run.config.epochs:
        start = time.perf_counter()
        run.method.on_epoch_start(run)
        lr = optim.base_lr(run.optimizer)
        train_mm = train_epoch(run, progress)
        row = {"epoch": run.epoch + 1, "lr": lr, "train_mpjpe_mm": train_mm}
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
            row.update({f"unimodal_std_mm_{m}": spread[m] for m in scores}, gt_std_mm=spread["gt"])
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
            val = f", val {row['val_mpjpe_mm']:.1f}" if "val_mpjpe_mm" in row else ""
            test = (f", test MPJPE {row['test_mpjpe_mm']:.1f} / PA {row['test_pa_mpjpe_mm']:.1f} mm"
                    if "test_mpjpe_mm" in row else "")
            shapley = [f"{m} {row[f'shapley_{m}']:.2f}" for m in run.model.modalities if f"shapley_{m}" in row]
            logger.info(f"{run.label}epoch {run.epoch}/{run.config.epochs}: train {train_mm:.1f} mm{val}{test}"
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
                                                             "optimizer": optim.resolve(config, run.method)}, indent=1))
            (run_dir / "data.json").write_text(json.dumps(data, indent=1))
            write_environment(run)
        return fit_logged(run, progress, tensorboard, fresh=True)


def resume(run_dir, progress: bool = True, epochs: int | None = None, rebuild_cache: bool = False,
           tensorboard: bool = False) -> Run:
    """Continue the run in ``run_dir`` from its last checkpoint (optionally to more ``epochs``)."""
    run_dir = Path(run_dir)
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


def load_run(run_dir, progress: bool = False) -> Run:
    """A finished (or interrupted) run, rebuilt from its config and last checkpoint, for analysis."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / CHECKPOINT).is_file():
        raise PoiseError(f"{run_dir} is not a run directory with a checkpoint (config.yaml and {CHECKPOINT}); "
                         f"train one with `poise train`")
    run = build_run(TrainConfig.load(run_dir / "config.yaml"), run_dir, progress)
    load_checkpoint(run, "train the run again, or point at a run whose checkpoint is intact")
    return run
