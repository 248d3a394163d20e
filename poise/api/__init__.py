"""poise for any multi-modal regression model: train it with any balancing method, score it, and measure what each
modality contributes (``docs/api.md`` has a worked example).

- the model contract ``MultiModalModel`` (``modalities``, ``encode``, ``decode``, ``modality_parameters``) and the
  optional capabilities some methods need (``CAPABILITIES``, each method's ``needs``), and ``MultiModalRegressor``,
  which provides them all for a model built from per-modality encoders;
- the data protocol ``RegressionData`` (``len`` and ``batch(rows)``) and ``ArrayData`` over in-memory arrays;
- ``Objective`` (a per-sample loss and the metrics), ``regression()`` for any target and ``POSE`` for MM-Fi's;
- ``fit``, ``evaluate`` and ``contributions``;
- ``ImbalanceTask``: a shipped regression task whose Bayes errors, optimal weights and Shapley values are known in
  closed form (``docs/imbalance.md``).
"""

from poise.data.arrays import ArrayData, RegressionData
from poise.api.fit import contributions, evaluate, fit
from poise.models.capabilities import CAPABILITIES, MultiModalModel
from poise.models.regressor import MultiModalRegressor
from poise.objective import POSE, Objective, regression
from poise.tasks import ImbalanceTask

__all__ = ["ArrayData", "CAPABILITIES", "ImbalanceTask", "MultiModalModel", "MultiModalRegressor", "Objective",
           "POSE", "RegressionData", "contributions", "evaluate", "fit", "regression"]
