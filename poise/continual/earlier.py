"""Continual configs written by earlier versions of poise, in today's keys (``upgrade``): the continual
``method`` was the recipe, ``balance`` / ``balance_params`` the balancing method, and each strategy's
parameters were flat keys (``gamma``, ``naming_threshold``, ``lam``, ``fisher``, ...). Committed runs re-read
through it (``tests/test_committed_configs.py``)."""

from __future__ import annotations

from poise.continual.config import RECIPES, SWITCH_DEFAULTS, SWITCH_KEY, recipe_target
from poise.errors import PoiseError

# flat keys of the earlier ContinualConfig: (strategy, its parameter)
MOVED = {"gamma": ("nis", "gamma"), "naming_threshold": ("nis", "threshold"), "separate": ("nis", "separate"),
         "compare_gradient_stop": ("nis", "compare_gradient_stop"), "relearn_epoch": ("relearn", "relearn_epoch"),
         "alpha_s": ("relearn", "alpha_s"), "alpha_i": ("relearn", "alpha_i"), "lam": ("ewc", "lam"),
         "beta": ("ewc", "beta"), "ewc_decay": ("ewc", "decay"), "fisher_frames": ("ewc", "fisher_frames"),
         "lambda_u": ("peers", "lambda_u"), "warmup": ("peers", "warmup")}
# keys added since today's vocabulary, with the value that means what a config without them meant
ADDED = dict(plugins=[])
# what the earlier runner trained every task with, for the loop keys its config did not have
EARLIER_LOOP = dict(method_params={}, plugins=[], lr_groups={}, lr_step=10, lr_gamma=1.0, holdout=0.0, eval_stride=1,
                    eval_every=5, rgb_window=0, train_subjects=0, epoch_frames=0, precision="float32",
                    deterministic=False, momentum=0.9, weight_decay=None)


def upgrade(values: dict, source: str = "config") -> dict:
    """``values`` in today's keys: an earlier version's continual config (``method`` = a recipe, ``balance`` =
    the balancing method, flat strategy parameters such as ``gamma`` or ``lam``) is translated; today's is
    returned as it is. A saved earlier config also gets the loop keys its runner fixed (``EARLIER_LOOP``), and
    a saved one of today's vocabulary the keys added since (``ADDED``)."""
    values = dict(values)
    saved = "balance" in values  # a whole earlier config.yaml (it wrote every key)
    if "recipe" in values and "noise" in values:  # a saved config of today's vocabulary, perhaps before a key came
        values = {**ADDED, **values}
    recipe_as_method = isinstance(values.get("method"), str) and values["method"] in RECIPES
    earlier = saved or any(k in values for k in (*MOVED, "naming", "fisher")) or \
        ("recipe" not in values and recipe_as_method)
    if not earlier:
        return values
    if "recipe" in values and recipe_as_method:
        raise PoiseError(f"{source}: 'method' is {values['method']!r}, a recipe, beside 'recipe': the balancing "
                         f"method trained in every task is 'method' (e.g. baseline), the 001 Table 2 method 'recipe'")
    if recipe_as_method:
        values["recipe"] = values.pop("method")
    for old, new in (("balance", "method"), ("balance_params", "method_params")):
        if old in values:
            if new in values:
                raise PoiseError(f"{source}: both {old!r} (an earlier poise's key) and {new!r}: keep {new!r}")
            values[new] = values.pop(old)
    recipe = values.get("recipe", "ours")
    target = recipe_target(recipe, values.get("ablate"))
    params = {k: {} for k in SWITCH_DEFAULTS}
    for old, (key, param) in MOVED.items():
        if old in values:
            params[key][param] = values.pop(old)
    naming = values.pop("naming", None)
    if naming is not None:
        params["nis"]["naming"] = params["ewc"]["naming"] = naming
    fisher = values.pop("fisher", None)
    if fisher is not None:
        params["ewc"]["per_sample"] = fisher == "per_sample"
    for key in SWITCH_DEFAULTS:
        switch = values.get(key)
        if isinstance(switch, dict):  # today's mapping beside earlier flat keys: it wins where both say something
            mapping = dict(switch)
            switch = mapping.pop(SWITCH_KEY[key], None)
            params[key].update(mapping)
        switch = target[key] if switch in (None, "") else switch
        if key == "peers" and switch == "coteaching":
            params[key] = {k: v for k, v in params[key].items() if k not in ("lambda_u", "warmup")}  # DivideMix's
        if switch in (False, "none") and (saved or not params[key]):
            values[key] = False  # a saved earlier config wrote every key; its off strategies' were defaults
        else:  # a hand-written one: parameters of a strategy that is off are the config's error to name
            values[key] = {SWITCH_KEY[key]: switch, **params[key]}
    if saved:
        values = {**EARLIER_LOOP, **values}
    return values
