"""The training loop: data -> model -> method hooks -> metrics, contributions and a run directory.

One epoch: for each shuffled batch, ``encode`` once, ``decode`` with every modality (or the method's
``predict``), the MPJPE loss (paper 001, Eq. 10) plus the method's ``extra_loss``, backward, the method's ``after_backward``, an Adam step. After
the epoch: test MPJPE / PA-MPJPE, the Shapley-Pearson contribution of each modality on a fixed slice of the
training frames (one encoder pass, 2^M decodes), the std of each modality's unimodal output (a collapsed
modality predicts nearly the same pose for every frame; ``gt_std_mm`` is the ground truth's on the same
frames), then the method's ``on_epoch_end`` and a checkpoint.

The run directory holds ``config.yaml``, ``metrics.csv`` / ``metrics.json`` (one row per epoch),
``contributions.csv``, ``checkpoint.pt`` (written to a temporary file and renamed) and ``curves.png`` /
``contributions.png``. ``resume(run_dir)`` continues from the last checkpoint and, on CPU with the same seed,
ends with the same numbers as an uninterrupted run: the data order depends only on (seed, epoch), and the
checkpoint holds the optimiser, scheduler, method and RNG states.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from poise import distributed, methods
from poise.config import TrainConfig
from poise.contrib.shapley import modality_contributions
from poise.data.dataset import MMFiDataset
from poise.metrics import M_TO_MM, mpjpe_loss, mpjpe_mm, pa_mpjpe_mm
from poise.models.pose import PoseModel, build_model

CHECKPOINT = "checkpoint.pt"


def resolve_device(name: str) -> torch.device:
    """The config's ``device`` ("auto": CUDA when available, else CPU); under torchrun, this rank's device."""
    ranked = distributed.device()
    if name == "auto":
        return ranked or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    wanted = torch.device(name)
    if wanted.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("config key 'device' is 'cuda' but torch sees no CUDA device; use device: cpu (or auto)")
    if ranked is not None and ranked.type != wanted.type:
        raise ValueError(f"config key 'device' is {name!r} but torchrun's processes use {ranked.type}; hide the "
                         f"GPUs (CUDA_VISIBLE_DEVICES=) to train on CPU, or use device: auto")
    return ranked or wanted


def to_device(batch: dict, device) -> dict:
    """``batch`` with every tensor on ``device`` (metadata lists unchanged)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


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
    dir: Path
    model: PoseModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    method: methods.Method
    train: MMFiDataset
    test: MMFiDataset
    assess: dict  # a fixed batch of training frames for the contribution assessment
    device: torch.device = torch.device("cpu")
    epoch: int = 0  # the epoch being trained (0-based); after the loop, the number of epochs done
    history: list = field(default_factory=list)  # one dict of metrics per finished epoch
    contributions: list = field(default_factory=list)  # one {modality: score} per finished epoch


def load_datasets(config: TrainConfig, progress: bool = True) -> tuple[MMFiDataset, MMFiDataset]:
    kw = dict(protocol=config.protocol, split=config.split, modalities=config.modalities,
              lidar_points=config.lidar_points, mmwave_points=config.mmwave_points, seed=config.seed,
              rgb_window=config.rgb_window,
              progress=progress)
    train = MMFiDataset(config.data, part="train", frame_stride=config.train_stride, **kw)
    test = MMFiDataset(config.data, part="test", **kw)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"{config.data}: split {config.split} of protocol {config.protocol} leaves {len(train)} "
                         f"training and {len(test)} test frames; use a root with more subjects or another split")
    return train, test


def build_run(config: TrainConfig, run_dir: Path, progress: bool = True) -> Run:
    method = methods.get(config.method, **config.method_params)  # fail on a bad name before loading data
    if config.batch_size % distributed.world():
        raise ValueError(f"batch_size={config.batch_size} does not split evenly over {distributed.world()} "
                         f"processes; under torchrun choose a batch_size divisible by --nproc_per_node")
    with distributed.main_first():  # rank 0 builds a missing cache; the others then open it
        train, test = load_datasets(config, progress and distributed.is_main())
    torch.manual_seed(config.seed)
    model = build_model(config.modalities, fusion=config.fusion, dim=config.dim, rgb_window=config.rgb_window,
                        encoder=config.encoder)
    model.set_mean_pose(torch.cat([b["gt"] for b in train.loader(batch_size=2048)]).mean(0))
    device = resolve_device(config.device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    rows = np.random.default_rng(config.seed).permutation(len(train))[: config.assess_frames]
    assess = to_device(train.batch(np.sort(rows)), device)  # the whole slice on every rank: identical scores
    return Run(config, run_dir, model, optimizer, scheduler, method, train, test, assess, device=device)


def evaluate(model: torch.nn.Module, data: MMFiDataset, batch_size: int = 256) -> dict:
    """Test MPJPE and PA-MPJPE (mm) of ``model`` over every frame of ``data`` (under torchrun: each rank its
    share of the frames, the sums all-reduced)."""
    model.eval()
    device = next(model.parameters()).device
    rows = distributed.shard(np.arange(len(data)))
    sums = [0.0, 0.0, 0.0]  # MPJPE x frames, PA-MPJPE x frames, frames
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = to_device(data.batch(rows[start:start + batch_size]), device)
            pred, n = model(batch), len(batch["gt"])
            sums = [sums[0] + float(mpjpe_mm(pred, batch["gt"])) * n,
                    sums[1] + float(pa_mpjpe_mm(pred, batch["gt"])) * n, sums[2] + n]
    total, pa, n = distributed.all_sum(sums)
    return {"test_mpjpe_mm": total / n, "test_pa_mpjpe_mm": pa / n}


@torch.no_grad()
def assess(run: Run) -> tuple[dict, dict]:
    """Shapley-Pearson scores and the std (mm) of each modality's unimodal output, on the fixed slice."""
    run.model.eval()
    features = run.model.encode(run.assess)
    contrib = modality_contributions(run.model, features, run.assess["gt"])
    spread = {m: float(run.model.decode(features, (m,)).std(0).mean() * M_TO_MM) for m in run.model.modalities}
    spread["gt"] = float(run.assess["gt"].std(0).mean() * M_TO_MM)
    return contrib.scores, spread  # every rank scored the same slice with the same model: no all-reduce needed


def epoch_order(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """This epoch's sample list (the method's ``epoch_samples``, default every training frame once) and a
    shuffled order of positions in it; both depend only on (seed, epoch, method state), so a resumed run
    sees the same batches."""
    samples = run.method.epoch_samples(run)
    samples = np.arange(len(run.train)) if samples is None else np.asarray(samples, dtype=np.int64)
    order = np.random.default_rng([run.config.seed, run.epoch]).permutation(len(samples))
    return samples, order


def batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """``order`` in chunks of ``batch_size``; the last, smaller chunk is dropped unless it is the only one."""
    stop = len(order) - len(order) % batch_size if len(order) > batch_size else len(order)
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def train_epoch(run: Run, progress: bool = True) -> float:
    """One epoch; returns the mean training MPJPE (mm). Each batch carries ``"sample"``: the positions of its
    frames in the epoch's sample list, so a method can treat its own duplicates differently."""
    model, config = run.model, run.config
    model.train()
    run.train.set_epoch(run.epoch)
    samples, order = epoch_order(run)
    total, count = 0.0, 0
    bar = tqdm(batches(order, config.batch_size), desc=f"epoch {run.epoch + 1}/{config.epochs}", unit="batch",
               leave=False, disable=not (progress and distributed.is_main()))
    for positions in bar:
        positions = distributed.shard(positions)  # under torchrun, this rank's share of the global batch
        batch = to_device(run.train.batch(samples[positions]), run.device)
        batch["sample"] = torch.from_numpy(positions)  # stays on the CPU: methods index numpy arrays with it
        features = model.encode(batch)
        pred = run.method.predict(run, batch, features)
        pred = model.decode(features) if pred is None else pred
        loss = mpjpe_loss(pred, batch["gt"])
        step = Step(batch, features, pred, loss)
        extra = run.method.extra_loss(run, step)
        objective = loss if extra is None else loss + extra
        run.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        distributed.average_gradients(model)
        run.method.after_backward(run, step)
        run.optimizer.step()
        value = loss.item()
        total += value * len(pred)
        count += len(pred)
        bar.set_postfix(mpjpe_mm=f"{value * M_TO_MM:.1f}")
    run.scheduler.step()
    distributed.broadcast_buffers(model)
    total, count = distributed.all_sum([total, count])
    return total / max(count, 1) * M_TO_MM


def save_checkpoint(run: Run) -> None:
    state = {"epoch": run.epoch, "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
             "scheduler": run.scheduler.state_dict(), "method": run.method.state_dict(),
             "history": run.history, "contributions": run.contributions, "torch_rng": torch.get_rng_state()}
    if run.device.type == "cuda":  # the GPU generator too, or a resumed CUDA run draws other noise
        state["cuda_rng"] = torch.cuda.get_rng_state(run.device)
    tmp = run.dir / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, run.dir / CHECKPOINT)


def load_checkpoint(run: Run) -> None:
    path = run.dir / CHECKPOINT
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as err:
        raise ValueError(f"{path}: cannot load the checkpoint ({err}); start a new run instead of --resume") from err
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.method.load_state_dict(state["method"])
    run.epoch, run.history, run.contributions = state["epoch"], state["history"], state["contributions"]
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and run.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], run.device)


def write_reports(run: Run) -> None:
    """metrics.csv/json, contributions.csv and the two plots, from the history so far."""
    if not run.history:
        return
    keys = list(run.history[0])
    with open(run.dir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(run.history)
    (run.dir / "metrics.json").write_text(json.dumps(run.history, indent=1))
    with open(run.dir / "contributions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["epoch", *run.model.modalities])
        writer.writeheader()
        for epoch, scores in enumerate(run.contributions, 1):
            writer.writerow({"epoch": epoch, **scores})
    from poise.plots import plot_contributions, plot_curves

    plot_curves(run.history, run.dir / "curves.png", title=run.config.run_name)
    plot_contributions(run.contributions, run.dir / "contributions.png", title=run.config.run_name)


def fit(run: Run, progress: bool = True) -> Run:
    """Train from ``run.epoch`` to the configured number of epochs, checkpointing after each."""
    run.method.setup(run)
    while run.epoch < run.config.epochs:
        start = time.perf_counter()
        run.method.on_epoch_start(run)
        lr = run.optimizer.param_groups[0]["lr"]
        train_mm = train_epoch(run, progress)
        metrics = evaluate(run.model, run.test)
        scores, spread = assess(run)
        run.contributions.append(scores)
        run.history.append({"epoch": run.epoch + 1, "lr": lr, "train_mpjpe_mm": train_mm, **metrics,
                            **{f"shapley_{m}": s for m, s in scores.items()},
                            **{f"unimodal_std_mm_{m}": spread[m] for m in scores}, "gt_std_mm": spread["gt"],
                            "seconds": time.perf_counter() - start})
        run.method.on_epoch_end(run)
        distributed.check_in_sync(run.model, *run.method.modules())
        run.epoch += 1
        if distributed.is_main():
            save_checkpoint(run)
            write_reports(run)
        if progress and distributed.is_main():
            h = run.history[-1]
            tqdm.write(f"epoch {run.epoch}/{run.config.epochs}: train {train_mm:.1f} mm, test MPJPE "
                       f"{h['test_mpjpe_mm']:.1f} / PA {h['test_pa_mpjpe_mm']:.1f} mm; Shapley "
                       + ", ".join(f"{m} {s:.2f}" for m, s in scores.items()))
    return run


def train(config: TrainConfig, progress: bool = True, overwrite: bool = False) -> Run:
    """A new run of ``config`` in ``config.out / config.run_name``."""
    run_dir = Path(config.out) / config.run_name
    if (run_dir / CHECKPOINT).exists() and not overwrite:
        raise FileExistsError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, or choose "
                              f"another --name (or --overwrite)")
    distributed.barrier()  # every rank has checked before rank 0 writes
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(run_dir / "config.yaml")
    run = build_run(config, run_dir, progress)
    if distributed.is_main():
        (run_dir / "method.json").write_text(json.dumps({"name": config.method, "params": run.method.params()},
                                                        indent=1))
    return fit(run, progress)


def resume(run_dir, progress: bool = True, epochs: int | None = None) -> Run:
    """Continue the run in ``run_dir`` from its last checkpoint (optionally to more ``epochs``)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / CHECKPOINT).is_file():
        raise ValueError(f"{run_dir} is not a run directory with a checkpoint (config.yaml and {CHECKPOINT}); "
                         f"start it with `poise train`")
    config = TrainConfig.load(run_dir / "config.yaml", epochs=epochs)
    run = build_run(config, run_dir, progress)
    load_checkpoint(run)
    if epochs is not None and distributed.is_main():
        config.save(run_dir / "config.yaml")
    return fit(run, progress)


def load_run(run_dir, progress: bool = False) -> Run:
    """A finished (or interrupted) run, rebuilt from its config and last checkpoint, for analysis."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / CHECKPOINT).is_file():
        raise ValueError(f"{run_dir} is not a run directory with a checkpoint (config.yaml and {CHECKPOINT}); "
                         f"train one with `poise train`")
    run = build_run(TrainConfig.load(run_dir / "config.yaml"), run_dir, progress)
    load_checkpoint(run)
    return run
