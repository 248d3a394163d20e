"""What a bench trains: variants (a method with its settings and optimiser, paired with the row it is compared
with), fusions, modality subsets, seeds and a length, plus ablation tables.

Every run of a preset shares the settings in ``SHARED``: lite encoders at feature size 64, 128 LiDAR and 64
mmWave points, batch 32, every 4th training frame (10 Hz frames are near-duplicates of their neighbours), 10 %
of the training sequences held out as a validation set (never trained on; G-Blending estimates its weights
on it, and the length of the runs was chosen on it), and per-epoch test metrics on every 4th test frame (the
last epoch is evaluated on every frame: that is the number reported). The schedule is paper 000's, scaled to
the run: the learning rate drops 10x after 60 % of the epochs (000: Adam 1e-3, x0.1 at epoch 30 of 50), and
AWC's window and re-learning's epoch keep their papers' 40 %.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from poise.data import layout
from poise.errors import PoiseError

ALL = tuple(layout.MODALITIES)
SHORT = {"rgb": "R", "lidar": "L", "mmwave": "M", "wifi-csi": "W"}
SINGLES = tuple((m,) for m in ALL)

SHARED = dict(train_stride=4, dim=64, lidar_points=128, mmwave_points=64, batch_size=32, holdout=0.1, eval_stride=4)
LR_DECAY_AT = 0.6  # paper 000: x0.1 at epoch 30 of 50
LR_GAMMA = 0.1
CONVERGED_EPOCHS = 48  # concat; benchmarks/convergence.py on the demo data (000: 50): see docs/bench.md
EPOCHS = {"concat": CONVERGED_EPOCHS, "mlp": 72, "attention": 72}  # mlp and attention converge more slowly


@dataclass(frozen=True)
class Variant:
    """One row of the methods table: ``method`` with ``params`` and TrainConfig overrides ``train`` (e.g. the
    optimiser), trained at ``fusions`` (None: every fusion of the preset) and compared seed by seed with the
    row labelled ``against`` (None: a reference row)."""

    label: str
    method: str
    params: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    against: str | None = "baseline"
    fusions: tuple | None = None
    about: str = ""

    def __post_init__(self):
        if "-" in self.label:
            raise PoiseError(f"variant label {self.label!r}: use '_' (run names join label, fusion, subset, seed with '-')")


@dataclass(frozen=True)
class Ablation:
    """A table of variants (by label) next to a paper's numbers (``paper``: label -> MPJPE in mm)."""

    title: str
    rows: tuple
    paper: dict = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Preset:
    variants: tuple
    fusions: tuple
    subsets: tuple  # modality subsets trained with ``baseline`` and the first fusion
    seeds: tuple
    epochs: int | dict  # every run's length, or {fusion: length}
    train: dict = field(default_factory=dict)  # TrainConfig overrides shared by every run (on top of the schedule)
    ablations: tuple = ()
    robust: bool = False  # also evaluate every run over the modality subsets (``poise robust``)
    about: str = ""

    def variant(self, label: str) -> Variant:
        return next(v for v in self.variants if v.label == label)

    def epochs_of(self, fusion: str) -> int:
        return self.epochs[fusion] if isinstance(self.epochs, dict) else self.epochs

    def fusions_of(self, variant: Variant) -> tuple:
        return self.fusions if variant.fusions is None else tuple(f for f in self.fusions if f in variant.fusions)

    def only(self, labels) -> "Preset":
        """This preset with only the named variants and the ones they are paired with (their ``against``), the
        ablation tables cut to those rows, and the modality subsets (baseline runs) only if ``baseline`` is
        named: for more seeds where an interval is too wide, at a fraction of the cost."""
        known = [v.label for v in self.variants]
        unknown = [label for label in labels if label not in known]
        if unknown:
            raise PoiseError(f"variants {', '.join(unknown)}: not in this preset; choose from {', '.join(known)}")
        keep = set(labels)
        while pairs := {self.variant(label).against for label in keep} - keep - {None}:
            keep |= pairs
        ablations = tuple(replace(a, rows=rows) for a in self.ablations
                          if len(rows := tuple(r for r in a.rows if r in keep)) > 1)
        return replace(self, variants=tuple(v for v in self.variants if v.label in keep), ablations=ablations,
                       subsets=self.subsets if BASELINE.label in labels else ())  # the subsets are baseline runs


BASELINE = Variant("baseline", "baseline", against=None, about="joint training, Adam (000/001's recipe)")
SGD = dict(optimizer="sgd")
ADAM = dict(optimizer="adam")
GRADIENT_METHODS = (
    Variant("baseline_sgd", "baseline", train=SGD, against=None,
            about="joint training with OGM-GE's and AGM's reference optimiser (SGD, momentum 0.9, weight decay 1e-4)"),
    Variant("ogm_ge", "ogm_ge", against="baseline_sgd", about="OGM-GE with its reference optimiser (SGD)"),
    Variant("agm", "agm", against="baseline_sgd", about="AGM with its reference optimiser (SGD)"),
)
UNDER_ADAM = (
    Variant("ogm_ge_adam", "ogm_ge", train=ADAM, about="OGM-GE under Adam, as 000's comparison most likely ran it"),
    Variant("agm_adam", "agm", train=ADAM, about="AGM under Adam, as 000's comparison most likely ran it"),
)
OTHERS = (
    Variant("gblending", "gblending", about="G-Blending, weights from the held-out sequences"),
    Variant("modality_resample", "modality_resample", about="modality-level valuation and re-sampling"),
    Variant("awc", "awc", about="000's AWC, alpha_S 20k / alpha_I 10k, K = 40 % of the epochs"),
    Variant("awc_norm", "awc", params=dict(normalise=True),
            about="AWC with each encoder's Fisher normalised to the same mean (our variant)"),
    Variant("relearn", "relearn", about="001's adaptive re-learning, r = 40 % of the epochs"),
)

RELATED = (  # papers 002-004; ARL, DGL and ARM scale gradients or features: their reference optimiser, SGD
    Variant("baseline_sgd01", "baseline", train=dict(optimizer="sgd", lr=0.1), against=None,
            about="joint training under SGD at ARL's, DGL's and ARM's lr 0.1 (their paired baseline)"),
    Variant("arl", "arl", against="baseline_sgd01", about="002's ARL: inverse-variance coefficients (1 + k) on the "
            "encoders' gradients and the unimodal bias loss, SGD"),
    Variant("dgl", "dgl", against="baseline_sgd01", about="002's DGL: encoders from unimodal losses only, fusion "
            "and head from the fused loss on detached features, SGD"),
    Variant("arm", "arm", against="baseline_sgd01", about="004's ARM: feature gains from Gaussian MI / CMI, SGD"),
    Variant("lsi", "lsi", about="003's log-Sobolev regulariser equalising the modalities' information, Adam"),
)
REGRESSION_REFERENCE = (  # a published method whose reference code already trains a regression task
    Variant("cggm", "cggm", about="CGGM (NeurIPS 2024): encoder gradients x rho B from the unimodal heads' "
            "per-epoch MPJPE decrease, and the direction loss; Adam, as its reference (paired with joint "
            "training under Adam)"),
)


AGAINST_RUN = "@against"  # a method parameter naming the run of the variant's pair (same fusion, subset, seed)
ROBUST = (  # missing sensors (paper 002's robustness methods); every run is also evaluated over the 15 subsets
    Variant("modality_dropout", "modality_dropout", about="modality dropout per sample (p = 0.5: uniform over "
            "the 15 combinations), absent = zeros as in the references"),
    Variant("modality_dropout_rescale", "modality_dropout", params=dict(absent="rescale"),
            about="modality dropout with the present features x M / |present| (the concat-consistent form)"),
    Variant("dmrnet", "dmrnet", about="DMRNet: probabilistic embedding, hard combinations from 6 warm-up epochs"),
    Variant("mmanet", "mmanet", params=dict(teacher=AGAINST_RUN), about="MMANet: distils the baseline run of the "
            "same seed, weak combinations mined on the held-out sequences"),
    Variant("modality_distill", "modality_distill", about="one-stage modality distillation (our design): absent "
            "features restored from the present ones"),
    OTHERS[2],
)


def _awc(label, about="", **params) -> Variant:
    return Variant(label, "awc", params=params, about=about)


ABLATION_VARIANTS = (
    BASELINE,
    _awc("awc", "alpha_S 20k / alpha_I 10k (000's choice)"),
    _awc("awc_a0_10k", alpha_s=0.0, alpha_i=10_000.0),
    _awc("awc_a10k_0", alpha_s=10_000.0, alpha_i=0.0),
    _awc("awc_a20k_20k", alpha_s=20_000.0, alpha_i=20_000.0),
    _awc("awc_k20", "K = 20 % of the epochs (000: 10 of 50)", window=round(0.2 * CONVERGED_EPOCHS)),
    _awc("awc_k50", "K = 50 % of the epochs (000: 25 of 50)", window=round(0.5 * CONVERGED_EPOCHS)),
    _awc("awc_neg_mse", "groups from -MSE Shapley scores", profit="neg_mse"),
    _awc("awc_neg_mpjpe", "groups from -MPJPE Shapley scores", profit="neg_mpjpe"),
    Variant("relearn", "relearn", about="r = 40 % (001: 20 of 50)"),
    Variant("relearn_r20", "relearn", params=dict(relearn_epoch=round(0.2 * CONVERGED_EPOCHS)), about="r = 20 %"),
    Variant("relearn_r60", "relearn", params=dict(relearn_epoch=round(0.6 * CONVERGED_EPOCHS)), about="r = 60 %"),
    *GRADIENT_METHODS, *UNDER_ADAM,
    *REGRESSION_REFERENCE,
    Variant("cggm_lam002", "cggm", params=dict(lam=0.02), about="CGGM with lambda 0.02, a tenth of the reference's "
            "(at 0.2 the direction loss's gradient on the head outweighs the MPJPE's)"),
    Variant("cggm_lam0", "cggm", params=dict(lam=0.0), about="CGGM without the direction loss: magnitude "
            "modulation and the unimodal heads only"),
)
ABLATIONS = (
    Ablation("AWC's alpha_S / alpha_I (000's ablation table)",
             ("baseline", "awc_a0_10k", "awc_a10k_0", "awc", "awc_a20k_20k"),
             paper={"baseline": 53.87, "awc_a0_10k": 52.92, "awc_a10k_0": 52.09, "awc": 51.16, "awc_a20k_20k": 51.69},
             note="000, protocol 1, concat, MPJPE; the alphas are for a loss in metres, as ours"),
    Ablation("AWC's learning window K", ("baseline", "awc_k20", "awc", "awc_k50"),
             note="000 reports K = 20 of 50 best, 10 and 25 worse, without numbers"),
    Ablation("The profit whose Shapley scores form AWC's groups", ("baseline", "awc", "awc_neg_mse", "awc_neg_mpjpe"),
             note="000 argues for Pearson; it gives no numbers for the others"),
    Ablation("Re-learning's epoch r", ("baseline", "relearn_r20", "relearn", "relearn_r60"),
             note="001 uses r = 20 of 50"),
    Ablation("The optimiser under gradient modulation", ("baseline_sgd", "ogm_ge", "agm", "baseline", "ogm_ge_adam",
                                                        "agm_adam"),
             paper={"baseline": 53.87, "ogm_ge_adam": 55.51, "agm_adam": 55.80},  # 000 Table 1, trained with Adam
             note="OGM-GE and AGM scale encoder gradients; Adam's per-parameter normalisation undoes most of a "
                  "constant scale (tests/test_optim.py)"),
    Ablation("CGGM's direction-loss weight lambda", ("baseline", "cggm_lam0", "cggm_lam002", "cggm"),
             note="the reference's lambda 0.2 was set for MOSI's sentiment scores; on poses in metres the direction "
                  "loss's gradient on the fusion and head is 1.7-2.2x the MPJPE's at the last epoch"),
)

TINY_TRAIN = dict(train_stride=2, dim=16, lidar_points=32, mmwave_points=16, batch_size=64, assess_frames=128,
                  holdout=0.0, eval_stride=1)
CONCAT = ("concat",)
PRESETS = {
    "quick": Preset(
        variants=(BASELINE, OTHERS[2], OTHERS[4]), fusions=CONCAT, subsets=(("rgb",), ("rgb", "lidar"), ALL),
        seeds=(0, 1), epochs=CONVERGED_EPOCHS, train=SHARED,
        about="the README's main job: joint training, AWC and re-learning, and the subsets that answer "
              "'does fusion lose to RGB + LiDAR', converged, 2 seeds"),
    "standard": Preset(
        variants=(BASELINE, *GRADIENT_METHODS, *OTHERS, *RELATED, *REGRESSION_REFERENCE), fusions=CONCAT,
        subsets=(*SINGLES, ("rgb", "lidar"), ALL), seeds=(0, 1, 2), epochs=CONVERGED_EPOCHS, train=SHARED,
        about="every method at concat (OGM-GE, AGM, ARL, DGL and ARM under their reference optimiser, SGD, "
              "against joint training under SGD; CGGM under its reference Adam against joint training under "
              "Adam), the single modalities and R + L, converged, 3 seeds: the numbers in docs/bench.md"),
    "fusions": Preset(
        variants=(BASELINE, OTHERS[2], *RELATED), fusions=("mlp", "attention"), subsets=(),
        seeds=(0, 1, 2), epochs=EPOCHS, train=SHARED,
        about="joint training (Adam and SGD), AWC and papers 002-004's methods at the mlp and attention fusions, "
              "converged (72 epochs), 3 seeds"),
    "ablation": Preset(
        variants=ABLATION_VARIANTS, fusions=("concat",), subsets=(), seeds=(0, 1, 2), epochs=CONVERGED_EPOCHS,
        train=SHARED, ablations=ABLATIONS,
        about="000's AWC ablations (alpha grid, window K, the profit that forms the groups), re-learning's r, "
              "OGM-GE / AGM under Adam against under SGD, and CGGM's direction-loss weight lambda, concat, converged, "
              "3 seeds"),
    "robust": Preset(
        variants=(BASELINE, *ROBUST), fusions=CONCAT, subsets=(), seeds=(0, 1, 2), epochs=CONVERGED_EPOCHS,
        train=SHARED, robust=True,
        about="missing sensors: joint training, modality dropout, DMRNet, MMANet, one-stage modality "
              "distillation and AWC, concat, converged, 3 seeds, each run evaluated with every one of the 15 "
              "modality subsets present (docs/robust.md)"),
    "precision": Preset(
        variants=(BASELINE, OTHERS[2],
                  Variant("baseline_bf16", "baseline", train=dict(precision="bf16"),
                          about="joint training with the forward pass under bf16 autocast"),
                  Variant("awc_bf16", "awc", train=dict(precision="bf16"), against="awc",
                          about="AWC with the forward pass under bf16 autocast, paired with AWC in float32")),
        fusions=CONCAT, subsets=(), seeds=(0, 1, 2), epochs=CONVERGED_EPOCHS, train=SHARED,
        about="is bf16 autocast within noise of float32? joint training and AWC in both, concat, converged, "
              "3 seeds (the float32 runs are the ablation bench's)"),
    "tiny": Preset(
        variants=(BASELINE, Variant("relearn", "relearn", params=dict(relearn_epoch=0))), fusions=("concat",),
        subsets=(("rgb",), ALL), seeds=(0, 1), epochs=2, train=dict(TINY_TRAIN, lr_step=1, lr_gamma=0.5),
        about="a smoke test on `poise simulate --preset tiny` data (seconds)"),
}
