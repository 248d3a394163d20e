"""Configurations: typed dataclasses, loaded from YAML with ``safe_load``; unknown keys are errors that name
the key and the nearest valid one. ``TrainConfig`` here; ``poise.continual.config.ContinualConfig`` shares
``ConfigFile``."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from poise.data import layout


def positive_ints(config, *keys) -> None:
    """Raise naming the first of ``keys`` that is not an integer >= 1."""
    for key in keys:
        value = getattr(config, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"config key {key!r} must be a positive integer, got {value!r}")


class ConfigFile:
    """YAML round-trip and unknown-key checks for a config dataclass."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "ConfigFile":
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                raise ValueError(f"{source}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                                 + f"; valid keys: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def load(cls, path, **overrides) -> "ConfigFile":
        """A config from a YAML file, with ``overrides`` (not None) taking precedence."""
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"{path}: cannot read the config ({err}); pass a YAML mapping of {cls.__name__} keys") from err
        if not isinstance(values, dict):
            raise ValueError(f"{path}: the config must be a YAML mapping of keys to values")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values, source=str(path))

    def save(self, path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


@dataclass
class TrainConfig(ConfigFile):
    data: str = "data/mmfi-demo"  # MM-Fi root (real or `poise simulate` output)
    method: str = "baseline"  # a name from poise.methods.available()
    method_params: dict = field(default_factory=dict)  # the method's hyper-parameters
    fusion: str = "concat"  # concat, mlp or attention
    modalities: list = field(default_factory=lambda: list(layout.MODALITIES))
    protocol: str = "P1"
    split: str = "S1"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3  # Adam
    lr_step: int = 10  # epochs between learning-rate decays (StepLR)
    lr_gamma: float = 0.5
    encoder: str = "lite"  # lite (CPU-sized) or paper (VideoPose3D / Point Transformer / MetaFi++)
    dim: int = 128  # feature size of every encoder
    rgb_window: int = 0  # RGB keypoint frames on each side of the target frame (the TCN's temporal context)
    lidar_points: int = 256
    mmwave_points: int = 64
    train_stride: int = 1  # train on every k-th frame of each sequence (the test split always uses every frame)
    seed: int = 0
    device: str = "auto"  # auto (CUDA when available), cpu or cuda; under torchrun each rank takes its own GPU
    assess_frames: int = 512  # training frames held fixed for the per-epoch contribution assessment
    out: str = "runs"  # parent folder of run directories
    name: str = ""  # run directory name (default: method-fusion-protocol-split-seed)

    def __post_init__(self):
        self.modalities = list(layout.MODALITIES if self.modalities is None else self.modalities)
        positive_ints(self, "epochs", "batch_size", "dim", "lidar_points", "mmwave_points", "assess_frames", "lr_step",
                      "train_stride")
        if not isinstance(self.rgb_window, int) or isinstance(self.rgb_window, bool) or self.rgb_window < 0:
            raise ValueError(f"config key 'rgb_window' must be an integer >= 0, got {self.rgb_window!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"config key 'device' must be auto, cpu or cuda, got {self.device!r}")
        if self.encoder not in ("lite", "paper"):
            raise ValueError(f"config key 'encoder' must be 'lite' or 'paper', got {self.encoder!r}")
        for key in ("lr", "lr_gamma"):
            if not float(getattr(self, key)) > 0:
                raise ValueError(f"config key {key!r} must be positive, got {getattr(self, key)!r}")

    @property
    def run_name(self) -> str:
        return self.name or f"{self.method}-{self.fusion}-{self.protocol}-{self.split}-seed{self.seed}"

