"""``baseline``: naive joint training, the reference every balancing method is compared with (000 and 001,
"joint training" rows). The pose loss alone; train it on a subset of modalities (``modalities`` in the config)
for the unimodal and pairwise rows of 001 Table 3."""

from __future__ import annotations

import dataclasses

from poise.methods import register
from poise.methods.base import Method


@register("baseline")
@dataclasses.dataclass
class Baseline(Method):
    smoke_fusion = "attention"
