"""poise: balanced multi-modal learning for regression (four-modality 3D human pose estimation, MM-Fi format).

The Python API (``poise.api``, ``docs/api.md``) is offered here too: ``poise.fit``, ``poise.MultiModalRegressor``,
``poise.ArrayData`` and the rest of ``poise.api.__all__``, each imported when first used, so that ``import poise``
(and ``poise --help``) stays free of torch.
"""

__version__ = "0.1.0"

API = ("ArrayData", "CAPABILITIES", "ImbalanceTask", "MultiModalModel", "MultiModalRegressor", "Objective", "POSE",
       "RegressionData", "contributions", "evaluate", "fit", "regression")


def __getattr__(name: str):
    if name in API:
        import poise.api

        return getattr(poise.api, name)
    if name == "methods":  # the registry (poise.methods.register, .get, .available) as an attribute too
        import poise.methods

        return poise.methods
    raise AttributeError(f"module 'poise' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *API})
