"""Configurations: typed dataclasses, loaded from YAML with ``safe_load``; unknown keys are errors that name
the key and the nearest valid one. ``TrainConfig`` here; ``poise.continual.config.ContinualConfig`` shares
``ConfigFile``."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from poise.choices import ENCODERS
from poise.data import layout
from poise.errors import PoiseError
from poise.values import typed  # noqa: F401  (re-exported: configs and methods parse values alike)


def as_number(config, key: str, low: float | None = None, high: float | None = None, optional: bool = False,
              above: bool = False) -> None:
    """Make ``config.key`` a float (YAML reads ``1e-3`` as a string) and check its range; raise naming the key."""
    value = getattr(config, key)
    if value is None and optional:
        return
    number = typed(f"config key {key!r}", value, float)
    if (low is not None and (number <= low if above else number < low)) or \
            (high is not None and number > high):
        bounds = (f"> {low}" if above else f">= {low}") if low is not None else ""
        bounds += (" and " if bounds and high is not None else "") + (f"<= {high}" if high is not None else "")
        raise PoiseError(f"config key {key!r} must be {bounds}, got {value!r}")
    setattr(config, key, number)


# sizes no MM-Fi model needs more of, and that would otherwise be a many-GB allocation and a traceback
LARGEST = {"lidar_points": 65_536, "mmwave_points": 65_536, "dim": 8_192, "batch_size": 65_536,
           "assess_frames": 1_000_000, "fisher_frames": 1_000_000}
WHY = {"lidar_points": "an MM-Fi LiDAR frame holds about 1.1k points", "mmwave_points": "an mmWave frame holds tens",
       "dim": "the papers' encoders use 256-512", "batch_size": "", "assess_frames": "", "fisher_frames": ""}


def positive_ints(config, *keys) -> None:
    """Make each of ``keys`` an int (``1e2`` and ``12.0`` are written numbers too); raise naming the first that is
    not an integer >= 1, or above its ``LARGEST``."""
    for key in keys:
        value = typed(f"config key {key!r}", getattr(config, key), int)
        if value < 1:
            raise PoiseError(f"config key {key!r} must be a positive integer, got {getattr(config, key)!r}")
        if value > LARGEST.get(key, value):
            raise PoiseError(f"config key {key!r} = {value:,} is beyond what poise will allocate (at most "
                             f"{LARGEST[key]:,}" + (f"; {WHY[key]}" if WHY[key] else "") + ")")
        setattr(config, key, value)


def check_run_name(name: str) -> None:
    """A run directory name is one folder name inside ``out``: ``../..`` or ``a/b`` would write elsewhere."""
    if name and (Path(name).name != name or name in (".", "..") or "\\" in name):
        raise PoiseError(f"config key 'name' must be a single folder name inside 'out', got {name!r}")
    if name and (not name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise PoiseError(f"config key 'name' must be a visible folder name (no control characters, not blank), "
                         f"got {name!r}")


def modality_list(value) -> list:
    """The ``modalities`` key as a list of known modality names: a YAML list, or one string such as
    ``lidar`` or ``rgb,lidar`` (never five one-letter modalities); None means all four."""
    if value is None:
        return list(layout.MODALITIES)
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names:
        raise PoiseError(f"config key 'modalities' must be a non-empty list of {', '.join(layout.MODALITIES)}, "
                         f"got {value!r}")
    unknown = [n for n in names if n not in layout.MODALITIES]
    if unknown:
        raise PoiseError(f"config key 'modalities': unknown {unknown}; choose from {', '.join(layout.MODALITIES)}")
    if len(set(names)) != len(names):
        raise PoiseError(f"config key 'modalities' names a modality twice: {value!r}")
    return list(names)


ON_ERROR = ("raise", "skip")  # the reader's policies for a damaged file (poise.data.mmfi)


class ConfigFile:
    """YAML round-trip and unknown-key checks for a config dataclass."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def parse_scalars(self) -> None:
        """Every number, flag and string key as its annotated type (``lr: 1e-3`` is a float, ``epochs: 1e2`` the
        integer 100), or an error naming the key; lists and mappings are checked by their owners."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            kind = hints[f.name]
            options = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
            if all(k in (int, float, bool, str, type(None)) for k in options):
                setattr(self, f.name, typed(f"config key {f.name!r}", getattr(self, f.name), kind))

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "ConfigFile":
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                raise PoiseError(f"{source}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                                 + f"; valid keys: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def load(cls, path, **overrides) -> "ConfigFile":
        """A config from a YAML file, with ``overrides`` (not None) taking precedence."""
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise PoiseError(f"{path}: cannot read the config ({err}); pass a YAML mapping of {cls.__name__} keys") from err
        if not isinstance(values, dict):
            raise PoiseError(f"{path}: the config must be a YAML mapping of keys to values")
        return cls.from_dict(cls.overridden(values, {k: v for k, v in overrides.items() if v is not None}),
                             source=str(path))

    @classmethod
    def overridden(cls, values: dict, overrides: dict) -> dict:
        """A file's ``values`` with ``overrides`` (e.g. command-line options) taking precedence."""
        return {**values, **overrides}

    def save(self, path) -> None:
        """Written atomically: ``--resume --epochs`` rewrites it beside a checkpoint, where half a file would
        leave a run that cannot be resumed."""
        from poise.runtime import write_atomic

        write_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


@dataclass
class TrainConfig(ConfigFile):
    data: str = "data/mmfi-demo"  # MM-Fi root (real or `poise simulate` output)
    method: str = "baseline"  # a name from poise.methods.available()
    method_params: dict = field(default_factory=dict)  # the method's hyper-parameters
    plugins: list = field(default_factory=list)  # modules that register methods (imported before `method` is
    # looked up, and whenever the run is read again: resume, robust, report, bench); --plugin MODULE
    fusion: str = "concat"  # concat, mlp or attention
    modalities: list = field(default_factory=lambda: list(layout.MODALITIES))
    protocol: str = "P1"
    split: str = "S1"
    epochs: int = 20
    batch_size: int = 64
    optimizer: str = "auto"  # auto (the method's reference optimiser), adam or sgd (poise.optim)
    lr: float | None = None  # None: the optimiser's default (adam 1e-3, sgd poise.optim.SGD_LR)
    momentum: float = 0.9  # sgd only
    weight_decay: float | None = None  # None: the optimiser's default (adam 0, sgd 1e-4)
    lr_groups: dict = field(default_factory=dict)  # learning-rate factor per parameter group (modality, "fusion", ...)
    lr_step: int = 10  # epochs between learning-rate decays (StepLR)
    lr_gamma: float = 0.5
    holdout: float = 0.0  # fraction of training sequences held out as a validation set (never trained on)
    eval_stride: int = 1  # per-epoch test metrics on every k-th test frame; the last epoch uses every frame
    eval_every: int = 5  # validation, test and contributions on epoch 1, every k-th, epoch round(0.8 N) and the last
    encoder: str = "lite"  # lite (CPU-sized) or paper (VideoPose3D / Point Transformer / MetaFi++)
    dim: int = 128  # feature size of every encoder
    rgb_window: int = 0  # RGB keypoint frames on each side of the target frame (the TCN's temporal context)
    lidar_points: int = 256
    mmwave_points: int = 64
    train_stride: int = 1  # train on every k-th frame of each sequence (the test split always uses every frame)
    train_subjects: int = 0  # 0: every training subject of the split; k: k per action, drawn from the seed
    epoch_frames: int = 0  # 0: every trained-on frame each epoch; k: k of them, drawn anew each epoch (large roots)
    on_error: str = "raise"  # a damaged data file: raise (name it and stop) or skip (leave its frame out, report it)
    seed: int = 0
    device: str = "auto"  # auto (CUDA when available), cpu or cuda; under torchrun each rank takes its own GPU
    precision: str = "float32"  # the training step's forward pass: float32, bf16 or fp16 autocast (poise.precision)
    deterministic: bool = False  # CUDA: deterministic kernels, no cuDNN autotuning (slower; CPU runs always are)
    assess_frames: int = 512  # training frames held fixed for the per-epoch contribution assessment
    out: str = "runs"  # parent folder of run directories
    name: str = ""  # run directory name (default: method-fusion-protocol-split-seed)

    def __post_init__(self):
        self.parse_scalars()
        check_run_name(self.name)
        self.modalities = modality_list(self.modalities)
        positive_ints(self, "epochs", "batch_size", "dim", "lidar_points", "mmwave_points", "assess_frames", "lr_step",
                      "train_stride", "eval_stride", "eval_every")
        for key in ("rgb_window", "train_subjects", "epoch_frames"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise PoiseError(f"config key {key!r} must be an integer >= 0, got {value!r}")
        from poise import precision

        precision.check(self.precision)
        if self.device not in ("auto", "cpu", "cuda"):
            raise PoiseError(f"config key 'device' must be auto, cpu or cuda, got {self.device!r}")
        if self.on_error not in ON_ERROR:
            raise PoiseError(f"config key 'on_error' must be one of {', '.join(ON_ERROR)}, got {self.on_error!r}")
        if self.encoder not in ENCODERS:
            raise PoiseError(f"config key 'encoder' must be 'lite' or 'paper', got {self.encoder!r}")
        from poise.optim import CHOICES

        if self.optimizer not in CHOICES:
            raise PoiseError(f"config key 'optimizer' must be one of {', '.join(CHOICES)}, got {self.optimizer!r}")
        as_number(self, "lr", 0, optional=True, above=True)
        as_number(self, "lr_gamma", 0, above=True)
        as_number(self, "momentum", 0, 1)
        as_number(self, "weight_decay", 0, optional=True)
        as_number(self, "holdout", 0, 1)
        if self.holdout >= 1:
            raise PoiseError(f"config key 'holdout' must be below 1 (a fraction of the training sequences), got {self.holdout!r}")
        if not isinstance(self.lr_groups, dict):
            raise PoiseError(f"config key 'lr_groups' must be a mapping of parameter group to factor, got {self.lr_groups!r}")
        for group, factor in self.lr_groups.items():
            self.lr_groups[group] = typed(f"config key 'lr_groups' entry {group!r}", factor, float)
            if self.lr_groups[group] < 0:
                raise PoiseError(f"config key 'lr_groups' entry {group!r} must be a factor >= 0, got {factor!r}")
        if not isinstance(self.method_params, dict):
            raise PoiseError(f"config key 'method_params' must be a mapping of parameter to value, got {self.method_params!r}")
        from poise import methods

        if isinstance(self.plugins, str):
            self.plugins = [self.plugins]
        if not isinstance(self.plugins, list) or not all(isinstance(m, str) and m for m in self.plugins):
            raise PoiseError(f"config key 'plugins' must be a list of module names, got {self.plugins!r}")
        methods.import_plugins(self.plugins)
        if self.method not in methods.available():
            close = difflib.get_close_matches(str(self.method), methods.available(), n=1)
            raise PoiseError(f"config key 'method' is {self.method!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f": choose one of {', '.join(methods.available())}")
        try:
            method = methods.get(self.method, **self.method_params)  # names, types and ranges, before any data is read
        except PoiseError as err:
            raise PoiseError(f"config key 'method_params': {err}") from None
        self.method_params = {k: getattr(method, k) for k in self.method_params}  # as parsed ('1e4' -> 10000.0)

    @property
    def run_name(self) -> str:
        return self.name or f"{self.method}-{self.fusion}-{self.protocol}-{self.split}-seed{self.seed}"

