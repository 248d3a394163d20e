"""The configuration of one ``poise continual`` run (paper 001, Setting 2).

``ContinualConfig`` is a ``TrainConfig`` (every loop key means what it means in ``poise train``: ``method`` and
``method_params`` are the Setting-1 balancing method trained inside every task) plus the stream: the protocol's
tasks, their noise, and the ``recipe`` of 001 Table 2 (ours, naive, EWC, Co-teaching, DivideMix) with its
strategies. Each strategy is one key holding its switch and its own parameters, parsed by the strategy's class
(``from_params``), so each parameter is declared once, where it is used:

    nis: {gamma: 1, separate: named, threshold: {lidar: 5.0}}      # or true / false
    relearn: {relearn_epoch: 1}                                     # or true / false
    ewc: {mode: adaptive, lam: 1e4}                                 # or a mode: none, generic, online, adaptive
    peers: {mode: dividemix, warmup: 1}                             # or a mode: none, coteaching, dividemix

Left unset, a strategy is as the recipe says; a mapping without its switch keeps the recipe's switch. A saved
``config.yaml`` holds every strategy resolved: ``false``, or its switch and all its parameters. ``upgrade`` reads the configs
of earlier poise versions (continual ``method`` = the recipe, ``balance`` = the balancing method, flat
strategy keys), so committed runs re-read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from poise.config import TrainConfig
from poise.choices import EWC_MODES, NOISE_KINDS, PEERS
from poise.errors import PoiseError

# Each method of 001 Table 2 is a recipe: the strategies it switches on. ``ablate`` switches parts of a recipe
# off again (001 Table 4); any strategy can also be set by hand.
RECIPES = {
    "ours": dict(nis=True, relearn=True, ewc="adaptive"),  # 001: NIS + re-learning + adaptive EWC
    "naive": dict(),  # fine-tuning on every sample
    "ewc": dict(ewc="online"),
    "coteaching": dict(peers="coteaching", ewc="online"),  # 001 Table 2: with EWC
    "dividemix": dict(peers="dividemix", ewc="online"),
}
SWITCH_DEFAULTS = dict(nis=False, relearn=False, ewc="none", peers="none")
MODE_KEYS = {"ewc": EWC_MODES, "peers": PEERS}  # strategies switched by a mode; nis and relearn by true / false
SWITCH_KEY = {"nis": "on", "relearn": "on", "ewc": "mode", "peers": "mode"}  # the switch inside a mapping
# parts of a recipe that ``ablate`` can switch off (001 Table 4): ``adaptive_ewc`` falls back to the generic
# Fisher (Eq. 7) after every task, ``ewc`` drops the EWC penalty altogether (Table 4's rows without a-EWC)
ABLATIONS = ("nis", "relearn", "adaptive_ewc", "ewc")
NOISE = (*NOISE_KINDS, "none")  # the noise kinds, and a clean stream


def strategy_class(key: str, switch):
    """The class whose ``from_params`` parses strategy ``key``'s parameters when switched to ``switch``."""
    from poise import methods
    from poise.continual.ewc import EWC
    from poise.continual.nis import NIS
    from poise.continual.peers import CoTeaching, DivideMix

    return {"nis": NIS, "relearn": type(methods.get("relearn")), "ewc": EWC,
            "peers": {"coteaching": CoTeaching, "dividemix": DivideMix}.get(switch)}[key]


def switch_of(key: str, value) -> bool | str:
    """A resolved strategy value's switch: on / off, or the mode (``ewc``, ``peers``)."""
    if key in MODE_KEYS:
        return value["mode"] if value else "none"
    return bool(value is not False and value is not None)


@dataclass
class ContinualConfig(TrainConfig):
    # the loop keys whose stream defaults differ from poise train's (a task is short and is learnt on the CPU)
    data: str = "data/mmfi-continual"  # an MM-Fi root with every action of the protocol (`poise simulate --preset continual`)
    split: str = "S2"  # 001 uses the cross-subject split for Setting 2
    epochs: int = 5  # training epochs per task
    batch_size: int = 32
    optimizer: str = "adam"  # adam, sgd, or auto (the balancing method's reference optimiser); new for each task
    lr_gamma: float = 1.0  # a constant learning rate within a task (each task builds a fresh optimiser)
    dim: int = 64
    lidar_points: int = 128
    train_stride: int = 2  # every k-th training frame of a sequence (the test split always uses every frame)
    name: str = ""  # run directory name (default: continual-recipe-protocol-noise-ratio-seed)
    # the stream
    recipe: str = "ours"  # the strategies of a 001 Table 2 method: ours, naive, ewc, coteaching, dividemix (RECIPES)
    ablate: list = field(default_factory=list)  # parts of the recipe switched off: nis, relearn, adaptive_ewc, ewc
    tasks: int = 0  # learn only the first N tasks of the stream (0: all)
    noise: str = "raw"  # raw, unaligned, unaligned_far, or none (a clean stream)
    noisy_modality: str = ""  # corrupt this modality in every later task ("": one drawn per task from the seed)
    ratio: float = 0.2  # fraction of each later task's samples whose one modality is corrupted (001: 0.2, 0.4)
    reference_holdout: float = 0.1  # fraction of the first task's training sequences no task trains on (every
    # method, so all learn the same stream): the clean frames NIS names the noisy modality against
    # the strategies (unset: as the recipe says); each a switch or a mapping of its class's parameters
    nis: bool | dict | None = None  # noise identification and separation (poise.continual.nis.NIS)
    relearn: bool | dict | None = None  # re-learning inside each task (001 Eq. 4; poise.methods.relearn.Relearn)
    ewc: str | dict | None = None  # the EWC penalty and its Fisher (poise.continual.ewc.EWC)
    peers: str | dict | None = None  # a second network and its noisy-label rule (poise.continual.peers)

    def __post_init__(self):
        super().__post_init__()
        if self.holdout:
            raise PoiseError(f"config key 'holdout' is {self.holdout!r}, but a continual task holds no training "
                             f"sequences out; the stream's held-back frames are 'reference_holdout'")
        for key, why in (("train_subjects", "a stream trains each task on every training subject of the split"),
                         ("rgb_window", "the noise kinds corrupt single RGB frames, not a temporal window")):
            if getattr(self, key):
                raise PoiseError(f"config key {key!r} is {getattr(self, key)!r}, but {why}: leave it at 0 in a "
                                 f"continual config (poise train takes it)")
        if self.tasks < 0:
            raise PoiseError(f"config key 'tasks' must be an integer >= 0 (0: the whole stream), got {self.tasks!r}")
        if isinstance(self.ablate, str):
            self.ablate = ablate_list(self.ablate)
        if self.ablate is not None and (not isinstance(self.ablate, (list, tuple))
                                        or not all(isinstance(a, str) for a in self.ablate)):
            raise PoiseError(f"config key 'ablate' must be a list of {', '.join(ABLATIONS)}, got {self.ablate!r}")
        self.ablate = sorted(set(self.ablate or []))
        choices = {"recipe": tuple(RECIPES), "noise": NOISE, "protocol": ("P1", "P2")}
        for key, valid in choices.items():
            if getattr(self, key) not in valid:
                raise PoiseError(f"config key {key!r} is {getattr(self, key)!r}: choose one of {', '.join(valid)}")
        unknown = [a for a in self.ablate if a not in ABLATIONS]
        if unknown:
            raise PoiseError(f"config key 'ablate' names {unknown}: choose from {', '.join(ABLATIONS)}")
        if self.epochs >= 100:  # a task's phases draw the data of epochs 1000 t + 100 phase + e
            raise PoiseError(f"config key 'epochs' must be below 100 (epochs per task), got {self.epochs}")
        if self.noise != "none" and not 0.0 < float(self.ratio) < 1.0:
            raise PoiseError(f"config key 'ratio' must lie in (0, 1), got {self.ratio!r} (001 uses 0.2 and 0.4)")
        if self.noisy_modality and self.noisy_modality not in self.modalities:
            raise PoiseError(f"config key 'noisy_modality' is {self.noisy_modality!r}: choose one of "
                             f"{', '.join(self.modalities)} (or leave it empty to draw one per task)")
        if len(self.modalities) < 2:
            raise PoiseError(f"config key 'modalities' must name at least two modalities; got {self.modalities}")
        if not 0.0 <= float(self.reference_holdout) < 1.0:
            raise PoiseError(f"config key 'reference_holdout' must lie in [0, 1) (a fraction of the first task's "
                             f"training sequences), got {self.reference_holdout!r}")
        self.resolve_strategies()
        if self.nis and not self.reference_holdout:
            raise PoiseError("config key 'reference_holdout' is 0, but NIS names the noisy modality against held-back "
                             "frames of the first task: set it above 0 (default 0.1), or switch NIS off")
        self.check_against_the_stream()
        if self.lr is None:
            from poise.optim import DEFAULTS

            self.lr = DEFAULTS[self.optimizer_name]["lr"]

    def check_against_the_stream(self) -> None:
        """What the strategies' and the balancing method's settings must agree with: epochs, modalities."""
        from poise import methods

        unknown = sorted(set(self.nis["threshold"]) - set(self.modalities)) if self.nis else []
        if unknown:
            raise PoiseError(f"config key 'nis' threshold names {unknown}: use the run's modalities, "
                             f"{', '.join(self.modalities)}")
        if self.relearn:
            try:
                strategy_class("relearn", True).from_params(parameters("relearn", self.relearn)).check_epochs(
                    self.epochs)
            except PoiseError as err:
                raise PoiseError(f"config key 'relearn': {err}; or ablate relearn") from None
        if self.peers and self.peers["mode"] == "dividemix" and self.peers["warmup"] >= self.epochs:
            raise PoiseError(f"config key 'peers' warmup ({self.peers['warmup']}) must lie in 0 .. epochs - 1 = "
                             f"{self.epochs - 1}: DivideMix needs an epoch after its warm-up to co-divide in")
        if methods.get(self.method, **self.method_params).needs_holdout:
            raise PoiseError(f"config key 'method' is {self.method!r}, which needs held-out training sequences; a "
                             f"continual task holds none out: choose another balancing method")
        if self.method == "relearn" and self.relearn:
            raise PoiseError("config key 'method' is 'relearn' and re-learning is already on (the recipe's 'relearn' "
                             "strategy): set method: baseline, or relearn: false")

    @property
    def optimizer_name(self) -> str:
        """The optimiser each task builds: ``optimizer``, or for ``auto`` the balancing method's reference one."""
        if self.optimizer != "auto":
            return self.optimizer
        from poise import methods

        return methods.get(self.method, **self.method_params).reference_optimizer

    def recipe_switches(self) -> dict:
        """The strategies' switches as the recipe, with its ablated parts switched off, sets them."""
        return recipe_target(self.recipe, self.ablate)

    def resolve_strategies(self) -> None:
        """Each strategy key as ``false`` or its full parameters (its switch included for ``ewc`` / ``peers``):
        the recipe's switch unless one is given (which may not contradict ``ablate``), the given parameters
        parsed by the strategy's own class."""
        recipe = {**SWITCH_DEFAULTS, **RECIPES[self.recipe]}
        has = {"nis": recipe["nis"], "relearn": recipe["relearn"], "ewc": recipe["ewc"] != "none",
               "adaptive_ewc": recipe["ewc"] == "adaptive"}
        absent = [a for a in self.ablate if not has[a]]
        if absent:
            raise PoiseError(f"config key 'ablate' switches off {absent}, which recipe {self.recipe!r} does not "
                             f"have; its parts: {', '.join(k for k, on in has.items() if on) or 'none'} (to change "
                             f"a strategy itself, set it: nis, relearn, ewc, peers)")
        target = self.recipe_switches()
        for key in SWITCH_DEFAULTS:
            switch, params = given(key, getattr(self, key), target[key])
            if switch in (False, "none") and params:
                raise PoiseError(f"config key {key!r} sets parameters ({', '.join(map(str, params))}) of a strategy "
                                 f"that is off (recipe {self.recipe!r}" + (", ablated" if key in self.ablate else "")
                                 + ")" + (f": give its mode, one of {', '.join(MODE_KEYS[key][1:])}" if key in
                                          MODE_KEYS else ": switch it on with on: true, or drop them"))
            for part in self.ablate:
                if (part == key or (part == "adaptive_ewc" and key == "ewc")) and switch != target[key]:
                    raise PoiseError(f"config keys 'ablate' ({part}) and {key!r} ({getattr(self, key)!r}) say "
                                     f"different things about {key}: set one of them")
            setattr(self, key, self.parsed(key, switch, params))

    def parsed(self, key: str, switch, params: dict):
        """Strategy ``key`` switched to ``switch`` with ``params``: False, or its class's full parameters."""
        if switch in (False, "none"):
            return False
        try:
            strategy = strategy_class(key, switch).from_params({**({"mode": switch} if key == "ewc" else {}), **params})
        except (PoiseError, ValueError, TypeError) as err:
            raise PoiseError(f"config key {key!r}: {err}") from None
        return {SWITCH_KEY[key]: switch, **strategy.params()}

    def custom_switches(self) -> dict:
        """The strategies whose switch differs from the recipe's with its ablations (set by hand)."""
        target = self.recipe_switches()
        return {k: switch_of(k, getattr(self, k)) for k in SWITCH_DEFAULTS
                if switch_of(k, getattr(self, k)) != target[k]}

    def to_dict(self) -> dict:
        """The stream's keys first, then the loop's (a saved config.yaml reads top-down)."""
        values = super().to_dict()
        own = [f.name for f in dataclasses.fields(self) if f.name not in TRAIN_KEYS]
        return {**{k: values[k] for k in own}, **{k: v for k, v in values.items() if k not in own}}

    @classmethod
    def overridden(cls, values: dict, overrides: dict) -> dict:
        """A file's ``values`` with ``overrides`` taking precedence; a strategy set in both keeps the file's
        parameters under the override's (``--nis separate=always`` keeps the file's threshold; ``--ewc online``
        keeps its ``lam``), unless the override switches it off."""
        merged = {**values, **overrides}
        for key in SWITCH_DEFAULTS:
            mine, given = values.get(key), overrides.get(key)
            if not isinstance(mine, dict) or given is None or given in (False, "none"):
                continue
            merged[key] = {**mine, **given} if isinstance(given, dict) else {**mine, SWITCH_KEY[key]: given}
        return merged

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "ContinualConfig":
        from poise.continual.earlier import upgrade

        return super().from_dict(upgrade(values, source), source)

    @property
    def run_name(self) -> str:
        if self.name:
            return self.name
        ablated_parts = "".join(f"-no_{a}" for a in self.ablate)
        noise = "clean" if self.noise == "none" else f"{self.noise}{self.ratio:g}" + (
            f"-{self.noisy_modality}" if self.noisy_modality else "")  # a fixed noisy modality: its own stream
        # strategies switched by hand against the recipe, then the balancing method, then NIS's split rule: such a
        # run gets its own folder (the order of the names before this vocabulary: committed runs keep theirs)
        custom = "".join(f"-{k}_{v}".lower() for k, v in self.custom_switches().items())
        custom += "" if self.method == "baseline" else f"-{self.method}"
        custom += f"-separate_{self.nis['separate']}" if self.nis and self.nis["separate"] != "named" else ""
        return f"continual-{self.recipe}{ablated_parts}{custom}-{self.protocol}-{noise}-seed{self.seed}"


def given(key: str, value, default) -> tuple:
    """(switch, parameters) that the value ``value`` of strategy key ``key`` sets; the switch ``default`` (the
    recipe's) when it sets none."""
    modes = MODE_KEYS.get(key)
    params = {}
    if value is None:
        return default, params
    if isinstance(value, dict):
        params = dict(value)
        value = params.pop(SWITCH_KEY[key], default)
    if modes:
        value = "none" if value is False else value
        if value not in modes:
            raise PoiseError(f"config key {key!r}: the mode is {value!r}: choose one of {', '.join(modes)} (or a "
                             f"mapping with 'mode' and the strategy's parameters)")
        return value, params
    if not isinstance(value, bool):
        raise PoiseError(f"config key {key!r} is {value!r}: true, false, or a mapping of its parameters")
    return value, params


def parameters(key: str, value: dict) -> dict:
    """A resolved strategy value as its class's ``from_params`` takes it (the switch left out; EWC's mode is its
    own parameter)."""
    return {k: v for k, v in value.items() if k != SWITCH_KEY[key] or key == "ewc"}


def tuned(values: dict, *params: dict) -> dict:
    """ContinualConfig ``values`` with each of ``params``' strategy parameters ({strategy: {name: value}})
    merged into the strategies that are on in this run (by its own switch, else its recipe's), under what the
    run sets itself; for the others, which are off, they do not apply. How a bench shares, e.g., re-learning's
    epoch among recipes."""
    values = dict(values)
    target = recipe_target(values.get("recipe", "ours"), values.get("ablate"))
    for extra in params:
        for key, more in extra.items():
            switch, mine = given(key, values.get(key), target[key])
            if switch not in (False, "none"):
                values[key] = {**more, **mine, SWITCH_KEY[key]: switch}  # the run's own setting wins
    return values


TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)}


def ablate_list(ablate) -> list:
    """``ablate`` as a list of part names (a YAML list, or one comma-separated string)."""
    if isinstance(ablate, str):
        return [a.strip() for a in ablate.split(",") if a.strip()]
    return list(ablate or [])


def recipe_target(recipe, ablate) -> dict:
    """The strategies' switches as ``recipe`` (a RECIPES name; an unknown one switches nothing on, its error
    comes from the config) with the parts in ``ablate`` switched off."""
    known = RECIPES.get(recipe, {}) if isinstance(recipe, str) else {}
    return ablated({**SWITCH_DEFAULTS, **known}, ablate_list(ablate))


def ablated(switches: dict, ablate) -> dict:
    """``switches`` (nis, relearn, ewc, peers) with the parts in ``ablate`` switched off."""
    out = {k: switches[k] for k in SWITCH_DEFAULTS}
    if "nis" in ablate:
        out["nis"] = False
    if "relearn" in ablate:
        out["relearn"] = False
    if "ewc" in ablate:
        out["ewc"] = "none"
    elif "adaptive_ewc" in ablate and out["ewc"] == "adaptive":
        out["ewc"] = "generic"
    return out
