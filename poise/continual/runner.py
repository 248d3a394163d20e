"""``poise continual``: paper 001's Algorithm 2 on a task stream with one noisy modality per later task.

A stream is a sequence of ordinary training phases of the Setting-1 loop (``poise.train``), one per task of the
protocol's stream (``poise.continual.tasks``) on the cross-subject split. For task t:

1. the task's data as the learner sees it (``TaskData``: its training frames, one modality corrupted in
   ``ratio`` of them for t > 0, ``poise.continual.noise``), a fresh optimiser, and the task's method: the
   plugins the config's switches name (``poise.continual.strategies``: the balancing method, re-learning, NIS,
   EWC, Co-teaching / DivideMix);
2. the probes the plugins ask for (NIS's fit: ``poise.train.run_probe``), their ``on_task_start`` (NIS names
   and keeps the clean set), ``setup``, ``epochs`` epochs of the loop, ``on_task_end`` (EWC's Fisher and
   anchor);
3. MPJPE / PA-MPJPE on the test frames of tasks 0..t (the lower triangle of the task x task matrix: its last
   row is 001 Fig. 5a, its diagonal Fig. 5b), NIS's and DivideMix's splits scored against the recorded
   corruption (which no plugin sees), and a checkpoint in the Setting-1 format with the stream's state.

Results (``results.json``): avg-MPJPE / avg-PA-MPJPE after each task (001 Eq. 13: the mean over the tasks
seen so far), the matrix, forgetting per task (MPJPE after the last task minus right after learning it;
positive = forgot), and the NIS record per task: the named and the true noisy modality and the clean/noisy
split's precision and recall against the corrupted samples. ``tasks.json``: each task's record, with the
loop's per-epoch rows (contribution scores, unimodal spreads, the methods' metrics). One shared head, no
task labels.

``resume`` continues from the last finished task; every random draw is keyed by (seed, task, phase, epoch),
so a resumed run ends with the same numbers as an uninterrupted one on CPU.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from poise import memory, train as loop
from poise.epoch import tested_model
from poise.run import Run
from poise.selection import holdout_rows
from poise.checkpoint import CHECKPOINT, MODEL_KEYS, restore_parts, save_checkpoint
from poise.config import TrainConfig
from poise.continual import results, strategies, tasks as task_stream
from poise.continual.config import TRAIN_KEYS, ContinualConfig
from poise.continual.noise import NoiseSpec, NoisyView
from poise.data.dataset import MMFiDataset
from poise.errors import PoiseError
from poise.models.pose import build_model
from poise.run_dir import clear_run, write_environment
from poise.runtime import configure, evaluate, read_checkpoint, resolve_device, run_lock, to_device, write_atomic

logger = logging.getLogger(__name__)
STREAM_FILES = (CHECKPOINT, CHECKPOINT + ".tmp", "tasks.json", "results.json", "noise.json", "losses-task*.npz",
                "*.json.partial", "report.html", "config.yaml", "env.json")  # what a continual run writes (--overwrite clears)
TASK_EPOCHS = 1000  # task t's phases draw the data of epochs 1000 t + 100 phase + e (phase 0: training)


class TaskData:
    """One task's training frames as the learner sees them: ``dataset``'s batches with the task's corruption
    (``view``, a ``NoisyView``; None for a clean task) applied. The rest is the dataset's."""

    def __init__(self, dataset: MMFiDataset, view: NoisyView | None):
        self.dataset, self.view = dataset, view

    def __len__(self) -> int:
        return len(self.dataset)

    def clean_batch(self, indices) -> dict:
        """The frames at ``indices`` as recorded, whatever this task corrupts (NIS's clean reference)."""
        return self.dataset.batch(indices)

    def batch(self, indices) -> dict:
        batch = self.dataset.batch(indices)
        return batch if self.view is None else self.view.corrupt(batch)

    def __getattr__(self, name):  # set_epoch, poses, sequence_of, sequences, ...
        return getattr(self.dataset, name)


@dataclass
class ContinualRun:
    """The stream: data, the model, the strategies that span it, and what has been measured."""

    config: ContinualConfig
    dir: Path
    model: torch.nn.Module
    train: MMFiDataset
    test: MMFiDataset
    train_tasks: list  # dataset indices of each task's training frames (the first task's without reference_rows)
    reference_rows: np.ndarray  # frames of the first task's held-back sequences: trained on by no task
    test_tasks: list  # and of its test frames
    views: list  # per task: a NoisyView, or None for a clean task
    device: torch.device
    strategies: list  # plugins whose state spans the stream (poise.continual.strategies.across_tasks)
    task: int = 0  # tasks finished
    matrix: list = field(default_factory=list)  # row i: [(mpjpe, pa) on the test set of each task] after task i
    records: list = field(default_factory=list)  # one dict per finished task
    last: Run | None = None  # the last task's phase


# ----------------------------------------------------------------------------------------------------------------
# building


def noise_plan(config: ContinualConfig, n_tasks: int) -> list:
    """The ``NoiseSpec`` of each task: None for task 0 (and for every task of a clean stream); otherwise one
    modality drawn uniformly per task from the seed (001: "only one of the four modalities is corrupted")."""
    if config.noise == "none":
        return [None] * n_tasks
    rng = np.random.default_rng([config.seed, 5])
    drawn = [config.modalities[int(i)] for i in rng.choice(len(config.modalities), size=n_tasks)]
    chosen = [config.noisy_modality or drawn[t] for t in range(n_tasks)]
    return [None] + [NoiseSpec(config.noise, chosen[t], float(config.ratio), seed=config.seed * 1000 + t)
                     for t in range(1, n_tasks)]


def load_stream(config: ContinualConfig, progress: bool = True, rebuild_cache: bool = False):
    """(train, test, train task indices, test task indices); an error naming the tasks that have no frames."""
    root = Path(config.data)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such MM-Fi root; write a synthetic one with every {config.protocol} "
                                f"action: `poise simulate --preset continual --out {root}`")
    kw = dict(protocol=config.protocol, split=config.split, modalities=config.modalities,
              lidar_points=config.lidar_points, mmwave_points=config.mmwave_points, seed=config.seed,
              on_error=config.on_error, progress=progress)
    train = MMFiDataset(root, part="train", frame_stride=config.train_stride, rebuild_cache=rebuild_cache, **kw)
    test = MMFiDataset(root, part="test", **kw)
    n = config.tasks or len(task_stream.tasks(config.protocol))
    train_tasks = task_stream.task_indices(train, config.protocol)[:n]
    test_tasks = task_stream.task_indices(test, config.protocol)[:n]
    stream = task_stream.tasks(config.protocol)
    empty = [f"task {t} ({', '.join(stream[t])}): {len(a)} train / {len(b)} test frames"
             for t, (a, b) in enumerate(zip(train_tasks, test_tasks)) if not len(a) or not len(b)]
    if empty:
        raise PoiseError(f"{root}: split {config.split} of {config.protocol} leaves tasks without frames ("
                         + "; ".join(empty) + f"); a continual stream needs every action of {config.protocol} for "
                         f"training and test subjects: `poise simulate --preset continual --out DIR`")
    return train, test, train_tasks, test_tasks



def phase_config(config: ContinualConfig) -> TrainConfig:
    """The Setting-1 configuration of one task's phase: the stream's loop keys (model, optimiser, batches, the
    balancing method; a fresh optimiser per task), nothing held out."""
    return TrainConfig(**{k: copy.deepcopy(getattr(config, k)) for k in TRAIN_KEYS})


def build(config: ContinualConfig, run_dir: Path, progress: bool = True, rebuild_cache: bool = False) -> ContinualRun:
    memory.check_fits(config, resolve_device(config.device))  # before any data is read (a floor: a peer adds more)
    train, test, train_tasks, test_tasks = load_stream(config, progress, rebuild_cache)
    train_tasks[0], held = holdout_rows(train, config.reference_holdout, config.seed, train_tasks[0],
                                                 key="reference_holdout")
    reference_rows = np.sort(np.random.default_rng([config.seed, 8]).permutation(held)[: config.assess_frames])
    views = [None if spec is None else NoisyView(spec, rows, train)
             for spec, rows in zip(noise_plan(config, len(train_tasks)), train_tasks)]
    kw = dict(fusion=config.fusion, dim=config.dim, encoder=config.encoder)
    torch.manual_seed(config.seed)
    model = build_model(config.modalities, **kw)
    model.set_mean_pose(torch.cat([b["gt"] for b in train.loader(batch_size=2048)]).mean(0))
    device = resolve_device(config.device)
    configure(device, config.deterministic)
    model.to(device)

    def make_peer():  # a second network from another initialisation
        torch.manual_seed(config.seed + 10_000)
        peer = build_model(config.modalities, **kw)
        peer.set_mean_pose(model.mean_pose.cpu())
        return peer.to(device)

    return ContinualRun(config, run_dir, model, train, test, train_tasks, reference_rows, test_tasks, views, device,
                        strategies.across_tasks(config, make_peer, reference_rows))


# ----------------------------------------------------------------------------------------------------------------
# one task


def assessment(run: ContinualRun, t: int, data: TaskData, rows: np.ndarray) -> dict:
    """The fixed frames of task ``t`` (among ``rows``) its contribution scores are computed on, as seen."""
    pick = np.random.default_rng([run.config.seed, t, 7]).permutation(len(rows))[: run.config.assess_frames]
    return to_device(data.batch(np.sort(rows[pick])), run.device)


def task_phase(run: ContinualRun, t: int, progress: bool) -> Run:
    """Task ``t``'s phase of the loop, its method's ``on_task_start`` done and set up (not yet trained)."""
    data = TaskData(run.train, run.views[t])
    # The assessment frames' point draws: those of the stream's last training epoch, which an uninterrupted
    # run has left set; set here so that a resumed run draws the same (and so the bench's numbers stand).
    data.set_epoch(TASK_EPOCHS * (t - 1) + run.config.epochs - 1 if t else 0)
    rows = run.train_tasks[t]
    method = strategies.task_method(run.config, run.strategies)
    phase = Run(phase_config(run.config), None, run.model, method, data, run.test, rows, rows[:0],
                     assessment(run, t, data, rows), device=run.device, test_rows=np.zeros(0, np.int64), task=t,
                     epoch_offset=TASK_EPOCHS * t, label=f"task {t} ", progress=progress)
    for probe in method.probes(phase):  # NIS's fit: phases the loop runs on the method's request
        loop.run_probe(phase, probe)
    method.on_task_start(phase)
    if len(phase.train_rows) < run.config.batch_size:
        raise PoiseError(f"task {t}: {len(phase.train_rows)} of {len(rows)} frames are left to train on, fewer "
                         f"than one batch of {run.config.batch_size}; the clean/noisy split failed (see "
                         f"losses-task{t}.npz), or use a smaller batch_size")
    if len(phase.train_rows) != len(rows):
        phase.assess = assessment(run, t, data, phase.train_rows)  # what the task trains on
    loop.prepare(phase)
    return phase


def noise_record(view: NoisyView) -> dict:
    """What a task's corruption was; for unaligned kinds, the median distance of the sources' poses from the
    true ones (how wrong the corrupted samples' modality is, in pose terms)."""
    record = {"kind": view.spec.kind, "modality": view.spec.modality, "ratio": view.spec.ratio,
              "corrupted": int(view.corrupted.sum())}
    for key, values in view.source_distances().items():
        record[f"source_{key}"] = float(np.median(values))
    return record


def evaluate_tasks(run: ContinualRun, model: torch.nn.Module, t: int) -> list:
    """[(MPJPE, PA-MPJPE) in mm] on the test frames of tasks 0..t (the ones seen so far: 001 Eq. 13 and Fig. 5
    use no more)."""
    row = []
    for rows in run.test_tasks[: t + 1]:
        metrics = evaluate(model, run.test, rows)
        row.append((metrics["test_mpjpe_mm"], metrics["test_pa_mpjpe_mm"]))
    return row


def learn_task(run: ContinualRun, t: int, progress: bool = True) -> dict:
    """Algorithm 2's body for task ``t``; returns its record."""
    start = time.perf_counter()
    view = run.views[t]
    phase = task_phase(run, t, progress)
    loop.fit(phase, progress)
    phase.method.on_task_end(phase)
    run.matrix.append(evaluate_tasks(run, tested_model(phase), t))
    record = {"task": t, "actions": list(task_stream.tasks(run.config.protocol)[t]),
              "train_frames": int(len(run.train_tasks[t])), "test_frames": int(len(run.test_tasks[t])),
              "noise": None if view is None else noise_record(view), **phase.record, "trained_frames": int(len(phase.train_rows)),
              "train_mpjpe_mm": [h["train_mpjpe_mm"] for h in phase.history], "scores": phase.scores(),
              "epochs": phase.history}
    results.score_splits(run.views[t], record, run.dir / f"losses-task{t}.npz")
    record["seconds"] = time.perf_counter() - start
    run.last = phase
    return record


# ----------------------------------------------------------------------------------------------------------------
# results, checkpoint, the stream


def summary(run: ContinualRun) -> dict:
    """avg-MPJPE per task (001 Eq. 13), the matrix, forgetting, and the quality of any clean/noisy split."""
    return results.summary(run.matrix, run.records)


def save(run: ContinualRun) -> None:
    """The checkpoint (the Setting-1 format, with the stream's state) and the JSON results after a task."""
    state = {"task": run.task, "matrix": run.matrix, "records": json.dumps(run.records, default=_json),
             "strategies": {p.name: p.state_dict() for p in run.strategies}}
    write_results(run)  # before the checkpoint: a kill between the two relearns the task and rewrites them
    save_checkpoint(run.last, run.dir / CHECKPOINT, stream=state)


def write_results(run: ContinualRun) -> None:
    """tasks.json, results.json and noise.json of the tasks learnt so far, each written atomically."""
    write_atomic(run.dir / "tasks.json", json.dumps(run.records, indent=1, default=_json))
    write_atomic(run.dir / "results.json", json.dumps(summary(run), indent=1, default=_json))
    write_atomic(run.dir / "noise.json", json.dumps([None if v is None else v.record() for v in run.views],
                                                    default=_json))


def _json(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")



def restore(run: ContinualRun) -> None:
    """The stream's state after its last finished task (set up, then restore: the strategies exist)."""
    state = read_checkpoint(run.dir / CHECKPOINT, (*MODEL_KEYS, "stream"), "start the run again")
    stream = state["stream"]
    restore_parts(state, run.model, {k: m for p in run.strategies for k, m in p.modules().items()}, run.device)
    for part in run.strategies:
        part.load_state_dict(stream["strategies"][part.name])
    run.task, run.matrix, run.records = stream["task"], stream["matrix"], json.loads(stream["records"])


def stream(run: ContinualRun, progress: bool = True) -> ContinualRun:
    """Learn the remaining tasks, checkpointing after each."""
    n = len(run.train_tasks)
    while run.task < n:
        record = learn_task(run, run.task, progress)
        run.records.append(record)
        run.task += 1
        save(run)
        if progress:
            logger.info(results.task_line(run.task, n, summary(run), record))
    return run


def run_continual(config: ContinualConfig, progress: bool = True, overwrite: bool = False,
                  rebuild_cache: bool = False) -> ContinualRun:
    """A new continual run in ``config.out / config.run_name``."""
    run_dir = Path(config.out) / config.run_name
    if (run_dir / CHECKPOINT).exists() and not overwrite:
        raise FileExistsError(f"{run_dir} already holds a continual run; continue it with --resume {run_dir}, or "
                              f"choose another --name (or --overwrite)")
    with run_lock(run_dir):
        run = build(config, run_dir, progress, rebuild_cache)  # a start that fails here leaves no run folder behind
        clear_run(run_dir, STREAM_FILES)  # --overwrite: the old stream's state goes before the new config comes
        config.save(run_dir / "config.yaml")
        write_environment(run)
        return stream(run, progress)


def resume(run_dir, progress: bool = True, tasks: int | None = None, rebuild_cache: bool = False) -> ContinualRun:
    """Continue the continual run in ``run_dir`` after its last finished task (optionally to more ``tasks``)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / CHECKPOINT).is_file():
        raise PoiseError(f"{run_dir} is not a continual run directory with a checkpoint (config.yaml and "
                         f"{CHECKPOINT}); start it with `poise continual`")
    config = ContinualConfig.load(run_dir / "config.yaml", tasks=tasks)
    with run_lock(run_dir):
        run = build(config, run_dir, progress, rebuild_cache)
        restore(run)
        if tasks is not None:
            config.save(run_dir / "config.yaml")
        write_environment(run, resumed=True)
        if run.task >= len(run.train_tasks):
            write_results(run)  # nothing left to learn: the files say what the checkpoint holds
        return stream(run, progress)
