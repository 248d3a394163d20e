"""The configuration of one ``poise continual`` run (paper 001, Setting 2): a typed dataclass, YAML round-trip,
unknown keys named (``poise.config.ConfigFile``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from poise.config import ON_ERROR, ConfigFile, check_run_name, modality_list, positive_ints
from poise.continual.ewc import DEFAULT_BETA, DEFAULT_LAMBDA
from poise.continual.nis import MODES
from poise.continual.noise import KINDS
from poise.data import layout
from poise.errors import PoiseError

METHODS = ("ours", "naive", "ewc", "coteaching", "dividemix")  # the last two with EWC (001 Table 2)
# parts of ``ours`` that ``ablate`` can switch off (001 Table 4): ``adaptive_ewc`` falls back to the generic
# Fisher (Eq. 7) after every task, ``ewc`` drops the EWC penalty altogether (Table 4's rows without a-EWC)
ABLATIONS = ("nis", "relearn", "adaptive_ewc", "ewc")
FISHERS = ("per_sample", "batched")


@dataclass
class ContinualConfig(ConfigFile):
    data: str = "data/mmfi-continual"  # an MM-Fi root with every action of the protocol (`poise simulate --preset continual`)
    protocol: str = "P1"  # P1 (7 tasks) or P2 (6 tasks)
    split: str = "S2"  # 001 uses the cross-subject split for Setting 2
    method: str = "ours"  # ours (NIS + re-learning + adaptive EWC), naive (fine-tuning), ewc, coteaching or dividemix (+ EWC)
    ablate: list = field(default_factory=list)  # parts of ours switched off: nis, relearn, adaptive_ewc, ewc
    tasks: int = 0  # learn only the first N tasks of the stream (0: all)
    noise: str = "raw"  # raw, unaligned, or none (a clean stream)
    noisy_modality: str = ""  # corrupt this modality in every later task ("": one drawn per task from the seed)
    ratio: float = 0.2  # fraction of each later task's samples whose one modality is corrupted (001: 0.2, 0.4)
    epochs: int = 5  # training epochs per task
    gamma: int = 1  # NIS fitting epochs (gradient-stop) before the clean/noisy split
    naming: str = "absolute"  # NIS names the modality with the largest score drop: absolute or relative (nis.py)
    compare_gradient_stop: bool = False  # also fit without gradient-stop, for the 001 Fig. 3 histograms
    relearn_epoch: int = 2  # re-learn after this epoch of each task (001 Algorithm 1 inside Algorithm 2; 001 gives r only for
    # Setting 1, 20 of 50 epochs, and we keep that proportion)
    alpha_s: float = 0.5  # re-learning weight of the superior group (001 Eq. 4)
    alpha_i: float = 0.7  # and of the inferior group
    lam: float = DEFAULT_LAMBDA  # EWC strength lambda (001 Eq. 12), for the loss in metres
    beta: float = DEFAULT_BETA  # adaptive Fisher's beta (001 Eq. 9)
    fisher: str = "per_sample"  # per_sample (001 Eq. 7 exactly) or batched (squared batch-mean gradients)
    fisher_frames: int = 512  # task frames the Fisher is estimated on (a random subset, for cost)
    lambda_u: float = 1.0  # DivideMix: weight of the unlabelled samples' co-guessed targets
    fusion: str = "concat"
    modalities: list = field(default_factory=lambda: list(layout.MODALITIES))
    encoder: str = "lite"
    dim: int = 64
    lidar_points: int = 128
    mmwave_points: int = 64
    train_stride: int = 2  # every k-th training frame of a sequence (the test split always uses every frame)
    batch_size: int = 32
    on_error: str = "raise"  # a damaged data file: raise (name it and stop) or skip (leave its frame out, report it)
    lr: float = 1e-3  # Adam, re-created at the start of each task
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
        positive_ints(self, "epochs", "gamma", "relearn_epoch", "fisher_frames", "dim", "lidar_points",
                      "mmwave_points", "train_stride", "batch_size", "assess_frames")
        self.modalities = modality_list(self.modalities)
        if isinstance(self.ablate, str):
            self.ablate = [a.strip() for a in self.ablate.split(",")]
        if self.ablate is not None and (not isinstance(self.ablate, (list, tuple))
                                        or not all(isinstance(a, str) for a in self.ablate)):
            raise PoiseError(f"config key 'ablate' must be a list of {', '.join(ABLATIONS)}, got {self.ablate!r}")
        self.ablate = sorted(set(self.ablate or []))
        choices = {"method": METHODS, "noise": (*KINDS, "none"), "fisher": FISHERS, "protocol": ("P1", "P2"),
                   "device": ("auto", "cpu", "cuda"), "encoder": ("lite", "paper"),
                   "naming": MODES, "on_error": ON_ERROR}
        for key, valid in choices.items():
            if getattr(self, key) not in valid:
                raise PoiseError(f"config key {key!r} is {getattr(self, key)!r}: choose one of {', '.join(valid)}")
        unknown = [a for a in self.ablate if a not in ABLATIONS]
        if unknown:
            raise PoiseError(f"config key 'ablate' names {unknown}: choose from {', '.join(ABLATIONS)}")
        if self.ablate and self.method != "ours":
            raise PoiseError(f"config key 'ablate' switches off parts of method 'ours'; method {self.method!r} has "
                             f"none of them")
        if self.noise != "none" and not 0.0 < float(self.ratio) < 1.0:
            raise PoiseError(f"config key 'ratio' must lie in (0, 1), got {self.ratio!r} (001 uses 0.2 and 0.4)")
        if self.uses("relearn") and self.relearn_epoch >= self.epochs:
            raise PoiseError(f"config key 'relearn_epoch' ({self.relearn_epoch}) leaves no epoch of a task to "
                             f"re-learn in ({self.epochs} epochs); set it below epochs or ablate relearn")
        for key in ("alpha_s", "alpha_i", "beta"):
            if not 0.0 <= float(getattr(self, key)) <= 1.0:
                raise PoiseError(f"config key {key!r} must lie in [0, 1], got {getattr(self, key)!r}")
        if not float(self.lam) >= 0 or not float(self.lr) > 0 or not float(self.lambda_u) >= 0:
            raise PoiseError(f"config keys 'lam' >= 0, 'lr' > 0 and 'lambda_u' >= 0 required, got {self.lam!r}, "
                             f"{self.lr!r}, {self.lambda_u!r}")
        if self.noisy_modality and self.noisy_modality not in self.modalities:
            raise PoiseError(f"config key 'noisy_modality' is {self.noisy_modality!r}: choose one of "
                             f"{', '.join(self.modalities)} (or leave it empty to draw one per task)")
        if len(self.modalities) < 2 or set(self.modalities) - set(layout.MODALITIES):
            raise PoiseError(f"config key 'modalities' must name at least two of {', '.join(layout.MODALITIES)}; "
                             f"got {self.modalities}")

    def uses(self, part: str) -> bool:
        """Whether ``part`` of ours (nis, relearn, adaptive_ewc) is on in this run; False for every other
        method. Whether EWC is on at all (baselines included) is ``uses_ewc``."""
        return self.method == "ours" and part not in self.ablate

    @property
    def uses_ewc(self) -> bool:
        """Whether an EWC penalty and Fisher are used (every method but naive and ours without ewc)."""
        return self.method != "naive" and "ewc" not in self.ablate

    @property
    def run_name(self) -> str:
        if self.name:
            return self.name
        ablated = "".join(f"-no_{a}" for a in self.ablate)
        noise = "clean" if self.noise == "none" else f"{self.noise}{self.ratio:g}"
        return f"continual-{self.method}{ablated}-{self.protocol}-{noise}-seed{self.seed}"
