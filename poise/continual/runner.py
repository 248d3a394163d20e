"""``poise continual``: paper 001's Algorithm 2 on a task stream with one noisy modality per later task.

For each task t of the protocol's stream (``poise.continual.tasks``), on the cross-subject split:

- **task 0** (clean): train ``epochs`` epochs (with re-learning for ``ours``, 001 Algorithm 1), then the
  generic Fisher (Eq. 7) for the EWC methods.
- **task t > 0** (one modality corrupted in ``ratio`` of the samples, ``poise.continual.noise``):
  - ``ours``, NIS (001 Sec. 3.3): fit ``gamma`` epochs on the whole task with the superior encoders frozen
    (gradient-stop; superior/inferior by K-Means on the scores at the end of task t-1), name the noisy
    modality as the one whose Shapley-Pearson score dropped most (``naming``: absolute or relative drop) from
    the end of task t-1 to after the fit
    (``nis.name_noisy_modality``), fit a 2-component GMM to the per-sample losses and keep the clean set
    (Eq. 5-6). The fit is a probe: the model goes back to its state before it, then trains on the clean set.
  - training: ``epochs`` epochs on the kept samples (all of them for naive, ewc, or ours without NIS) with
    loss MPJPE + lambda * EWC penalty (Eq. 11-12) against the Fisher and parameters of task t-1; for ours,
    re-learning (Eq. 4) after ``relearn_epoch``, towards the parameters the task started from (for task 0,
    the random initialisation; towards the initialisation in a later task would erase the earlier tasks,
    which EWC is there to protect).
  - Fisher for the next task: ``ours`` the adaptive Fisher (Eq. 8-9, beta on the named noisy branch) on the
    clean set, ``ewc`` (and ours without adaptive EWC) the generic Fisher on the task's (kept) samples.
- baselines: ``naive`` (fine-tuning on every sample), ``ewc`` (generic Fisher on every sample), and
  ``coteaching`` / ``dividemix`` with EWC on each of their two networks (``poise.continual.peers``).
- after task t, the MPJPE / PA-MPJPE on the test frames of tasks 0..t (the lower triangle of the task x task
  matrix: its last row is 001 Fig. 5a, its diagonal Fig. 5b).

Results (``results.json``): avg-MPJPE / avg-PA-MPJPE after each task (001 Eq. 13: the mean over the tasks
seen so far), the matrix, forgetting per task (MPJPE after the last task minus right after learning it;
positive = forgot), and for ours the NIS record per task: the named and the true noisy modality and the
clean/noisy split's precision and recall against the corrupted samples. One shared head, no task labels.

A fresh Adam is built at the start of each task (no state carries over from the previous task's data). A
checkpoint is written after every task, and ``resume`` continues from the last finished task; every random
draw is keyed by (seed, task, phase, epoch), so a resumed run ends with the same numbers as an uninterrupted
one on CPU.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from poise.continual import ewc, nis, peers, tasks as task_stream
from poise.continual.config import ContinualConfig
from poise.continual.noise import NoiseSpec, NoisyView
from poise.contrib.shapley import modality_contributions
from poise.data.dataset import MMFiDataset
from poise.methods.groups import split_groups
from poise.metrics import M_TO_MM, mpjpe_loss
from poise.models.pose import build_model
from poise.runtime import batches, evaluate, read_checkpoint, resolve_device, run_lock, to_device
from poise.errors import PoiseError

CHECKPOINT = "checkpoint.pt"
EVAL_BATCH = 256


@dataclass
class ContinualRun:
    """Everything the task loop shares."""

    config: ContinualConfig
    dir: Path
    model: torch.nn.Module
    train: MMFiDataset
    test: MMFiDataset
    train_tasks: list  # dataset indices of each task's training frames
    test_tasks: list  # and of its test frames
    views: list  # per task: a NoisyView, or None for a clean task
    device: torch.device
    task: int = 0  # tasks finished
    fisher: ewc.Fisher | None = None  # of the last finished task
    anchor: dict | None = None  # theta* at the end of the last finished task
    scores: dict | None = None  # Shapley-Pearson scores at the end of the last finished task
    matrix: list = field(default_factory=list)  # row i: [(mpjpe, pa) on the test set of each task] after task i
    records: list = field(default_factory=list)  # one dict per finished task (NIS, Fisher, timing)
    peer: torch.nn.Module | None = None  # Co-teaching's / DivideMix's second network
    peer_fisher: ewc.Fisher | None = None
    peer_anchor: dict | None = None

    @property
    def eval_model(self) -> torch.nn.Module:
        """What is tested: the model, or for DivideMix the mean of both networks."""
        return peers.Ensemble(self.model, self.peer) if self.config.method == "dividemix" else self.model


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


def build(config: ContinualConfig, run_dir: Path, progress: bool = True, rebuild_cache: bool = False) -> ContinualRun:
    train, test, train_tasks, test_tasks = load_stream(config, progress, rebuild_cache)
    views = [None if spec is None else NoisyView(spec, rows, train)
             for spec, rows in zip(noise_plan(config, len(train_tasks)), train_tasks)]
    torch.manual_seed(config.seed)
    model = build_model(config.modalities, fusion=config.fusion, dim=config.dim, encoder=config.encoder)
    model.set_mean_pose(torch.cat([b["gt"] for b in train.loader(batch_size=2048)]).mean(0))
    device = resolve_device(config.device)
    model.to(device)
    run = ContinualRun(config, run_dir, model, train, test, train_tasks, test_tasks, views, device)
    if config.method in peers.PEER_METHODS:  # a second network from another initialisation
        torch.manual_seed(config.seed + 10_000)
        run.peer = build_model(config.modalities, fusion=config.fusion, dim=config.dim, encoder=config.encoder)
        run.peer.set_mean_pose(model.mean_pose.cpu())
        run.peer.to(device)
    return run


# ----------------------------------------------------------------------------------------------------------------
# the pieces of one task


def task_batch(run: ContinualRun, t: int, rows) -> dict:
    """Training frames ``rows`` of task ``t``, with the task's corruption applied, on the run's device."""
    batch = run.train.batch(np.asarray(rows, dtype=np.int64))
    if run.views[t] is not None:
        batch = run.views[t].corrupt(batch)
    return to_device(batch, run.device)


def task_batches(run: ContinualRun, t: int, rows, size: int = EVAL_BATCH):
    for start in range(0, len(rows), size):
        yield task_batch(run, t, rows[start:start + size])


def fit(run: ContinualRun, t: int, rows: np.ndarray, epochs: int, phase: int, penalty=None, on_epoch_end=None,
        progress: bool = True, desc: str = "") -> list:
    """``epochs`` epochs of Adam on task ``t``'s ``rows`` (MPJPE + ``penalty()``); the mean training MPJPE (mm)
    of each epoch. The order of each epoch depends only on (seed, task, phase, epoch)."""
    config, model = run.config, run.model
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    means = []
    for epoch in range(epochs):
        model.train()
        run.train.set_epoch(1000 * t + 100 * phase + epoch)
        order = rows[np.random.default_rng([config.seed, t, phase, epoch]).permutation(len(rows))]
        total, count = 0.0, 0
        chunks = batches(order, config.batch_size)
        for chunk in tqdm(chunks, desc=desc or f"task {t} epoch {epoch + 1}/{epochs}", unit="batch", leave=False,
                          disable=not progress):
            batch = task_batch(run, t, np.sort(chunk))
            loss = mpjpe_loss(model(batch), batch["gt"])
            objective = loss if penalty is None else loss + penalty()
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            total, count = total + loss.item() * len(chunk), count + len(chunk)
        means.append(total / max(count, 1) * M_TO_MM)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    return means


def fit_peers(run: ContinualRun, t: int, rows: np.ndarray, epochs: int, penalties, progress: bool = True,
              record: dict | None = None) -> list:
    """Co-teaching or DivideMix (``poise.continual.peers``) for ``epochs`` epochs on task ``t``; both networks
    step on every batch. ``penalties``: (EWC term of the model, of the peer), or None. Returns the model's
    mean training MPJPE (mm) per epoch; DivideMix's last co-divide is scored into ``record``."""
    config, a, b = run.config, run.model, run.peer
    opt_a = torch.optim.Adam(a.parameters(), lr=config.lr)
    opt_b = torch.optim.Adam(b.parameters(), lr=config.lr)
    noisy = t > 0 and run.views[t] is not None
    rates = peers.forget_rates(config.ratio, epochs) if noisy else np.zeros(epochs)
    means = []
    for epoch in range(epochs):
        division = None
        if config.method == "dividemix" and noisy:  # co-divide: each network splits the task for its peer
            clean_a, prob_a = nis.gmm_clean_mask(nis.per_sample_losses(a, task_batches(run, t, rows)), seed=config.seed)
            clean_b, prob_b = nis.gmm_clean_mask(nis.per_sample_losses(b, task_batches(run, t, rows)), seed=config.seed)
            division = (clean_a, prob_a, clean_b, prob_b)
            if record is not None:
                record["division"] = nis.split_quality(clean_a, run.views[t].is_corrupted(rows))
        a.train()
        b.train()
        run.train.set_epoch(1000 * t + epoch)
        order = rows[np.random.default_rng([config.seed, t, 0, epoch]).permutation(len(rows))]
        total, count = 0.0, 0
        for chunk in tqdm(batches(order, config.batch_size), desc=f"task {t} epoch {epoch + 1}/{epochs}",
                          unit="batch", leave=False, disable=not progress):
            chunk = np.sort(chunk)
            batch = task_batch(run, t, chunk)
            gt = batch["gt"]
            pa, pb = a(batch), b(batch)
            la, lb = nis.sample_mpjpe(pa, gt), nis.sample_mpjpe(pb, gt)
            if config.method == "coteaching":
                loss_a, loss_b, _ = peers.coteaching_losses(la, lb, float(rates[epoch]))
            elif division is not None:
                pos = np.searchsorted(rows, chunk)
                clean_a, prob_a, clean_b, prob_b = (torch.as_tensor(x[pos], device=gt.device) for x in division)
                loss_a = _divided_loss(pa, peers.dividemix_targets(gt, pa.detach(), pb.detach(), prob_b, clean_b),
                                       clean_b, config.lambda_u)
                loss_b = _divided_loss(pb, peers.dividemix_targets(gt, pb.detach(), pa.detach(), prob_a, clean_a),
                                       clean_a, config.lambda_u)
            else:
                loss_a, loss_b = la.mean(), lb.mean()
            objective = loss_a + loss_b
            if penalties is not None:
                objective = objective + penalties[0]() + penalties[1]()
            opt_a.zero_grad(set_to_none=True)
            opt_b.zero_grad(set_to_none=True)
            objective.backward()
            opt_a.step()
            opt_b.step()
            total, count = total + la.mean().item() * len(chunk), count + len(chunk)
        means.append(total / max(count, 1) * M_TO_MM)
    return means


def _divided_loss(pred, target, labelled, lambda_u: float) -> torch.Tensor:
    """Mean per-sample MPJPE to the DivideMix targets, unlabelled samples weighted by ``lambda_u``."""
    weights = torch.where(labelled, torch.ones_like(labelled, dtype=pred.dtype),
                          torch.full_like(labelled, lambda_u, dtype=pred.dtype))
    return (weights * nis.sample_mpjpe(pred, target)).mean()


def assess_rows(run: ContinualRun, t: int, rows: np.ndarray) -> np.ndarray:
    """The fixed frames of task ``t`` (among ``rows``) that its contribution scores are computed on."""
    pick = np.random.default_rng([run.config.seed, t, 7]).permutation(len(rows))[: run.config.assess_frames]
    return np.sort(rows[pick])


@torch.no_grad()
def scores_on(run: ContinualRun, t: int, rows: np.ndarray) -> dict:
    """Shapley-Pearson score of each modality (001 Eq. 1-3) on task ``t``'s ``rows`` as the model sees them."""
    run.model.eval()
    batch = task_batch(run, t, rows)
    return modality_contributions(run.model, run.model.encode(batch), batch["gt"]).scores


@torch.no_grad()
def relearn(model, initial: dict, superior, alpha_s: float, alpha_i: float) -> None:
    """001 Eq. 4 on every encoder: theta <- alpha * theta_0 + (1 - alpha) * theta, alpha by group."""
    for m, encoder in model.encoders.items():
        alpha = alpha_s if m in superior else alpha_i
        for name, p in encoder.named_parameters():
            p.mul_(1 - alpha).add_(initial[f"encoders.{m}.{name}"].to(p), alpha=alpha)


def fisher_rows(run: ContinualRun, t: int, rows: np.ndarray) -> np.ndarray:
    pick = np.random.default_rng([run.config.seed, t, 9]).permutation(len(rows))[: run.config.fisher_frames]
    return np.sort(rows[pick])


def nis_probe(run: ContinualRun, t: int, rows: np.ndarray, gradient_stop: bool, progress: bool) -> dict:
    """Fit ``gamma`` epochs on task ``t`` (with or without gradient-stop), score, split by GMM; then put the
    model back. Returns the named modality, the split and its per-sample losses."""
    config, model = run.config, run.model
    state = copy.deepcopy(model.state_dict())
    superior, _ = split_groups(run.scores)
    frozen = superior if gradient_stop else []
    with nis.gradient_stop(model, frozen):
        fit(run, t, rows, config.gamma, phase=1 if gradient_stop else 2, progress=progress,
            desc=f"task {t} NIS fit{' (gradient-stop)' if gradient_stop else ''}")
    after = scores_on(run, t, assess_rows(run, t, rows))
    named = nis.name_noisy_modality(run.scores, after, mode=config.naming)
    losses = nis.per_sample_losses(model, task_batches(run, t, rows))
    clean, posterior = nis.gmm_clean_mask(losses, seed=config.seed)
    model.load_state_dict(state)
    view = run.views[t]
    out = {"named": named, "frozen": list(frozen), "scores_before": run.scores, "scores_after": after,
           "clean": clean, "losses_mm": losses * M_TO_MM}
    if view is not None:
        corrupted = view.is_corrupted(rows)
        out["quality"] = nis.split_quality(clean, corrupted)
        out["corrupted"] = corrupted
    return out


def evaluate_tasks(run: ContinualRun, t: int) -> list:
    """[(MPJPE, PA-MPJPE) in mm] on the test frames of tasks 0..t (the ones seen so far: 001 Eq. 13 and Fig. 5
    use no more)."""
    row = []
    for rows in run.test_tasks[: t + 1]:
        metrics = evaluate(run.eval_model, _Subset(run.test, rows), batch_size=EVAL_BATCH)
        row.append((metrics["test_mpjpe_mm"], metrics["test_pa_mpjpe_mm"]))
    return row


class _Subset:
    """``data`` restricted to ``rows``, with the ``batch`` / ``len`` that ``train.evaluate`` uses."""

    def __init__(self, data, rows):
        self.data, self.rows = data, np.asarray(rows, dtype=np.int64)

    def __len__(self):
        return len(self.rows)

    def batch(self, positions):
        return self.data.batch(self.rows[np.asarray(positions)])


# ----------------------------------------------------------------------------------------------------------------
# one task, the stream, results


def learn_task(run: ContinualRun, t: int, progress: bool = True) -> dict:
    """Algorithm 2's body for task ``t``; returns its record."""
    config, model = run.config, run.model
    start = time.perf_counter()
    rows = run.train_tasks[t]
    view = run.views[t]
    record = {"task": t, "actions": list(task_stream.tasks(config.protocol)[t]), "train_frames": int(len(rows)),
              "test_frames": int(len(run.test_tasks[t])),
              "noise": None if view is None else {"kind": view.spec.kind, "modality": view.spec.modality,
                                                  "ratio": view.spec.ratio,
                                                  "corrupted": int(view.corrupted.sum())}}
    keep = rows
    if t > 0 and config.uses("nis"):
        probe = nis_probe(run, t, rows, gradient_stop=True, progress=progress)
        keep = rows[probe["clean"]]
        record["nis"] = {k: probe[k] for k in ("named", "frozen", "scores_before", "scores_after")}
        record["nis"]["quality"] = probe.get("quality")
        record["nis"]["kept"] = int(len(keep))
        losses = {"gradient_stop": probe["losses_mm"], "corrupted": probe.get("corrupted", np.zeros(len(rows), bool))}
        if config.compare_gradient_stop:
            plain = nis_probe(run, t, rows, gradient_stop=False, progress=progress)
            record["nis"]["without_gradient_stop"] = {"named": plain["named"], "quality": plain.get("quality")}
            losses["plain"] = plain["losses_mm"]
        np.savez_compressed(run.dir / f"losses-task{t}.npz", **losses)
    if len(keep) < config.batch_size:
        raise RuntimeError(f"task {t}: NIS kept {len(keep)} of {len(rows)} frames, fewer than one batch of "
                           f"{config.batch_size}; the split failed (see losses-task{t}.npz)")
    initial = ewc.anchor_of(model)  # the parameters this task starts from (re-learning's theta_0)
    penalty = None
    if t > 0 and config.uses_ewc and config.lam > 0:
        fisher, anchor = run.fisher, run.anchor
        penalty = lambda: config.lam * ewc.ewc_penalty(model, fisher, anchor)  # noqa: E731 (001 Eq. 12)

    def maybe_relearn(epoch: int) -> None:
        if config.uses("relearn") and epoch + 1 == config.relearn_epoch:
            scores = scores_on(run, t, assess_rows(run, t, keep))
            superior, inferior = split_groups(scores)
            relearn(model, initial, superior, config.alpha_s, config.alpha_i)
            record["relearn"] = {"scores": scores, "superior": superior, "inferior": inferior}

    if run.peer is not None:
        penalties = None
        if penalty is not None:
            peer_fisher, peer_anchor = run.peer_fisher, run.peer_anchor
            penalties = (penalty, lambda: config.lam * ewc.ewc_penalty(run.peer, peer_fisher, peer_anchor))
        record["train_mpjpe_mm"] = fit_peers(run, t, keep, config.epochs, penalties, progress, record)
    else:
        record["train_mpjpe_mm"] = fit(run, t, keep, config.epochs, phase=0, penalty=penalty,
                                       on_epoch_end=maybe_relearn, progress=progress)
    run.scores = scores_on(run, t, assess_rows(run, t, keep))
    record["scores"] = run.scores
    if config.uses_ewc:
        frames = fisher_rows(run, t, keep)
        per_sample = config.fisher == "per_sample"
        if t == 0 or not config.uses("adaptive_ewc"):
            run.fisher = ewc.fisher_generic(model, task_batches(run, t, frames, config.batch_size), per_sample)
        else:
            named = record["nis"]["named"] if "nis" in record else _name_without_probe(run, record)
            run.fisher = ewc.fisher_adaptive(model, task_batches(run, t, frames, config.batch_size), run.fisher,
                                             config.beta, ewc.branch_names(model, named), per_sample)
        run.anchor = ewc.anchor_of(model)
        record["fisher"] = run.fisher.describe()
        if run.peer is not None:
            run.peer_fisher = ewc.fisher_generic(run.peer, task_batches(run, t, frames, config.batch_size), per_sample)
            run.peer_anchor = ewc.anchor_of(run.peer)
    run.matrix.append(evaluate_tasks(run, t))
    record["seconds"] = time.perf_counter() - start
    return record


def _name_without_probe(run: ContinualRun, record: dict) -> str:
    """Without NIS (ablation), the noisy branch for adaptive EWC is named from the score drop between the end
    of the previous task and the end of this one."""
    named = nis.name_noisy_modality(run.records[-1]["scores"], run.scores, mode=run.config.naming)
    record["named_without_nis"] = named
    return named


def summary(run: ContinualRun) -> dict:
    """avg-MPJPE per task (001 Eq. 13), the matrix, forgetting, and NIS quality."""
    n = len(run.matrix)
    mpjpe = [[cell[0] for cell in row] for row in run.matrix]
    pa = [[cell[1] for cell in row] for row in run.matrix]
    avg = [float(np.mean(mpjpe[i][: i + 1])) for i in range(n)]
    avg_pa = [float(np.mean(pa[i][: i + 1])) for i in range(n)]
    forgetting = [mpjpe[n - 1][j] - mpjpe[j][j] for j in range(n - 1)]
    out = {"tasks_done": n, "avg_mpjpe_mm": avg, "avg_pa_mpjpe_mm": avg_pa, "mpjpe_matrix_mm": mpjpe,
           "pa_mpjpe_matrix_mm": pa, "forgetting_mm": forgetting,
           "mean_forgetting_mm": float(np.mean(forgetting)) if forgetting else float("nan")}
    named = [(r["nis"]["named"], r["noise"]["modality"]) for r in run.records if "nis" in r and r["noise"]]
    if named:
        out["nis_naming_accuracy"] = float(np.mean([a == b for a, b in named]))
        qualities = [r["nis"]["quality"] for r in run.records if r.get("nis", {}).get("quality")]
        for key in ("clean_precision", "clean_recall", "noisy_precision", "noisy_recall"):
            out[f"nis_{key}"] = float(np.nanmean([q[key] for q in qualities]))
    return out


def save(run: ContinualRun) -> None:
    """The checkpoint (atomically) and the JSON results after a finished task."""
    state = {"task": run.task, "model": run.model.state_dict(), "matrix": run.matrix, "records": json.dumps(run.records),
             "scores": run.scores, "anchor": run.anchor, "torch_rng": torch.get_rng_state(),
             "fisher": _fisher_state(run.fisher), "peer": None if run.peer is None else run.peer.state_dict(),
             "peer_fisher": _fisher_state(run.peer_fisher), "peer_anchor": run.peer_anchor}
    tmp = run.dir / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, run.dir / CHECKPOINT)
    (run.dir / "tasks.json").write_text(json.dumps(run.records, indent=1, default=_json))
    (run.dir / "results.json").write_text(json.dumps(summary(run), indent=1, default=_json))
    (run.dir / "noise.json").write_text(json.dumps([None if v is None else v.record() for v in run.views],
                                                   default=_json))


def _fisher_state(fisher):
    return None if fisher is None else {"values": fisher.values, **fisher.describe()}


def _fisher_of(state):
    return None if state is None else ewc.Fisher(state["values"], state["estimator"], state["samples"],
                                                 state["beta"], tuple(state["branch"]))


def _json(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def restore(run: ContinualRun) -> None:
    state = read_checkpoint(run.dir / CHECKPOINT, ("model", "task", "matrix", "scores", "anchor", "records",
                                                   "torch_rng", "fisher"), "start the run again")
    run.model.load_state_dict(state["model"])
    run.task, run.matrix, run.scores, run.anchor = state["task"], state["matrix"], state["scores"], state["anchor"]
    run.records = json.loads(state["records"])
    torch.set_rng_state(state["torch_rng"])
    run.fisher = _fisher_of(state["fisher"])
    if run.peer is not None:
        run.peer.load_state_dict(state["peer"])
        run.peer_fisher, run.peer_anchor = _fisher_of(state["peer_fisher"]), state["peer_anchor"]


def stream(run: ContinualRun, progress: bool = True) -> ContinualRun:
    """Learn the remaining tasks, checkpointing after each."""
    n = len(run.train_tasks)
    while run.task < n:
        record = learn_task(run, run.task, progress)
        run.records.append(record)
        run.task += 1
        save(run)
        if progress:
            s = summary(run)
            nis_text = ""
            if "nis" in record:
                q = record["nis"]["quality"] or {}
                nis_text = (f"; NIS named {record['nis']['named']} (true {record['noise']['modality']}), kept "
                            f"{record['nis']['kept']}/{record['train_frames']}, noisy recall "
                            f"{q.get('noisy_recall', float('nan')):.2f}, clean precision "
                            f"{q.get('clean_precision', float('nan')):.3f}")
            tqdm.write(f"task {run.task}/{n}: avg-MPJPE {s['avg_mpjpe_mm'][-1]:.1f} mm, avg-PA "
                       f"{s['avg_pa_mpjpe_mm'][-1]:.1f} mm ({record['seconds']:.0f} s){nis_text}")
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
        config.save(run_dir / "config.yaml")
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
        return stream(run, progress)
