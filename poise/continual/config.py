"""The configuration of one ``poise continual`` run (paper 001, Setting 2): a typed dataclass, YAML round-trip,
unknown keys named (``poise.config.ConfigFile``)."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field

from poise.config import ON_ERROR, ConfigFile, check_run_name, modality_list, positive_ints
from poise.continual.ewc import DEFAULT_BETA, DEFAULT_LAMBDA
from poise.continual.nis import MODES, SEPARATE
from poise.continual.noise import KINDS
from poise.data import layout
from poise.errors import PoiseError
from poise.optim import CHOICES, DEFAULTS
from poise.values import typed

# Each method of 001 Table 2 is a recipe: the switches it turns on (``ContinualConfig`` keys). ``ablate`` turns
# parts of a recipe off again (001 Table 4); any switch can also be set by hand.
RECIPES = {
    "ours": dict(nis=True, relearn=True, ewc="adaptive"),  # 001: NIS + re-learning + adaptive EWC
    "naive": dict(),  # fine-tuning on every sample
    "ewc": dict(ewc="online"),
    "coteaching": dict(peers="coteaching", ewc="online"),  # 001 Table 2: with EWC
    "dividemix": dict(peers="dividemix", ewc="online"),
}
METHODS = tuple(RECIPES)
SWITCH_DEFAULTS = dict(nis=False, relearn=False, ewc="none", peers="none")
EWC_MODES = ("none", "generic", "online", "adaptive")  # poise.continual.ewc
PEERS = ("none", "coteaching", "dividemix")  # poise.continual.peers
# parts of a recipe that ``ablate`` can switch off (001 Table 4): ``adaptive_ewc`` falls back to the generic
# Fisher (Eq. 7) after every task, ``ewc`` drops the EWC penalty altogether (Table 4's rows without a-EWC)
ABLATIONS = ("nis", "relearn", "adaptive_ewc", "ewc")
FISHERS = ("per_sample", "batched")


@dataclass
class ContinualConfig(ConfigFile):
    data: str = "data/mmfi-continual"  # an MM-Fi root with every action of the protocol (`poise simulate --preset continual`)
    protocol: str = "P1"  # P1 (7 tasks) or P2 (6 tasks)
    split: str = "S2"  # 001 uses the cross-subject split for Setting 2
    method: str = "ours"  # a recipe of the switches below: ours, naive, ewc, coteaching or dividemix (RECIPES)
    ablate: list = field(default_factory=list)  # parts of the recipe switched off: nis, relearn, adaptive_ewc, ewc
    # the switches (None / "": as the method's recipe says)
    nis: bool | None = None  # noise identification and separation before each later task (poise.continual.nis)
    relearn: bool | None = None  # re-learning inside each task (001 Eq. 4; poise.methods.relearn)
    ewc: str = ""  # none, generic (the last task's Fisher, Eq. 7), online (Fishers summed over tasks), adaptive (Eq. 8-9)
    peers: str = ""  # none, coteaching or dividemix: a second network and its noisy-label rule
    balance: str = "baseline"  # a Setting-1 method trained inside every task (poise.methods), e.g. awc
    balance_params: dict = field(default_factory=dict)  # its hyper-parameters
    tasks: int = 0  # learn only the first N tasks of the stream (0: all)
    noise: str = "raw"  # raw, unaligned, or none (a clean stream)
    noisy_modality: str = ""  # corrupt this modality in every later task ("": one drawn per task from the seed)
    ratio: float = 0.2  # fraction of each later task's samples whose one modality is corrupted (001: 0.2, 0.4)
    epochs: int = 5  # training epochs per task
    gamma: int = 1  # NIS fitting epochs (gradient-stop) before the clean/noisy split
    naming: str = "absolute"  # NIS measures score drops in absolute or relative terms (nis.score_drops)
    naming_threshold: dict = field(default_factory=dict)  # {modality: the score drop a clean task shows}: NIS names
    # a modality only above it, "none" when no score fell that far (continual-bench measures it on a clean stream)
    separate: str = "named"  # NIS splits a task into clean / noisy samples when it named a modality, or always
    reference_holdout: float = 0.1  # fraction of the first task's training sequences no task trains on (every
    # method, so all learn the same stream): the clean frames NIS names the noisy modality against
    compare_gradient_stop: bool = False  # also fit without gradient-stop, for the 001 Fig. 3 histograms
    relearn_epoch: int | None = None  # re-learn after epoch index r of each task (0-based, as `poise train`'s
    # relearn); None: 40 % of the epochs (001 gives r only for Setting 1, 20 of 50 epochs, and we keep that proportion)
    alpha_s: float = 0.5  # re-learning weight of the superior group (001 Eq. 4)
    alpha_i: float = 0.7  # and of the inferior group
    lam: float = DEFAULT_LAMBDA  # EWC strength lambda (001 Eq. 12), for the loss in metres
    beta: float = DEFAULT_BETA  # adaptive Fisher's beta (001 Eq. 9)
    ewc_decay: float = 1.0  # online EWC's gamma: F <- gamma F + F_task (Schwarz et al. 2018; 1 sums the tasks)
    fisher: str = "per_sample"  # per_sample (001 Eq. 7 exactly) or batched (squared batch-mean gradients)
    fisher_frames: int = 512  # task frames the Fisher is estimated on (a random subset, for cost)
    lambda_u: float = 1.0  # DivideMix: weight of the unlabelled samples' co-guessed targets
    warmup: int = 1  # DivideMix: epochs of each later task trained on every sample before the first co-divide
    fusion: str = "concat"
    modalities: list = field(default_factory=lambda: list(layout.MODALITIES))
    encoder: str = "lite"
    dim: int = 64
    lidar_points: int = 128
    mmwave_points: int = 64
    train_stride: int = 2  # every k-th training frame of a sequence (the test split always uses every frame)
    batch_size: int = 32
    on_error: str = "raise"  # a damaged data file: raise (name it and stop) or skip (leave its frame out, report it)
    optimizer: str = "adam"  # adam, sgd, or auto (the balancing method's reference optimiser); new for each task
    lr: float | None = None  # None: the optimiser's default (adam 1e-3, sgd poise.optim.SGD_LR)
    assess_frames: int = 512  # frames of a task scored for Shapley contributions (naming, re-learning groups)
    seed: int = 0
    device: str = "auto"
    out: str = "runs"
    name: str = ""  # run directory name (default: continual-method-protocol-noise-ratio-seed)

    def __post_init__(self):
        self.parse_scalars()
        check_run_name(self.name)
        if self.tasks < 0:
            raise PoiseError(f"config key 'tasks' must be an integer >= 0 (0: the whole stream), got {self.tasks!r}")
        positive_ints(self, "epochs", "gamma", "fisher_frames", "dim", "lidar_points",
                      "mmwave_points", "train_stride", "batch_size", "assess_frames")
        self.modalities = modality_list(self.modalities)
        if isinstance(self.ablate, str):
            self.ablate = [a.strip() for a in self.ablate.split(",")]
        if self.ablate is not None and (not isinstance(self.ablate, (list, tuple))
                                        or not all(isinstance(a, str) for a in self.ablate)):
            raise PoiseError(f"config key 'ablate' must be a list of {', '.join(ABLATIONS)}, got {self.ablate!r}")
        self.ablate = sorted(set(self.ablate or []))
        choices = {"method": METHODS, "noise": (*KINDS, "none"), "fisher": FISHERS, "protocol": ("P1", "P2"),
                   "device": ("auto", "cpu", "cuda"), "encoder": ("lite", "paper"), "optimizer": CHOICES,
                   "naming": MODES, "separate": SEPARATE, "on_error": ON_ERROR, "ewc": ("", *EWC_MODES), "peers": ("", *PEERS)}
        for key, valid in choices.items():
            if getattr(self, key) not in valid:
                raise PoiseError(f"config key {key!r} is {getattr(self, key)!r}: choose one of "
                                 f"{', '.join(v for v in valid if v)}")
        unknown = [a for a in self.ablate if a not in ABLATIONS]
        if unknown:
            raise PoiseError(f"config key 'ablate' names {unknown}: choose from {', '.join(ABLATIONS)}")
        self.resolve_switches()
        for key in ("epochs", "gamma"):  # a task's phases draw the data of epochs 1000 t + 100 phase + e
            if getattr(self, key) >= 100:
                raise PoiseError(f"config key {key!r} must be below 100 (epochs per task), got {getattr(self, key)}")
        if self.relearn_epoch is not None and self.relearn_epoch < 0:
            raise PoiseError(f"config key 'relearn_epoch' must be an epoch index >= 0 (or unset: 40 % of the "
                             f"epochs), got {self.relearn_epoch!r}")
        if self.relearn:
            from poise.methods.relearn import RELEARN_FRACTION

            r = round(RELEARN_FRACTION * self.epochs) if self.relearn_epoch is None else self.relearn_epoch
            if r > self.epochs - 2:
                raise PoiseError(f"config key 'relearn_epoch': re-learning after epoch index {r} leaves no epoch of a "
                                 f"task to re-learn in ({self.epochs} epochs); set it to at most epochs - 2 = "
                                 f"{self.epochs - 2}, train more epochs, or ablate relearn")
        if self.warmup < 0 or (self.peers == "dividemix" and self.warmup >= self.epochs):
            raise PoiseError(f"config key 'warmup' ({self.warmup}) must lie in 0 .. epochs - 1 = {self.epochs - 1}: "
                             f"DivideMix needs an epoch after its warm-up to co-divide in")
        if self.noise != "none" and not 0.0 < float(self.ratio) < 1.0:
            raise PoiseError(f"config key 'ratio' must lie in (0, 1), got {self.ratio!r} (001 uses 0.2 and 0.4)")
        for key in ("alpha_s", "alpha_i", "beta", "ewc_decay"):
            if not 0.0 <= float(getattr(self, key)) <= 1.0:
                raise PoiseError(f"config key {key!r} must lie in [0, 1], got {getattr(self, key)!r}")
        if self.lr is None:
            self.lr = DEFAULTS[self.optimizer_name]["lr"]
        if not float(self.lam) >= 0 or not float(self.lr) > 0 or not float(self.lambda_u) >= 0:
            raise PoiseError(f"config keys 'lam' >= 0, 'lr' > 0 and 'lambda_u' >= 0 required, got {self.lam!r}, "
                             f"{self.lr!r}, {self.lambda_u!r}")
        if self.noisy_modality and self.noisy_modality not in self.modalities:
            raise PoiseError(f"config key 'noisy_modality' is {self.noisy_modality!r}: choose one of "
                             f"{', '.join(self.modalities)} (or leave it empty to draw one per task)")
        if len(self.modalities) < 2 or set(self.modalities) - set(layout.MODALITIES):
            raise PoiseError(f"config key 'modalities' must name at least two of {', '.join(layout.MODALITIES)}; "
                             f"got {self.modalities}")
        if not 0.0 <= float(self.reference_holdout) < 1.0:
            raise PoiseError(f"config key 'reference_holdout' must lie in [0, 1) (a fraction of the first task's "
                             f"training sequences), got {self.reference_holdout!r}")
        if self.nis and not self.reference_holdout:
            raise PoiseError("config key 'reference_holdout' is 0, but NIS names the noisy modality against held-back "
                             "frames of the first task: set it above 0 (default 0.1), or switch NIS off")
        if not self.nis and (self.naming_threshold or self.compare_gradient_stop or self.separate != "named"):
            raise PoiseError("config keys 'naming_threshold', 'separate' and 'compare_gradient_stop' set how NIS "
                             f"names and splits, but method {self.method!r} runs without NIS: drop them, or use "
                             f"method: ours")
        if not isinstance(self.naming_threshold, dict):
            raise PoiseError(f"config key 'naming_threshold' must be a mapping of modality to score drop, got "
                             f"{self.naming_threshold!r}")
        unknown = sorted(set(self.naming_threshold) - set(self.modalities))
        if unknown:
            raise PoiseError(f"config key 'naming_threshold' names {unknown}: use the run's modalities, "
                             f"{', '.join(self.modalities)}")
        self.naming_threshold = {m: typed(f"config key 'naming_threshold' ({m})", v, float)
                                 for m, v in self.naming_threshold.items()}
        if not all(math.isfinite(v) for v in self.naming_threshold.values()):
            raise PoiseError(f"config key 'naming_threshold' must hold finite numbers, got {self.naming_threshold!r}")
        if not isinstance(self.balance_params, dict):
            raise PoiseError(f"config key 'balance_params' must be a mapping of parameter to value, got "
                             f"{self.balance_params!r}")
        from poise import methods

        if self.balance not in methods.available():
            close = difflib.get_close_matches(str(self.balance), methods.available(), n=1)
            raise PoiseError(f"config key 'balance' is {self.balance!r}" + (f" (did you mean {close[0]!r}?)" if close
                             else "") + f": choose a Setting-1 method, one of {', '.join(methods.available())}")
        try:
            balance = methods.get(self.balance, **self.balance_params)  # names, types and ranges, before any data
        except PoiseError as err:
            raise PoiseError(f"config key 'balance_params': {err}") from None
        if balance.needs_holdout:
            raise PoiseError(f"config key 'balance' is {self.balance!r}, which needs held-out training sequences; a "
                             f"continual task holds none out: choose another balancing method")
        if self.balance == "relearn" and self.relearn:
            raise PoiseError("config key 'balance' is 'relearn' and re-learning is already on (the 'relearn' switch "
                             "of this method): set balance: baseline, or relearn: false")
        self.balance_params = {k: getattr(balance, k) for k in self.balance_params}

    @property
    def optimizer_name(self) -> str:
        """The optimiser each task builds: ``optimizer``, or for ``auto`` the balancing method's reference one."""
        if self.optimizer != "auto":
            return self.optimizer
        from poise import methods

        return methods.get(self.balance, **self.balance_params).reference_optimizer

    def resolve_switches(self) -> None:
        """The switches as the method's recipe sets them, with the ablated parts switched off; a switch set by
        hand keeps its value (and may not contradict ``ablate``)."""
        recipe = {**SWITCH_DEFAULTS, **RECIPES[self.method]}
        has = {"nis": recipe["nis"], "relearn": recipe["relearn"], "ewc": recipe["ewc"] != "none",
               "adaptive_ewc": recipe["ewc"] == "adaptive"}
        absent = [a for a in self.ablate if not has[a]]
        if absent:
            raise PoiseError(f"config key 'ablate' switches off {absent}, which method {self.method!r} does not "
                             f"have; its parts: {', '.join(k for k, on in has.items() if on) or 'none'} (to change "
                             f"a switch itself, set it: nis, relearn, ewc, peers)")
        given = {k: getattr(self, k) for k in SWITCH_DEFAULTS if getattr(self, k) not in (None, "")}
        target = ablated(recipe, self.ablate)
        for part in self.ablate:
            key = "ewc" if part == "adaptive_ewc" else part
            if key in given and given[key] != target[key]:
                raise PoiseError(f"config keys 'ablate' ({part}) and {key!r} ({given[key]!r}) say different things "
                                 f"about {key}: set one of them")
        for key in SWITCH_DEFAULTS:
            setattr(self, key, given.get(key, target[key]))

    def custom_switches(self) -> dict:
        """The switches that differ from the method's recipe with its ablations (set by hand)."""
        recipe = ablated({**SWITCH_DEFAULTS, **RECIPES[self.method]}, self.ablate)
        return {k: getattr(self, k) for k in SWITCH_DEFAULTS if getattr(self, k) != recipe[k]}

    @property
    def run_name(self) -> str:
        if self.name:
            return self.name
        ablated = "".join(f"-no_{a}" for a in self.ablate)
        noise = "clean" if self.noise == "none" else f"{self.noise}{self.ratio:g}" + (
            f"-{self.noisy_modality}" if self.noisy_modality else "")  # a fixed noisy modality: its own stream
        balance = "" if self.balance == "baseline" else f"-{self.balance}"
        # switches set by hand against the recipe: such a run gets its own folder
        balance = "".join(f"-{k}_{v}".lower() for k, v in self.custom_switches().items()) + balance
        balance += f"-separate_{self.separate}" if self.separate != "named" else ""  # NIS's split is a design
        return f"continual-{self.method}{ablated}{balance}-{self.protocol}-{noise}-seed{self.seed}"


def ablated(switches: dict, ablate) -> dict:
    """``switches`` (nis, relearn, ewc, ...) with the parts in ``ablate`` switched off."""
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
