"""Noise identification and separation (NIS), paper 001 Sec. 3.3 and Algorithm 2.

1. Name the noisy modality: the one whose Shapley-Pearson contribution score (001 Eq. 1-3,
   ``poise.contrib.shapley``) drops most between the end of the previous task and after fitting the model for
   gamma epochs on the new task (``name_noisy_modality``).
2. During those gamma epochs, halt the optimisation of the superior modalities' encoders (001's
   "gradient-stop", ``gradient_stop``), so the model cannot fit the corrupted samples through the strong
   modalities and their losses stay separable.
3. Fit a 2-component Gaussian mixture to the per-sample losses (``per_sample_losses``) and keep as clean the
   samples whose posterior for the lower-mean component is >= 0.5 (001 Eq. 5-6, ``gmm_clean_mask``).
``split_quality`` scores a split against the recorded corruption (``NoisyView.record``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from typing import ClassVar

import numpy as np
import torch

from poise.metrics import sample_mpjpe  # noqa: F401  (part of this module's interface)
from poise.contrib.shapley import batch_scores
from poise.methods.base import Method
from poise.runtime import frame_batches, to_device

MODES = ("absolute", "relative")
RELATIVE_FLOOR = 0.05  # denominators below 5 % of the largest |score| are raised to it
GMM_REG_COVAR = 5e-4  # DivideMix's value, on min-max normalised losses
GMM_MAX_ITER = 100
GMM_TOL = 1e-4


def name_noisy_modality(before: dict, after: dict, mode: str = "absolute", floor: float = RELATIVE_FLOOR) -> str:
    """The modality whose contribution score dropped most from ``before`` (end of the previous task) to
    ``after`` (after gamma fitting epochs on the new task), 001 Sec. 3.3 "Noise Identification".

    001 says only that noise "manifests in score fluctuations". By default (``mode="absolute"``) the largest
    drop before - after names the modality. ``mode="relative"`` divides the drop by
    max(|before|, ``floor`` * max over modalities of |before|), so that a corrupted weak modality (whose score
    is an order of magnitude below the strong ones', 001 Fig. 4) can win with a small absolute drop. We first
    chose relative, and measured it losing: a weak modality's score sits near zero and fluctuates by more than
    itself from task to task, so its relative "drop" beats a strong modality that lost 90 % of its score (the
    runner's tests corrupt RGB in 90 % of a task and see exactly this with a 5 % floor). A corrupted weak
    modality is hard to name either way: it contributed little, so corrupting it changes little.
    Ties go to the first modality in ``before``'s order. Scores must be finite, with the same modalities.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: choose one of {', '.join(MODES)}")
    if not before or set(before) != set(after):
        raise ValueError(f"before and after must score the same non-empty set of modalities; got "
                         f"{sorted(before)} and {sorted(after)}")
    b = np.array([float(before[m]) for m in before])
    a = np.array([float(after[m]) for m in before])
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"contribution scores must be finite; got before={before}, after={after}")
    drop = b - a
    if mode == "relative":
        scale = np.abs(b).max()
        if scale == 0:
            raise ValueError("every 'before' score is 0: a relative drop is undefined; use mode='absolute'")
        drop = drop / np.maximum(np.abs(b), floor * scale)
    return list(before)[int(np.argmax(drop))]


@torch.no_grad()
def per_sample_losses(model, batches, return_indices: bool = False):
    """Per-sample MPJPE (metres, float64 numpy) of the fused prediction (all modalities present) over
    ``batches`` (an iterable of batch dicts with "gt"), in eval mode and without gradients (DivideMix's
    ``eval_train``); the model's train/eval mode is restored. With ``return_indices``, also the batches'
    "index" entries (numpy int64) in the same order."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    losses, indices = [], []
    try:
        for batch in batches:
            batch = to_device(batch, device)
            losses.append(sample_mpjpe(model(batch), batch["gt"]).double().cpu().numpy())
            if return_indices:
                indices.append(np.asarray(batch["index"].cpu() if torch.is_tensor(batch["index"])
                                          else batch["index"], dtype=np.int64).reshape(-1))
    finally:
        model.train(was_training)
    losses = np.concatenate(losses) if losses else np.zeros(0)
    if return_indices:
        return losses, (np.concatenate(indices) if indices else np.zeros(0, np.int64))
    return losses


def gmm_clean_mask(losses, threshold: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(clean mask, clean posterior) from per-sample losses: 001 Eq. 5-6 with a 2-component 1-D GMM.

    As DivideMix (Li et al., ICLR 2020) does: losses are min-max normalised to [0, 1] first (so the GMM's
    covariance floor ``reg_covar`` = 5e-4 means the same on any loss scale), ``sklearn.mixture.GaussianMixture``
    is fitted with 2 components (``random_state=seed``; ``max_iter`` 100 and ``tol`` 1e-4, run to convergence
    rather than DivideMix's 10 iterations), and the posterior of the component with the lower mean is the
    clean probability p(g | L_i). Clean: posterior >= ``threshold`` (001 Eq. 6: >= 0.5).

    Degenerate inputs: NaN or inf -> ValueError naming the count; no samples -> empty arrays; one sample, or
    all losses equal -> everything clean with posterior 1 (no evidence of two populations).
    Known limit (as in DivideMix): the posterior is not forced to decrease with the loss, so when the noisy
    component is much wider than the clean one, the extreme tails can be assigned against intuition.
    """
    x = np.asarray(losses, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"losses must be one loss per sample (1-D), got shape {x.shape}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold!r} must be a probability in [0, 1]")
    n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
    if n_nan or n_inf:
        raise ValueError(f"losses contain {n_nan} NaN and {n_inf} inf values: the loss diverged or a batch is "
                         f"broken; a mixture cannot be fitted")
    if len(x) < 2 or x.max() == x.min():
        return np.ones(len(x), dtype=bool), np.ones(len(x))
    from sklearn.mixture import GaussianMixture

    z = ((x - x.min()) / (x.max() - x.min()))[:, None]
    gmm = GaussianMixture(n_components=2, max_iter=GMM_MAX_ITER, tol=GMM_TOL, reg_covar=GMM_REG_COVAR,
                          random_state=seed).fit(z)
    posterior = gmm.predict_proba(z)[:, int(np.argmin(gmm.means_.ravel()))]
    return posterior >= threshold, posterior


@contextlib.contextmanager
def gradient_stop(model, superior):
    """Freeze the encoders of the ``superior`` modalities for the duration (001 Sec. 3.3: "we halt
    optimization of M_S during the fitting"): their parameters get ``requires_grad = False`` and ``grad =
    None`` (so an optimizer skips them even if it was built with them), and get their previous
    ``requires_grad`` back on exit, also on an exception. Only parameters are frozen: normalisation buffers
    (BatchNorm running statistics) still update in train mode. Yields the frozen modalities."""
    superior = [superior] if isinstance(superior, str) else list(superior)
    unknown = [m for m in superior if m not in model.encoders]
    if unknown:
        raise ValueError(f"superior={superior} names {unknown}, which the model has no encoder for "
                         f"(its modalities: {list(model.encoders)})")
    params = list({id(p): p for m in superior for p in model.encoders[m].parameters()}.values())
    saved = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
            p.grad = None
        yield tuple(superior)
    finally:
        for p, flag in zip(params, saved):
            p.requires_grad_(flag)


def split_quality(clean_mask, corrupted) -> dict:
    """How well a clean/noisy split matches the recorded corruption (bool arrays, one entry per sample).

    - ``clean_precision``: fraction of kept samples that are truly clean;
    - ``clean_recall``: fraction of truly clean samples kept;
    - ``noisy_precision``: fraction of removed samples that are truly corrupted;
    - ``noisy_recall``: fraction of corrupted samples removed;
    - ``accuracy``: fraction of samples on the right side;
    plus the counts. A ratio with an empty denominator is NaN.
    """
    kept = np.asarray(clean_mask, dtype=bool).reshape(-1)
    bad = np.asarray(corrupted, dtype=bool).reshape(-1)
    if kept.shape != bad.shape:
        raise ValueError(f"clean_mask has {kept.size} entries and corrupted {bad.size}: one per sample each")

    def ratio(a, b):
        return float(a) / float(b) if b else math.nan

    tp_clean = int((kept & ~bad).sum())
    tp_noisy = int((~kept & bad).sum())
    return {
        "clean_precision": ratio(tp_clean, kept.sum()),
        "clean_recall": ratio(tp_clean, (~bad).sum()),
        "noisy_precision": ratio(tp_noisy, (~kept).sum()),
        "noisy_recall": ratio(tp_noisy, bad.sum()),
        "accuracy": ratio(tp_clean + tp_noisy, kept.size),
        "samples": int(kept.size), "kept": int(kept.sum()), "removed": int((~kept).sum()),
        "corrupted": int(bad.sum()),
    }


PROBE_PHASES = {True: 1, False: 2}  # epoch-offset phase of the probe with / without gradient-stop


@dataclasses.dataclass
class NIS(Method):
    """Noise identification and separation as a continual strategy (001 Sec. 3.3, Algorithm 2), before every
    task after the first (001's first task is clean):

    1. a probe: ``gamma`` epochs of the Setting-1 loop on the whole task, the superior modalities' encoders
       frozen (``gradient_stop``; superior / inferior by K-Means on the scores at the end of the previous task,
       the trained model's view of its modalities);
    2. naming, like with like: the Shapley-Pearson scores of the task's fixed assessment frames (as the model
       sees them, corruption included) at the start of the task and after the probe; the modality whose score
       dropped most is named noisy (``name_noisy_modality``). Scoring the previous task's data before and this
       task's after, as we first did, measures the change of data as much as the noise: on a clean task the
       same model's RGB score fell from 4.95 to 0.49;
    3. a 2-component GMM on the probe's per-sample losses (Eq. 5-6): the task then trains on the clean set
       (``run.train_rows`` narrowed), from the parameters before the probe (the probe is undone).
    ``run.record["nis"]`` holds the named modality, both score sets, and the clean mask and losses over the
    task's samples; the stream scores the split against the recorded corruption, which no strategy sees.
    """

    name: ClassVar[str] = "nis"
    gamma: int = 1
    naming: str = "absolute"
    compare_gradient_stop: bool = False

    def __post_init__(self):
        if self.naming not in MODES:
            raise ValueError(f"naming={self.naming!r}: choose one of {', '.join(MODES)}")
        self.last_scores: dict | None = None

    def on_task_start(self, run) -> None:
        if run.task == 0 or self.last_scores is None:
            return
        from poise.methods.groups import split_groups

        rows = np.asarray(run.train_rows)
        before = batch_scores(run.model, run.assess)
        superior, _ = split_groups(self.last_scores)
        probe = self.probe(run, rows, superior, before)
        run.record["nis"] = {"named": probe["named"], "frozen": list(superior), "scores_before": before,
                             "scores_after": probe["scores_after"], "kept": int(probe["clean"].sum()),
                             "rows": rows, "clean": probe["clean"], "losses_mm": probe["losses_mm"]}
        if self.compare_gradient_stop:
            plain = self.probe(run, rows, [], before)
            run.record["nis"]["without_gradient_stop"] = {"named": plain["named"], "rows": rows, "clean": plain["clean"],
                                                          "losses_mm": plain["losses_mm"]}
        run.train_rows = rows[probe["clean"]]

    def probe(self, run, rows: np.ndarray, frozen, before: dict) -> dict:
        """Fit ``gamma`` epochs (``frozen`` encoders held), score, split; then put the model back."""
        from poise import train
        from poise.metrics import M_TO_MM

        saved = copy.deepcopy(run.model.state_dict())
        plain = Method()  # the probe trains the pose loss alone
        plain.reference_optimizer = run.method.reference_optimizer  # the task's optimiser (``optimizer: auto``)
        plain.reference_lr = run.method.reference_lr
        offset = run.epoch_offset + 100 * PROBE_PHASES[bool(frozen)]
        label = f"{run.label}NIS fit{' (gradient-stop)' if frozen else ''} "
        with gradient_stop(run.model, frozen):
            phase = train.phase_of(run, rows, self.gamma, plain, epoch_offset=offset, label=label)
            train.fit(phase, run.progress)
            after = phase.scores()  # the same assessment frames as ``before``
        losses = per_sample_losses(run.model, frame_batches(run.train, rows, run.config.batch_size))
        clean, _ = gmm_clean_mask(losses, seed=run.config.seed)
        run.model.load_state_dict(saved)
        return {"named": name_noisy_modality(before, after, mode=self.naming), "scores_after": after,
                "clean": clean, "losses_mm": losses * M_TO_MM}

    def on_task_end(self, run) -> None:
        self.last_scores = dict(run.scores())

    def state_dict(self) -> dict:
        return {"last_scores": self.last_scores}

    def load_state_dict(self, state: dict) -> None:
        self.last_scores = state["last_scores"]

