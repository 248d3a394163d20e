"""What a model must provide for poise to train it, and what some methods need beyond that.

Every model poise trains follows ``MultiModalModel`` (a ``typing.Protocol``, met by a ``torch.nn.Module``): its
``modalities``, ``encode`` (each modality's encoder once), ``decode`` (fuse and predict from features, any subset
of modalities present), ``modality_parameters`` (each encoder's parameters by modality, the rest under
``"fusion"``) and ``forward(batch) = decode(encode(batch))``. That is all the
loop, the Shapley-Pearson assessment and most methods use.

Some methods reach further into the model; each names what it needs with ``require``, which raises an error
naming the capability, the attributes that provide it and what to do. ``poise.MultiModalRegressor`` (and the
pose model built on it) provides every capability; a model of one's own needs only those of the methods it is
trained with (``docs/api.md`` lists them per method).
"""

from __future__ import annotations

import typing

import torch

from poise.errors import PoiseError


@typing.runtime_checkable
class MultiModalModel(typing.Protocol):
    """The model contract: the four members the training loop and the contribution code use."""

    modalities: tuple  # the modality names, in the model's fixed order

    def encode(self, batch: dict) -> dict:
        """{modality: (B, ...) features}, each modality's encoder run once on the batch."""
        ...

    def decode(self, features: dict, present=None) -> torch.Tensor:
        """The prediction (B, *target shape) from ``features`` with only the modalities ``present`` (None: all;
        a tuple of names for the batch, or a (B, M) 0/1 float mask per sample); absent ones must not change it.
        With names, ``features`` may omit the absent modalities."""
        ...

    def modality_parameters(self) -> dict:
        """{modality: its encoder's parameters, "fusion": every other trained parameter}."""
        ...

    def forward(self, batch: dict) -> torch.Tensor:
        """``decode(encode(batch))``: the prediction with every modality present (evaluation calls the model)."""
        ...


# name -> (attributes that provide it, what they are)
CAPABILITIES = {
    "encoders": (("encoders",), "model.encoders: {modality: encoder module}, a registered submodule named "
                                "'encoders', so that each modality's parameters are named encoders.<modality>.* "
                                "(frozen or penalised by modality)"),
    "feature size": (("dim",), "model.dim: the size of every modality's (B, dim) features"),
    "output shape": (("out_shape", "offset"), "model.out_shape (the target's shape per sample) and model.offset "
                                              "(a buffer of that shape added to every head's output: the mean target)"),
    "absent handling": (("set_absent",), "model.set_absent('zero' | 'rescale'): how an absent modality's features "
                                         "are represented in decode"),
    "stages": (("tokens", "fusion", "fuse", "head", "regress", "readout"),
               "decode in its stages: tokens(features, present) -> (B, M, dim) fusion input, the fusion module "
               "(with out_dim, its output size) and fuse(features, present) -> its output, the head module, "
               "regress(representation) -> prediction "
               "and readout(fused) -> prediction (through any embedding)"),
    "installable parts": (("install", "embedding", "restorer"),
                          "model.install(name, module) for an 'embedding' between fusion and head or a 'restorer' "
                          "of absent features, each then used by decode"),
    "modality gain": (("modality_gain",), "model.modality_gain: a (M,) buffer multiplying each modality's features "
                                          "before fusion"),
}


def require(model, user: str, *capabilities: str) -> None:
    """Raise a ``PoiseError`` naming each capability in ``capabilities`` that ``model`` lacks, what provides it and
    what to do; ``user`` says who needs it (``"method 'awc'"``). A name that is not a capability is a
    programming error here."""
    unknown = [c for c in capabilities if c not in CAPABILITIES]
    if unknown:
        raise ValueError(f"unknown capabilities {unknown}; choose from {', '.join(CAPABILITIES)}")
    lacking = [c for c in capabilities if not all(hasattr(model, a) for a in CAPABILITIES[c][0])]
    if lacking:
        what = "; ".join(f"'{c}' ({CAPABILITIES[c][1]})" for c in lacking)
        raise PoiseError(f"{user} needs the model capability {what}, which {type(model).__name__} does not "
                         f"provide. Add it to the model, or build the model as poise.MultiModalRegressor, which "
                         f"provides every capability (docs/api.md, 'Capabilities')")
