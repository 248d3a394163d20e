"""A multi-modal regression model split in two, so that sub-models cost no extra encoder passes: the model
every balancing method in poise trains, for any modalities and any target shape (``PoseModel`` is its MM-Fi
form).

- ``encode(batch) -> {modality: (B, d) features}`` runs each modality's encoder once (on ``batch[modality]``);
- ``decode(features, present) -> (B, *out_shape)`` fuses and regresses, with every modality not in ``present``
  absent. ``present`` is a set of modality names for the whole batch or a (B, M) 0/1 mask, one row per sample
  (missing-modality training draws a combination per sample).

What "absent" means is part of the model, so that training, evaluation and ``poise robust`` agree:
- ``absent = "zero"`` (default): the modality's features are zeros (the papers' definition);
- ``absent = "rescale"``: zeros, and the present features multiplied by M / |present| (the regression-consistent
  form for a concat fusion: a linear head's output on any subset is then on the scale of the full one);
- a ``restorer`` (``modality_distill``) replaces the absent modalities' features by ones it restores from the
  present modalities (``poise.methods.modality_distill``).
An optional ``embedding`` between the fusion and the head (DMRNet's probabilistic embedding) is part of the
model for the same reason: evaluation reads through it.

Shapley values, unimodal outputs and missing-modality evaluation call ``decode`` on cached features, so the
encoders run once per step, never 2^M times. ``modality_parameters`` maps each modality to its encoder's
parameters explicitly ("fusion" holds the fusion module and the head), so no method ever matches substrings
of parameter names.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from poise.models.fusion import make_fusion
from poise.errors import PoiseError

SHARED = "fusion"  # the parameter group of everything that is not a modality encoder
ABSENT = ("zero", "rescale")  # what an absent modality's features become (module docstring)


class MultiModalRegressor(nn.Module):
    """``encoders`` ({modality: module mapping ``batch[modality]`` to (B, ``dim``) features}), a fusion module
    (``concat``, ``mlp`` or ``attention``: ``poise.models.fusion``) and a linear head predicting a target of
    ``out_shape`` (per sample: ``()`` for a scalar, ``4`` or ``(17, 3)``) as an offset from ``offset`` (the
    training targets' mean: ``set_offset``)."""

    def __init__(self, encoders: dict[str, nn.Module], dim: int, out_shape=(), fusion: str = "concat"):
        super().__init__()
        if not encoders or not all(isinstance(m, str) and m for m in encoders):
            raise PoiseError(f"encoders must map modality names to modules, got {list(encoders)!r}")
        if not all(isinstance(e, nn.Module) for e in encoders.values()):
            raise PoiseError("every encoder must be a torch.nn.Module mapping its modality's input to (B, dim) "
                             "features")
        if int(dim) < 1:
            raise PoiseError(f"dim (each encoder's feature size) must be a positive integer, got {dim!r}")
        self.modalities = tuple(encoders)
        self.dim = int(dim)
        self.out_shape = tuple(int(n) for n in ((out_shape,) if isinstance(out_shape, int) else out_shape))
        self.encoders = nn.ModuleDict({m: encoders[m] for m in self.modalities})
        self.fusion = make_fusion(fusion, len(self.modalities), self.dim)
        self.head = nn.Linear(self.fusion.out_dim, math.prod(self.out_shape))
        self.register_buffer("offset", torch.zeros(self.out_shape))
        # a fixed per-modality factor on the features before fusion (1 unless a method such as ARM sets it):
        # part of the model, so training, evaluation and sub-model decodes all see the same features
        self.register_buffer("modality_gain", torch.ones(len(self.modalities)))
        self.absent = "zero"
        # ``absent`` as an index into ABSENT, saved with the weights: whoever loads the model reads it as trained
        self.register_buffer("absent_index", torch.zeros((), dtype=torch.long))
        self.register_module("embedding", None)  # fusion output -> head input (None: identity)
        self.register_module("restorer", None)  # (tokens, mask) -> tokens with the absent ones restored
        self._masks: dict = {}  # (present names, device) -> mask, built once: no host-to-device copy per decode

    def set_absent(self, absent: str) -> None:
        """How an absent modality is represented: one of ``ABSENT`` (module docstring)."""
        if absent not in ABSENT:
            raise PoiseError(f"absent={absent!r}: choose one of {', '.join(ABSENT)}")
        self.absent = absent
        self.absent_index.fill_(ABSENT.index(absent))

    def install(self, name: str, module: nn.Module) -> None:
        """Put a method's model part in place (``"embedding"`` or ``"restorer"``), on the model's device; its
        parameters join the ``"fusion"`` group and the checkpoint."""
        if name not in ("embedding", "restorer"):
            raise ValueError(f"install: {name!r} is not a model part; choose embedding or restorer")
        existing = getattr(self, name)
        if existing is not None:
            if type(existing) is type(module):
                return  # set up again on the same model (each task of a stream): the trained part stays
            raise PoiseError(f"the model already has a {name} ({type(existing).__name__}); one method per model part")
        setattr(self, name, module.to(self.offset.device))

    def set_offset(self, offset) -> None:
        """Centre the head's output on ``offset`` (``out_shape``): the training targets' mean, typically."""
        offset = torch.as_tensor(offset, dtype=self.offset.dtype)
        if offset.numel() != self.offset.numel():
            raise PoiseError(f"an offset (a mean target) of shape {tuple(offset.shape)} does not fit this model's "
                             f"out_shape {self.out_shape}; build the model with out_shape = the target's shape per "
                             f"sample")
        self.offset.copy_(offset.reshape(self.out_shape))

    def encode(self, batch: dict) -> dict[str, torch.Tensor]:
        """{modality: (B, dim) features}: each encoder on ``batch[modality]``."""
        missing = [m for m in self.modalities if m not in batch]
        if missing:
            raise KeyError(f"the batch has no {missing} (it holds {sorted(batch)}); a batch maps each modality "
                           f"name to its input and 'gt' to the target")
        return {m: self.encoders[m](batch[m]) for m in self.modalities}

    def mask(self, present, batch_size: int, device) -> torch.Tensor:
        """``present`` as a (B, M) or (1, M) float 0/1 mask in the model's modality order."""
        if present is None:
            return torch.ones(1, len(self.modalities), device=device)
        if torch.is_tensor(present):
            if present.shape != (batch_size, len(self.modalities)):
                raise ValueError(f"a per-sample present mask has shape {tuple(present.shape)}; expected "
                                 f"({batch_size}, {len(self.modalities)}): (batch, modalities {list(self.modalities)})")
            return present.to(device=device, dtype=torch.float32)
        present = tuple(present)
        key = (present, torch.device(device))
        if key not in self._masks:
            unknown = [m for m in present if m not in self.modalities]
            if unknown:
                raise ValueError(f"present={list(present)} names {unknown}, which this model has no encoder for "
                                 f"(its modalities: {list(self.modalities)})")
            with torch.inference_mode(False):  # built under evaluate's inference mode, it must still serve training
                self._masks[key] = torch.tensor([[float(m in present) for m in self.modalities]], device=device)
        return self._masks[key]

    def tokens(self, features: dict[str, torch.Tensor], present=None) -> torch.Tensor:
        """The fusion's input (B, M, d): each present modality's features (times its gain), absent ones as the
        model defines them (module docstring). ``features`` may omit absent modalities when ``present`` names
        the present ones. With names (or None) nothing here waits for the device: what is present is known on
        the host."""
        reference = next(iter(features.values()))
        per_sample = torch.is_tensor(present)
        present = present if present is None or per_sample else tuple(present)  # a generator is read once
        mask = self.mask(present, len(reference), reference.device)
        wanted = self.modalities if present is None or per_sample else [m for m in self.modalities if m in present]
        missing = [m for m in wanted if m not in features]
        if missing:
            raise ValueError(f"present modalities {missing} have no features" + (
                " (a per-sample mask needs every modality's features)" if per_sample else ""))
        tokens = torch.stack([features[m] * self.modality_gain[i] if m in features else torch.zeros_like(reference)
                              for i, m in enumerate(self.modalities)], dim=1)
        tokens = torch.where(mask[..., None] > 0, tokens, torch.zeros_like(tokens))  # an absent NaN stays out
        if self.absent == "rescale":
            tokens = tokens * (len(self.modalities) / mask.sum(1).clamp_min(1))[:, None, None]
        # with a per-sample mask the restorer always runs (asking whether anything is absent would wait for the
        # device); where nothing is, torch.where keeps every token as it is
        if self.restorer is not None and (per_sample or len(wanted) < len(self.modalities)):
            tokens = torch.where(mask[..., None] > 0, tokens, self.restorer(tokens, mask))
        return tokens

    def fuse(self, features: dict[str, torch.Tensor], present=None) -> torch.Tensor:
        """The fusion module's output (B, out_dim) for ``present``: the fused representation."""
        return self.fusion(self.tokens(features, present))

    def readout(self, fused: torch.Tensor) -> torch.Tensor:
        """Predictions (B, *out_shape) from a fused representation, through the embedding (if any) and the head."""
        return self.regress(fused if self.embedding is None else self.embedding(fused))

    def regress(self, representation: torch.Tensor) -> torch.Tensor:
        """The head alone: predictions (B, *out_shape) from the representation it reads (DMRNet samples one)."""
        return self.offset + self.head(representation).view(-1, *self.out_shape)

    def decode(self, features: dict[str, torch.Tensor], present=None) -> torch.Tensor:
        """Predictions (B, *out_shape) from ``features`` with the modalities in ``present`` (default: all; names
        for the batch, or a (B, M) 0/1 mask per sample); the others absent as the model defines them."""
        return self.readout(self.fuse(features, present))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before ``modality_gain`` existed hold no gains: theirs were all 1; before
        # ``absent`` existed, every model's absent modalities were zeros
        state_dict.setdefault(prefix + "modality_gain", torch.ones_like(self.modality_gain))
        state_dict.setdefault(prefix + "absent_index", torch.zeros_like(self.absent_index))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.absent = ABSENT[int(self.absent_index)]

    def forward(self, batch: dict, present=None) -> torch.Tensor:
        return self.decode(self.encode(batch), present)

    def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        """{modality: its encoder's parameters, "fusion": those of the fusion, the head and any embedding or
        restorer}."""
        groups = {m: list(self.encoders[m].parameters()) for m in self.modalities}
        groups[SHARED] = [p for part in (self.fusion, self.head, self.embedding, self.restorer) if part is not None
                          for p in part.parameters()]
        return groups
