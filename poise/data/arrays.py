"""What poise reads a user's data through: the ``RegressionData`` protocol, and ``ArrayData``, which implements it
over in-memory arrays.

The training loop draws frames by index (a method re-samples them, weighs them, or splits them into clean and
noisy), so a dataset is indexable rather than a stream of batches: ``batch(rows)`` returns the frames ``rows``
as one batch dict, ``{modality: (len(rows), ...) tensor, "gt": (len(rows), ...) target}``. ``MMFiDataset`` is one
such dataset; ``ArrayData`` is another; a map-style ``torch.utils.data.Dataset`` of dict items becomes one with
``ArrayData.from_items``.
"""

from __future__ import annotations

import typing

import numpy as np
import torch

from poise.errors import PoiseError

TARGET = "gt"  # the batch key of the regression target, as in the MM-Fi batches


@typing.runtime_checkable
class RegressionData(typing.Protocol):
    """A dataset the loop can train on: its length, and any set of frames as one batch. Optionally also
    ``set_epoch(epoch)``, called before each training epoch, for data that draws something anew per epoch (the
    MM-Fi reader's point samples), and ``groups`` (one label per frame) for ``fit(holdout=...)``."""

    def __len__(self) -> int: ...

    def batch(self, rows) -> dict:
        """{modality: tensor, "gt": target tensor} of the frames ``rows`` (an int64 numpy array), in order."""
        ...


class ArrayData:
    """``inputs`` ({modality: array of N frames}) and ``target`` (N, ...) as a ``RegressionData``; ``groups``
    (N,) optionally says which frames belong together (a recording, a subject), so that held-out validation
    frames (``fit(holdout=...)``) are whole groups, never near-duplicates of trained ones. Every array is
    checked here: N frames each, finite values."""

    def __init__(self, inputs: dict, target, groups=None):
        if not isinstance(inputs, dict) or not inputs:
            raise PoiseError("inputs must be a non-empty dict {modality name: array of frames}")
        self.target = self._tensor(target, "target").float()  # a regression target: integers too become floats
        n = len(self.target)
        if not n:
            raise PoiseError("target holds no frames; pass at least one")
        self.inputs = {}
        for name, values in inputs.items():
            if not isinstance(name, str) or not name or name == TARGET:
                raise PoiseError(f"modality name {name!r}: use a non-empty string other than {TARGET!r}")
            self.inputs[name] = self._tensor(values, f"inputs[{name!r}]")
            if len(self.inputs[name]) != n:
                raise PoiseError(f"inputs[{name!r}] has {len(self.inputs[name])} frames and target {n}; every "
                                 f"array needs one entry per frame")
        self.groups = None if groups is None else np.asarray(groups)
        if self.groups is not None and self.groups.shape != (n,):
            raise PoiseError(f"groups has shape {self.groups.shape}; expected ({n},): one group label per frame")

    @staticmethod
    def _tensor(values, what: str) -> torch.Tensor:
        # on the host: the loop copies each batch to the device (from pinned memory on a GPU)
        tensor = torch.as_tensor(np.asarray(values)) if not torch.is_tensor(values) else values.detach().cpu()
        if tensor.ndim < 1:
            raise PoiseError(f"{what} is a scalar; expected an array with one entry per frame")
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise PoiseError(f"{what} holds {bad} non-finite values (NaN or inf); clean or impute them first")
            tensor = tensor.float()
        return tensor

    @classmethod
    def from_items(cls, dataset, groups=None) -> "ArrayData":
        """A map-style dataset whose item ``i`` is a dict {modality: tensor, "gt": target}, read once into
        memory."""
        items = [dataset[i] for i in range(len(dataset))]
        if not items or not all(isinstance(item, dict) and TARGET in item for item in items):
            raise PoiseError(f"from_items needs a non-empty dataset of dict items, each with a {TARGET!r} target")
        names = [k for k in items[0] if k != TARGET]
        return cls({m: torch.stack([torch.as_tensor(item[m]) for item in items]) for m in names},
                   torch.stack([torch.as_tensor(item[TARGET]) for item in items]), groups)

    @property
    def modalities(self) -> tuple:
        return tuple(self.inputs)

    def __len__(self) -> int:
        return len(self.target)

    def batch(self, rows) -> dict:
        index = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        return {**{m: v[index] for m, v in self.inputs.items()}, TARGET: self.target[index], "index": index}
