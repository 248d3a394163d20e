"""Noise identification and separation (NIS), paper 001 Sec. 3.3 and Algorithm 2.

1. Name the noisy modality: the one whose Shapley-Pearson contribution score (001 Eq. 1-3,
   ``poise.contrib.shapley``) is significantly lower on the new task than on clean frames, after fitting the
   model for gamma epochs on the new task (``name_noisy_modality``; "none" when no score dropped further than
   it does on a clean task).
2. During those gamma epochs, halt the optimisation of the superior modalities' encoders (001's
   "gradient-stop", ``poise.runtime.gradient_stop``), so the model cannot fit the corrupted samples through
   the strong modalities and their losses stay separable. The stream runs this fit on NIS's request
   (``NIS.probes``, ``poise.train.run_probe``): no strategy calls the loop.
3. Fit a 2-component Gaussian mixture to the per-sample losses (``per_sample_losses``) and keep as clean the
   samples whose posterior for the lower-mean component is >= 0.5 (001 Eq. 5-6, ``gmm_clean_mask``).
``split_quality`` scores a split against the recorded corruption (``NoisyView.record``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import torch

from poise.metrics import M_TO_MM, sample_mpjpe
from poise.contrib.shapley import batch_scores
from poise.errors import PoiseError
from poise.methods.base import Method, Probe
from poise.values import typed
from poise.runtime import frame_batches, to_device

MODES = ("absolute", "relative")
NONE = "none"  # what naming answers when no score dropped significantly
# split a task only when a modality is named, always (001 Algorithm 2 as written), or never: NIS then only
# measures (names nothing, splits nothing), the clean control that sets the naming thresholds
SEPARATE = ("named", "always", "never")
RELATIVE_FLOOR = 0.05  # denominators below 5 % of the largest |score| are raised to it
GMM_REG_COVAR = 5e-4  # DivideMix's value, on min-max normalised losses
GMM_MAX_ITER = 100
GMM_TOL = 1e-4


def score_drops(reference: dict, scores: dict, mode: str = "absolute", floor: float = RELATIVE_FLOOR) -> dict:
    """{modality: how far its contribution score fell from ``reference`` to ``scores``}: reference - scores
    (``mode="absolute"``), or that drop divided by max(|reference|, ``floor`` * the largest |reference|)
    (``mode="relative"``). Scores must be finite, over the same non-empty set of modalities."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: choose one of {', '.join(MODES)}")
    if not reference or set(reference) != set(scores):
        raise ValueError(f"both score sets must cover the same non-empty set of modalities; got "
                         f"{sorted(reference)} and {sorted(scores)}")
    b = np.array([float(reference[m]) for m in reference])
    a = np.array([float(scores[m]) for m in reference])
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"contribution scores must be finite; got reference={reference}, scores={scores}")
    drop = b - a
    if mode == "relative":
        scale = np.abs(b).max()
        if scale == 0:
            raise ValueError("every reference score is 0: a relative drop is undefined; use mode='absolute'")
        drop = drop / np.maximum(np.abs(b), floor * scale)
    return {m: float(d) for m, d in zip(reference, drop)}


def name_noisy_modality(reference: dict, scores: dict, mode: str = "absolute", threshold: dict | None = None,
                        floor: float = RELATIVE_FLOOR) -> str:
    """The modality whose contribution score dropped significantly from ``reference`` to ``scores``, or
    ``NONE``: 001 Sec. 3.3, "Noise Identification" (scores "expected to remain stable under consistent data
    quality", noise named on "a significant change").

    A modality is a candidate when its drop (``score_drops``) exceeds its ``threshold`` ({modality: the drop
    a clean task can show}, measured where nothing is corrupted; a modality it omits: 0); the candidate with
    the largest excess over its threshold is named, and ``NONE`` when no modality's score fell by more than its
    threshold. 001 gives no threshold; without one, any drop names a modality.

    ``mode="relative"`` divides each drop by the modality's reference score (floored at ``floor`` times the
    largest), so that a corrupted weak modality (whose score is an order of magnitude below the strong ones',
    001 Fig. 4) can win with a small absolute drop; measured losing to the absolute rule: a weak modality's score
    sits near zero and fluctuates by more than itself from task to task. Ties go to the first modality in
    ``reference``'s order."""
    return name_from_drops(score_drops(reference, scores, mode, floor), threshold)


def name_from_drops(drops: dict, threshold: dict | None = None) -> str:
    """``name_noisy_modality``'s decision on drops already measured: the modality whose drop exceeds its
    threshold (omitted: 0) by the most, or ``NONE``."""
    threshold = threshold or {}
    unknown = sorted(set(threshold) - set(drops))
    if unknown:
        raise ValueError(f"threshold names {unknown}, which have no score (scored: {sorted(drops)})")
    excess = {m: float(d) - float(threshold.get(m, 0.0)) for m, d in drops.items()}
    best = max(excess, key=lambda m: excess[m])  # max keeps the first of equals
    return best if excess[best] > 0 else NONE


@torch.no_grad()
def per_sample_losses(model, batches, return_indices: bool = False, sample_loss=sample_mpjpe):
    """Per-sample loss (``sample_loss``, default MPJPE in metres; float64 numpy) of the fused prediction (all
    modalities present) over
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
            losses.append(sample_loss(model(batch), batch["gt"]).double().cpu().numpy())
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

    1. a probe (``probes``, run by the stream): ``gamma`` epochs of the Setting-1 loop on the whole task, the
       superior modalities' encoders frozen (``gradient_stop``; superior / inferior by K-Means on the scores at
       the end of the previous task, the trained model's view of its modalities);
    2. naming against a clean reference: the probed model's Shapley-Pearson scores on the task's fixed
       assessment frames (as the learner sees them, corruption included) and on ``reference_rows``, frames of
       the clean first task that no task trains on (``ContinualConfig.reference_holdout``); a modality whose
       score is lower on the new task by more than its ``threshold`` (the drop a clean task shows, measured on
       a clean stream) is named noisy, and none when no score fell that far (``name_noisy_modality``). Why the
       first task and not the previous one: with one noisy modality per later task, the previous task is
       itself noisy, and when the same modality is corrupted twice in a row (a stream with a fixed
       ``noisy_modality``, as 001 Fig. 3's LiDAR) a noisy reference hides the noise. Why not the same frames
       before and after the probe, as we first did: the corruption is in both, so the rule named whichever
       modality the probe re-weighted most (LiDAR in 7 of 9 clean tasks);
    3. a 2-component GMM on the probe's per-sample losses (Eq. 5-6): the task then trains on the clean set
       (``run.train_rows`` narrowed), from the parameters before the probe (the probe is undone). With
       ``separate="named"`` (default) only when a modality was named (001 Sec. 1: "upon detecting a significant
       change in multi-modal scores"); ``"always"`` splits every later task, as 001's Algorithm 2 is written;
       ``"never"`` only measures: nothing is named or split (the clean control stream that sets the thresholds
       trains as a thresholded run that answered none would).
    ``run.record["nis"]`` holds the named modality, the score sets and drops, and the clean mask and per-sample
    losses before and after the probe over the task's samples; the stream scores the split against the
    recorded corruption, which no strategy sees.
    """
    needs: ClassVar[tuple] = ("encoders",)

    name: ClassVar[str] = "nis"
    gamma: int = 1
    naming: str = "absolute"
    threshold: dict = dataclasses.field(default_factory=dict)
    separate: str = "named"
    compare_gradient_stop: bool = False

    def __post_init__(self):
        if self.naming not in MODES:
            raise PoiseError(f"nis: naming is {self.naming!r}: choose one of {', '.join(MODES)}")
        if self.separate not in SEPARATE:
            raise PoiseError(f"nis: separate is {self.separate!r}: choose one of {', '.join(SEPARATE)}")
        if not 1 <= self.gamma < 100:  # a task's phases draw the data of epochs 1000 t + 100 phase + e
            raise PoiseError(f"nis: gamma (fitting epochs) must lie in 1 .. 99, got {self.gamma!r}")
        if not isinstance(self.threshold, dict):
            raise PoiseError(f"nis: threshold must be a mapping of modality to score drop, got {self.threshold!r}")
        self.threshold = {m: typed(f"nis: threshold ({m})", v, float) for m, v in self.threshold.items()}
        self.reference_rows: np.ndarray | None = None  # set by whoever builds the strategy (as Peers.peer)
        self.last_scores: dict | None = None
        self.pending: list = []  # this task's probes, asked for in ``probes`` and read in ``on_task_start``
        self.start: dict = {}

    def probes(self, run) -> list:
        """The probe of 001's NIS fit (with gradient-stop; without too for ``compare_gradient_stop``), asked for
        before every later task; the task's start scores and per-sample losses are read first, before a probe
        draws other data."""
        self.pending = []
        if run.task == 0 or self.last_scores is None:
            return []
        from poise.methods.groups import split_groups

        rows = np.asarray(run.train_rows)
        self.start = {"rows": rows, "scores": batch_scores(run.model, run.assess),
                      "losses": per_sample_losses(run.model, frame_batches(run.train, rows, run.config.batch_size),
                                                  sample_loss=run.objective.sample_loss)}
        superior, _ = split_groups(self.last_scores)

        def measure(phase) -> dict:
            return self.measure(phase, rows)

        self.pending = [Probe(rows, self.gamma, measure, frozen=tuple(superior), phase=PROBE_PHASES[True],
                              label=f"{run.label}NIS fit (gradient-stop) ")]
        if self.compare_gradient_stop:
            self.pending.append(Probe(rows, self.gamma, measure, frozen=(), phase=PROBE_PHASES[False],
                                      label=f"{run.label}NIS fit "))
        return list(self.pending)

    def measure(self, phase, rows: np.ndarray) -> dict:
        """What the fitted probe says: the scores of the task's assessment frames and of the clean reference,
        the named modality, and the GMM split of the per-sample losses over ``rows``."""
        after = phase.scores()  # the task's assessment frames, as at the task's start
        reference = batch_scores(phase.model, to_device(phase.train.clean_batch(self.reference_rows), phase.device))
        losses = per_sample_losses(phase.model, frame_batches(phase.train, rows, phase.config.batch_size),
                                   sample_loss=phase.objective.sample_loss)
        clean, _ = gmm_clean_mask(losses, seed=phase.config.seed)
        return {"named": name_noisy_modality(reference, after, self.naming, self.threshold),
                "drops": score_drops(reference, after, self.naming), "scores_after": after,
                "scores_reference": reference, "clean": clean, "losses_mm": losses * M_TO_MM}

    def on_task_start(self, run) -> None:
        if not self.pending:
            return
        if self.reference_rows is None or not len(self.reference_rows):
            raise PoiseError("NIS names the noisy modality against clean frames of the first task that no task "
                             "trains on: set .reference_rows (the runner holds them back with reference_holdout > 0)")
        if any(p.result is None for p in self.pending):
            raise PoiseError("NIS asked for its fit (Method.probes) but the stream did not run it: a stream runs "
                             "each probe with poise.train.run_probe before on_task_start")
        rows, probe = self.start["rows"], self.pending[0].result
        named = NONE if self.separate == "never" else probe["named"]
        separated = self.separate == "always" or (self.separate == "named" and named != NONE)
        run.record["nis"] = {"named": named, "separated": separated, "frozen": list(self.pending[0].frozen),
                             "threshold": dict(self.threshold), "scores_start": self.start["scores"],
                             "scores_reference": probe["scores_reference"], "scores_after": probe["scores_after"],
                             "drops": probe["drops"], "rows": rows, "losses_mm": probe["losses_mm"],
                             "clean": probe["clean"] if separated else np.ones(len(rows), bool),  # trained on
                             "kept": int(probe["clean"].sum()) if separated else len(rows),
                             "losses_before_mm": self.start["losses"] * M_TO_MM,
                             "gmm": {"rows": rows, "clean": probe["clean"]}}  # the GMM's split, used or not
        if self.compare_gradient_stop:
            plain = self.pending[1].result
            run.record["nis"]["without_gradient_stop"] = {"named": plain["named"], "drops": plain["drops"],
                                                          "rows": rows, "clean": plain["clean"],
                                                          "losses_mm": plain["losses_mm"]}
        if separated:
            run.train_rows = rows[probe["clean"]]
        self.pending = []

    def on_task_end(self, run) -> None:
        self.last_scores = dict(run.scores())

    def state_dict(self) -> dict:
        return {"last_scores": self.last_scores}

    def load_state_dict(self, state: dict) -> None:
        self.last_scores = state["last_scores"]

