"""Fusion of per-modality features into one vector for the pose head: the three strategies of papers 000/001.

All take a (B, M, d) stack of modality features in a fixed modality order, where an absent modality's
features are zeros (the papers' definition of "absent"), and return (B, out_dim).
- ``concat``: the features side by side (M * d), no parameters;
- ``mlp``: the concatenation through a two-layer MLP;
- ``attention``: one transformer encoder layer (self-attention across the M modality tokens, each token
  tagged with a learned modality embedding), then the tokens side by side.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn
from poise.choices import FUSIONS  # noqa: F401  (the names, defined once; part of this module's interface)
from poise.errors import PoiseError


class ConcatFusion(nn.Module):
    def __init__(self, n_modalities: int, dim: int):
        super().__init__()
        self.out_dim = n_modalities * dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.flatten(1)


class MLPFusion(nn.Module):
    def __init__(self, n_modalities: int, dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or 2 * dim
        self.net = nn.Sequential(nn.Linear(n_modalities * dim, hidden), nn.ReLU(), nn.Linear(hidden, dim), nn.ReLU())
        self.out_dim = dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens.flatten(1))


class AttentionFusion(nn.Module):
    def __init__(self, n_modalities: int, dim: int, heads: int = 4):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(n_modalities, dim))
        nn.init.normal_(self.embedding, std=0.02)
        self.layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True)
        self.out_dim = n_modalities * dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.layer(tokens + self.embedding).flatten(1)


def make_fusion(name: str, n_modalities: int, dim: int) -> nn.Module:
    """The fusion module called ``name`` (one of FUSIONS)."""
    classes = {"concat": ConcatFusion, "mlp": MLPFusion, "attention": AttentionFusion}
    if name not in classes:
        close = difflib.get_close_matches(str(name), FUSIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PoiseError(f"unknown fusion {name!r}{hint}: choose one of {', '.join(FUSIONS)}")
    return classes[name](n_modalities, dim)
