"""Paper 001's Setting 2, denoising continual multi-modal learning: the building blocks.

- ``tasks``: the task stream, ``tasks.tasks(protocol)`` (actions grouped into 7 tasks for P1, 6 for P2; the first is clean);
- ``noise``: raw / unaligned corruption of one modality in a task (``NoiseSpec``, ``NoisyView``);
- ``nis``: noise identification and separation (noisy-modality naming, per-sample losses, the GMM split,
  gradient-stop, split quality);
- ``ewc``: generic and adaptive Fisher (per-sample or batched), the EWC penalty;
- ``peers``: the Co-teaching and DivideMix baselines' two-network pieces;
- ``strategies``: the config's switches as plugins of the Setting-1 loop (NIS, EWC, the peers, re-learning,
  a balancing method);
- ``config``, ``runner`` and ``results``: ``poise continual``, Algorithm 2 over the stream, each task a phase of
  ``poise.train``'s loop (see docs/continual.md).
"""

from poise.continual.ewc import (DEFAULT_BETA, DEFAULT_LAMBDA, Fisher, anchor_of, branch_names, ewc_penalty,
                                 fisher_adaptive, fisher_generic)
from poise.continual.nis import (gmm_clean_mask, gradient_stop, name_noisy_modality, per_sample_losses,
                                 sample_mpjpe, split_quality)
from poise.continual.noise import KINDS, NoiseSpec, NoisyView, clutter_ranges
from poise.continual.tasks import TASKS, task_indices, task_of_action

__all__ = [
    "DEFAULT_BETA", "DEFAULT_LAMBDA", "Fisher", "KINDS", "NoiseSpec", "NoisyView", "TASKS", "anchor_of",
    "branch_names", "clutter_ranges", "ewc_penalty", "fisher_adaptive", "fisher_generic", "gmm_clean_mask",
    "gradient_stop", "name_noisy_modality", "per_sample_losses", "sample_mpjpe", "split_quality",
    "task_indices", "task_of_action",
]
# ``poise.continual.tasks`` stays the module: its function is ``poise.continual.tasks.tasks(protocol)``.
