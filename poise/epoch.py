"""One epoch of the training loop and what is measured after it.

For each shuffled batch (``epoch_order``), ``encode`` once, ``decode`` with every modality (or the method's
``predict``), the objective w * loss (the run's ``objective``: MPJPE for poses, paper 001 Eq. 10; w = the
method's ``pose_loss_weight``, 1 for most) +
the method's ``extra_loss``, backward, the gradient all-reduce under torchrun, the method's ``after_backward``,
an optimiser step (the forward pass under ``precision``'s autocast; nothing in a step reads a value back from
the device): ``train_epoch``. After it, on the epochs ``evaluates`` picks, validation and test metrics
(``epoch_evaluation``) and the assessment (``assess``: Shapley-Pearson contributions and unimodal spreads),
and each encoder's drift (``encoder_drift``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from poise import distributed, optim, precision
from poise.contrib.shapley import modality_contributions
from poise.runtime import batches, evaluate, prefetched
from poise.errors import TrainingDiverged

if TYPE_CHECKING:
    from poise.run import Run


@dataclass
class Step:
    """What a method's per-step hooks see."""

    batch: dict
    features: dict
    pred: torch.Tensor
    loss: torch.Tensor


ASSESS_CHUNK = 128  # frames per encoder pass of the assessment (a pass over 512 costs 1.6x more per frame)


@torch.no_grad()
def assess(run: Run) -> tuple[dict, dict]:
    """Shapley-Pearson scores and the std (mm for poses: the objective's unit) of each modality's unimodal output,
    on the fixed slice (use ``run.assessment()``, which computes this once per epoch)."""
    run.model.eval()
    n = len(run.assess["gt"])
    chunks = [run.model.encode({k: v[i:i + ASSESS_CHUNK] for k, v in run.assess.items()})
              for i in range(0, n, ASSESS_CHUNK)]
    features = {m: torch.cat([c[m] for c in chunks]) for m in run.model.modalities}
    contrib = modality_contributions(run.model, features, run.assess["gt"])
    scale = run.objective.scale
    spread = {m: float(run.model.decode(features, (m,)).std(0).mean() * scale) for m in run.model.modalities}
    spread["gt"] = float(run.assess["gt"].std(0).mean() * scale)
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
    """One epoch; returns the mean training loss (times the objective's ``loss_scale``: MPJPE in mm). Each batch
    carries ``"sample"``: the positions of its frames in the epoch's sample list, so a method can treat its own
    duplicates differently.

    No step waits for the device: the loss is summed where it is computed and read once, at the end of the
    epoch (which is also where a diverged loss is caught), and on a GPU the next batch is built and copied from
    pinned memory while the current one trains (``runtime.prefetched``)."""
    model, config = run.model, run.config
    model.train()
    if hasattr(run.train, "set_epoch"):  # a dataset that draws something per epoch (MM-Fi's point samples)
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
            loss = run.objective.loss(pred, batch["gt"])
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
        raise TrainingDiverged(f"training diverged: the loss is {total} in epoch {run.epoch + 1}, with learning "
                               f"rate {optim.base_lr(run.optimizer):g} ({optim.resolve(config, run.method)['optimizer']}"
                               f"); lower the config key 'lr'", epoch=run.epoch + 1, loss=total)
    return total / max(count, 1) * run.objective.loss_scale


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
    metrics = evaluate(model, run.train, run.val_rows, prefix="val", objective=run.objective) \
        if len(run.val_rows) else {}
    if run.test_rows is not None:
        rows = run.test_rows
    else:
        rows = np.arange(0, len(run.test), 1 if run.last_epoch else run.config.eval_stride)
    if not len(rows):
        return metrics
    return {**metrics, **evaluate(model, run.test, rows, objective=run.objective), "test_frames": len(rows)}
