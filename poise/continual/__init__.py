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

Import what you use from its module (``poise.continual.ewc.fisher_generic``): this package's own import stays
light, so that the command line can offer the continual choices without loading torch.
"""
