"""The method plugin interface: a few hooks, called by the training loop at fixed moments.

    reference_optimizer             "adam" or "sgd": what the method's reference trains with (``optimizer: auto``)
    reference_lr                    the learning rate of that optimiser for this method when the config sets none
                                    (None: the optimiser's default, ``poise.optim.DEFAULTS``); chosen on held-out
                                    training sequences, never on the test split
    setup(run)                      once, after the model and the data exist and before the optimiser is built;
                                    on resume, before the checkpoint is restored (set up, then restore)
    modules() -> {name: Module}     trainable modules the method owns (e.g. G-Blending's heads): the loop puts
                                    their parameters in the optimiser as groups of those names, checkpoints
                                    them, averages their gradients under torchrun and checks them in sync
    on_epoch_start(run)             before each training epoch
    epoch_samples(run) -> array|None   the training rows of this epoch, repeats allowed (None: ``run.train_rows``);
                                    each batch's ``"sample"`` holds its positions in this list
    predict(run, batch, features) -> Tensor|None   the training prediction (None: model.decode(features))
    pose_loss_weight(run) -> float  the weight of the fused pose loss in the step's objective (default 1)
    extra_loss(run, step) -> Tensor|None   added to the weighted pose loss of each step
    after_backward(run, step)       after loss.backward() (and the gradient all-reduce), before optimizer.step()
    test_model(run) -> Module|None  after the epoch's steps, what is evaluated (None: ``run.model``; DivideMix:
                                    both networks' mean)
    on_epoch_end(run)               after evaluation and the contribution assessment of the epoch
    epoch_metrics(run) -> dict      numbers to add to this epoch's row of metrics.csv (named ``<method>_...``)
    networks() -> {name: PoseModel} pose models the method trains beside ``run.model`` (Co-teaching's peer; also
                                    in ``modules()``): a continual penalty protects each of them

In a task stream (``poise continual``) each task is one training phase of the same loop, and three more hooks
mark its ends (Avalanche's before/after_training_exp); the first two come before ``setup``:

    probes(run) -> [Probe]          after the task's data is in ``run``: training phases the method asks the
                                    stream to run first (NIS's fit); the stream runs each (``poise.train.run_probe``:
                                    the pose loss alone, some encoders frozen, the model put back afterwards) and
                                    sets its ``result`` from the probe's ``measure``; no method runs the loop itself
    on_task_start(run)              after the probes, before ``setup``: may narrow ``run.train_rows`` (NIS keeps
                                    the clean set)
    on_task_end(run)                after the task's last epoch, before the stream evaluates and checkpoints
                                    (EWC takes its Fisher and anchor here)
    state_dict() / load_state_dict  what a checkpoint must hold to resume the method exactly (modules() are
                                    saved by the loop)

``run`` is the training loop's ``Run`` (model, optimiser, config, epoch, contribution history, ...);
``step`` is the ``Step`` of the current batch (batch, features, prediction, loss); ``run.record`` is a dict
of notes on the phase that hooks may add to (a stream saves each task's in ``tasks.json``). A method
implements only the hooks it needs; ``poise.methods.compose.Composite`` runs several as one. Hyper-parameters are dataclass fields of the subclass: ``from_params`` rejects unknown
names with the nearest valid one.

A method is one file: besides its hooks, class attributes say what the rest of poise needs to know about it,
so that neither the tests nor the bench name a method.

    needs_holdout                   setup needs held-out training sequences (``holdout``; the smoke run holds
                                    half of them out)
    needs                           the model capabilities it uses beyond the model contract
                                    (``poise.models.capabilities``), checked before ``setup`` with an error that
                                    names each missing one and how to provide it
    smoke_params                    parameters that make it act within a tiny run (``tests/test_method_contract.py``
                                    trains every registered method with them on the tiny synthetic data)
    smoke_needs                     run-time resources that run must be given, by parameter name: ``"teacher"``
                                    (a finished run directory of the same data, protocol and split)
    smoke_epochs / smoke_cut        that run's length, and the epochs trained before it is interrupted and resumed
                                    (None: smoke_epochs - 1); long enough that the cut run has acted
    smoke_fusion                    that run's fusion (spread over the methods so that each fusion is covered)
    statistic                       the per-modality number the method acts on (``Statistic``: its metrics key,
                                    what it is, how the bench keeps and shows it)
    shown                           the parameters an ablation table shows (``settings`` resolves them)
    settings(epochs) -> dict        those parameters for a run of ``epochs`` (AWC's window as "K of N")
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import ClassVar, NamedTuple

import torch

from poise.values import typed
from poise.errors import PoiseError


def set_param(name: str, rule: str) -> str:
    """What an error tells the user to do about a method parameter, on the command line and in Python."""
    return f"set the method parameter {name} so that {rule} (--param {name}=...; method_params in Python)"


class Statistic(NamedTuple):
    """The per-modality number a method acts on, as the bench reports it: recorded each epoch as
    ``<key>_<modality>`` (``epoch_metrics``), kept in a run's bench row as its mean over the epochs
    (``over="mean"``) or its last value (``"last"``), and tabulated with ``digits`` decimals."""

    key: str
    what: str
    digits: int = 2
    over: str = "mean"


@typing.runtime_checkable
class RunView(typing.Protocol):
    """What a hook sees of the loop's ``run`` (``poise.run.Run`` is one; a task of a stream is one too): read
    these, change only ``train_rows`` (``on_task_start``) and ``record`` (notes of the phase)."""

    config: typing.Any  # the TrainConfig: epochs, batch_size, seed, lr_step, ...
    model: torch.nn.Module  # the model: modalities, encode / decode, modality_parameters() (and what ``needs`` names)
    objective: typing.Any  # its per-sample loss and metrics (``poise.objective``; MPJPE for poses)
    method: typing.Any  # the method the loop runs (a Composite when several are combined)
    train: typing.Any  # the training dataset: batch(rows), poses(rows), sequence_of(rows), ...
    train_rows: typing.Any  # the training frames trained on (numpy int64)
    val_rows: typing.Any  # held-out training frames (empty without ``holdout``)
    assess: dict  # a fixed batch of trained-on frames, on the device
    device: torch.device
    optimizer: typing.Any  # the torch optimiser (built after ``setup``)
    epoch: int  # the epoch being trained, 0-based
    task: int  # the task of a stream (0 in Setting 1)
    history: list  # one dict of metrics per finished epoch
    record: dict

    def scores(self) -> dict: ...  # {modality: Shapley-Pearson score} of the model as it left its last epoch

    def assessment(self) -> tuple: ...  # (scores, unimodal spreads), computed on first use per epoch


class StepView(typing.Protocol):
    """What a per-step hook sees of the batch being trained on (``poise.epoch.Step``)."""

    batch: dict
    features: dict  # {modality: encoder features}
    pred: torch.Tensor  # the training prediction
    loss: torch.Tensor  # the fused pose loss of the batch (a scalar, in metres)


@dataclasses.dataclass
class Method:
    name: ClassVar[str] = "method"
    reference_optimizer: ClassVar[str] = "adam"
    reference_lr: ClassVar[float | None] = None
    needs_holdout: ClassVar[bool] = False  # setup needs ``run.val_rows`` (held-out training sequences)
    needs: ClassVar[tuple] = ()  # model capabilities beyond the contract (poise.models.capabilities.CAPABILITIES)
    smoke_params: ClassVar[dict] = {}  # read-only: copy before changing
    smoke_needs: ClassVar[tuple] = ()
    smoke_epochs: ClassVar[int] = 2
    smoke_cut: ClassVar[int | None] = None
    smoke_fusion: ClassVar[str] = "concat"
    statistic: ClassVar[Statistic | None] = None
    shown: ClassVar[tuple] = ()

    @classmethod
    def from_params(cls, params: dict) -> "Method":
        fields = {f.name for f in dataclasses.fields(cls)}
        for key in params:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                raise PoiseError(f"method {cls.name!r} has no parameter {key!r}"
                                 + (f" (did you mean {close[0]!r}?)" if close else "")
                                 + (f"; its parameters: {', '.join(sorted(fields))}" if fields else "; it takes none"))
        hints = typing.get_type_hints(cls)
        return cls(**{key: typed(f"method {cls.name!r} parameter {key!r}", value, hints[key])
                      for key, value in params.items()})

    def params(self) -> dict:
        return dataclasses.asdict(self)

    def settings(self, epochs: int) -> dict:
        """The parameters of ``shown``, as they act in a run of ``epochs`` (a method whose parameter means
        something else at another length resolves it here)."""
        params = self.params()
        return {key: params[key] for key in self.shown}

    def setup(self, run: RunView) -> None:
        pass

    def modules(self) -> dict:
        return {}

    def on_epoch_start(self, run: RunView) -> None:
        pass

    def epoch_samples(self, run: RunView):
        return None

    def predict(self, run: RunView, batch: dict, features: dict):
        return None

    def pose_loss_weight(self, run: RunView) -> float:
        return 1.0

    def extra_loss(self, run: RunView, step: StepView):
        return None

    def after_backward(self, run: RunView, step: StepView) -> None:
        pass

    def on_epoch_end(self, run: RunView) -> None:
        pass

    def epoch_metrics(self, run: RunView) -> dict:
        return {}

    def networks(self) -> dict:
        return {}

    def test_model(self, run: RunView):
        return None

    def probes(self, run: RunView) -> list:
        return []

    def on_task_start(self, run: RunView) -> None:
        pass

    def on_task_end(self, run: RunView) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@dataclasses.dataclass
class Probe:
    """A training phase a method asks for before a task (``Method.probes``): ``epochs`` epochs of the pose loss
    alone on the training frames ``rows`` with the encoders of ``frozen`` held (001's gradient-stop), drawing
    the data of epoch ``run.epoch_offset + 100 * phase + e``; ``measure(phase)`` reads what the method needs off
    the fitted model (a dict, kept as ``result``) before the model is put back as it was."""

    rows: object
    epochs: int
    measure: typing.Callable
    frozen: tuple = ()
    phase: int = 1
    label: str = ""
    result: dict | None = None


def snapshot(params) -> list[torch.Tensor]:
    """Detached copies of ``params`` (e.g. an encoder's parameters at the start of training)."""
    return [p.detach().clone() for p in params]


def on_device_of(saved: dict, like: dict) -> dict:
    """``saved`` ({key: [tensors]}, restored from a checkpoint on the CPU) moved to the devices of ``like``'s
    tensors ({key: [parameters]}), so a resumed run keeps working on its GPU."""
    return {k: [s.to(p.device) for s, p in zip(saved[k], like[k])] for k in saved}
