"""Regression tasks shipped with poise (no download), for tests, examples and fast benches whose answer is known.

- ``ImbalanceTask`` (``poise.tasks.imbalance``, ``docs/imbalance.md``): modalities with set noise and set
  information content, whose Bayes errors per modality subset, inverse-variance weights and Shapley values are
  known in closed form.
"""

from poise.tasks.imbalance import ImbalanceTask

__all__ = ["ImbalanceTask"]
