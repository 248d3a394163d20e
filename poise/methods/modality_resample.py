"""``modality_resample``: modality-level valuation and re-sampling (Wei, Feng, Wang and Hu, CVPR 2024,
"Enhancing multimodal cooperation via sample-level modality valuation", Sec. 3.3, modality level), adapted to
regression and to M modalities.

The original values each modality by its mean Shapley value phi_m over a part of the training set, with the
value function v(S) = |S| * 1[the prediction from the modalities in S is correct], so a modality's ideal value
is 1; with gap_m = 1 - phi_m it adds int(alpha * 2/3 * |gap_a - gap_v| * N) random duplicates of training
samples, each trained with the stronger modality zeroed, so the weak one learns through the fused head. The
training loss is unchanged.

Adaptation (classification -> regression), ours:
- The value is the Shapley-Pearson score of the epoch's contribution assessment (001 Eq. 1-3, already
  computed each epoch on a fixed slice of training frames). For M = 2 the original's count is driven by
  |phi_a - phi_v| = |v(a) - v(v)|, the difference of the two unimodal accuracies, which lies in [0, 1]. The
  Shapley-Pearson scores of two modalities differ by exactly the difference of their unimodal Pearson profits,
  and that profit is at most the number of target coordinates C (51 = 17 x 3 for a pose), so ours is
      d_m = clip((phi_best - phi_m) / C, 0, 1),
  the same quantity as a fraction of its maximum, and bounded as the original's.
- For M > 2 every modality m other than the best valued one gets int(alpha * 2/3 * d_m * N / (M - 1))
  duplicates, each trained with only m present (every other modality zeroed at the feature level), which is
  the original's "stronger modality zeroed" for M = 2, where the count is exactly the original's. Dividing by
  M - 1 keeps the total added at most alpha * 2/3 * N, the original's bound.
- N is the number of frames trained on (``run.train_rows``), and duplicates are drawn from them.
- Re-sampling starts after ``warmup`` epochs (the original's 5 of 100; ours 2 by default) and is redrawn
  every epoch from the last scores, with a generator seeded by (seed, epoch), so a resumed run draws the same.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from poise.methods import register
from poise.methods.base import Method, set_param
from poise.errors import PoiseError

POSE_COORDINATES = 51  # the Pearson profit sums r over the target's coordinates: 17 x 3 for a pose


def duplicate_counts(scores: dict, n: int, alpha: float, coordinates: int = POSE_COORDINATES) -> dict:
    """Duplicates per modality ``{m: count}`` from Shapley-Pearson ``scores`` and the training-set size n; in
    total at most ``alpha * 2/3 * n``. ``coordinates``: the target's, the Pearson profit's maximum."""
    M = len(scores)
    if M < 2:
        return {m: 0 for m in scores}
    best = max(scores.values())
    gaps = {m: min(max((best - s) / coordinates, 0.0), 1.0) for m, s in scores.items()}
    return {m: int(alpha * 2 / 3 * g * n / (M - 1)) for m, g in gaps.items()}


@register("modality_resample")
@dataclasses.dataclass
class ModalityResample(Method):
    smoke_params = {"warmup": 1}
    smoke_epochs = 3
    smoke_fusion = "mlp"
    alpha: float = 1.0
    warmup: int = 2  # epochs of plain joint training before re-sampling

    def __post_init__(self):
        if not self.alpha >= 0:
            raise PoiseError(f"modality_resample: alpha must be >= 0, got {self.alpha}")
        if self.warmup < 1:
            raise PoiseError(f"modality_resample: warmup must be >= 1 (the scores come from an epoch of "
                             f"training), got {self.warmup}")
        self.counts: dict = {}  # this epoch's duplicates per modality
        self.only = np.zeros(0, dtype=np.int64)  # per position in the epoch's list: -1, or the modality kept

    def setup(self, run) -> None:
        if len(run.model.modalities) < 2:
            raise PoiseError(f"modality_resample re-balances between modalities; the run has only "
                             f"{list(run.model.modalities)}: use --method baseline for a single modality")
        if self.warmup >= run.config.epochs:
            raise PoiseError(f"modality_resample: warmup={self.warmup} leaves no epoch to re-sample in a run of "
                             f"{run.config.epochs}; {set_param('warmup', 'warmup < epochs')}")

    def epoch_samples(self, run):
        n = len(run.train_rows)
        self.only = np.full(n, -1, dtype=np.int64)
        self.counts = {}
        if run.epoch < self.warmup:  # (warmup >= 1: the scores of an epoch of training)
            return None
        self.counts = duplicate_counts(run.scores(), n, self.alpha, run.assess["gt"][0].numel())  # the last epoch's
        rng = np.random.default_rng([run.config.seed, run.epoch_offset + run.epoch, 11])
        rows, only = [run.train_rows], [self.only]
        for i, m in enumerate(run.model.modalities):
            count = self.counts.get(m, 0)
            if count:
                rows.append(run.train_rows[rng.integers(0, n, count)])
                only.append(np.full(count, i, dtype=np.int64))
        self.only = np.concatenate(only)
        return np.concatenate(rows)

    def predict(self, run, batch, features):
        only = self.only[batch["sample"]]
        if (only < 0).all():
            return None
        pred = run.model.decode(features).clone()
        for i, m in enumerate(run.model.modalities):
            rows = np.flatnonzero(only == i)
            if len(rows):
                sub = {k: f[rows] for k, f in features.items()}
                pred[rows] = run.model.decode(sub, (m,))
        return pred

    def epoch_metrics(self, run) -> dict:
        return {f"modality_resample_added_{m}": self.counts.get(m, 0) for m in run.model.modalities}
