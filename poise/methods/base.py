"""The method plugin interface: a few hooks, called by the training loop at fixed moments.

    setup(run)                      once, after the model, optimiser and data exist (and after a resume)
    on_epoch_start(run)             before each training epoch
    epoch_samples(run) -> array|None   the training rows of this epoch, repeats allowed (None: each row once);
                                    each batch's ``"sample"`` holds its positions in this list
    predict(run, batch, features) -> Tensor|None   the training prediction (None: model.decode(features))
    extra_loss(run, step) -> Tensor|None   added to the pose loss of each step
    after_backward(run, step)       after loss.backward(), before optimizer.step(): gradient editing
    on_epoch_end(run)               after evaluation and the contribution assessment of the epoch
    state_dict() / load_state_dict  what a checkpoint must hold to resume the method exactly

``run`` is the training loop's ``Run`` (model, optimiser, config, epoch, contribution history, ...);
``step`` is the ``Step`` of the current batch (batch, features, prediction, loss). A method implements only
the hooks it needs. Hyper-parameters are dataclass fields of the subclass: ``from_params`` rejects unknown
names with the nearest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib


@dataclasses.dataclass
class Method:
    name = "method"

    @classmethod
    def from_params(cls, params: dict) -> "Method":
        fields = {f.name for f in dataclasses.fields(cls)}
        for key in params:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                raise ValueError(f"method {cls.name!r} has no parameter {key!r}"
                                 + (f" (did you mean {close[0]!r}?)" if close else "")
                                 + (f"; its parameters: {', '.join(sorted(fields))}" if fields else "; it takes none"))
        return cls(**params)

    def params(self) -> dict:
        return dataclasses.asdict(self)

    def setup(self, run) -> None:
        pass

    def on_epoch_start(self, run) -> None:
        pass

    def epoch_samples(self, run):
        return None

    def predict(self, run, batch: dict, features: dict):
        return None

    def extra_loss(self, run, step):
        return None

    def after_backward(self, run, step) -> None:
        pass

    def on_epoch_end(self, run) -> None:
        pass

    def modules(self) -> list:
        """Trainable modules the method owns besides the model (e.g. G-Blending's heads): the loop checks that
        they too stay identical across ranks."""
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
