"""``Run``: everything the training loop and the method hooks share, for a run of ``poise train``, of
``poise.fit`` on a user's model and data, or one phase of a larger job (a task of a stream, NIS's probe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from poise import methods
from poise.config import TrainConfig
from poise.data.arrays import RegressionData
from poise.epoch import assess
from poise.models.capabilities import MultiModalModel
from poise.objective import POSE, Objective


@dataclass
class Run:
    """Everything the loop and the method hooks share."""

    config: TrainConfig
    dir: Path | None  # None: a phase of a larger job (a task of a stream), which checkpoints it itself
    model: MultiModalModel  # the pose model (``PoseModel``) or a user's
    method: methods.Method
    train: RegressionData  # an ``MMFiDataset``, or a user's (``poise.data.arrays``)
    test: RegressionData | None  # None: no test split (``poise.fit`` without test_data)
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
    objective: Objective = POSE  # the per-sample loss the loop trains and the metrics it reports (poise.objective)
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
