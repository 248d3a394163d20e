"""The ``poise`` command's subcommands and options. Building it imports no torch, numpy or simulator (``poise
--help`` is quick): choices come from ``poise.choices`` and the light preset modules."""

from __future__ import annotations

import argparse

from poise.cli.commands import (DEFAULT_DEMO, cmd_bench, cmd_calibrate, cmd_continual,
                                cmd_continual_bench, cmd_contrib, cmd_imbalance_bench, cmd_info, cmd_methods,
                                cmd_report, cmd_robust, cmd_show, cmd_simulate, cmd_train)
from poise.choices import IMBALANCE_PRESETS
from poise.data import layout


def _add_epoch_frames(p) -> None:
    p.add_argument("--epoch-frames", type=_at_least(1), default=None,
                   help="train each epoch on this many frames, drawn anew each epoch (for a P1-scale root: "
                   "2850, the demo's epoch size; default: every training frame)")


def _at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum {low}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and option. It imports no torch, numpy or simulator (``poise --help`` is quick): choices
    come from ``poise.choices`` and the light preset modules."""
    from poise.data.synth.presets import PRESETS

    import poise

    parser = argparse.ArgumentParser(prog="poise", description="Balanced multi-modal 3D pose estimation on MM-Fi.")
    parser.add_argument("--version", action="version", version=f"poise {poise.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="write a synthetic MM-Fi dataset in the real on-disk format",
                       description="Write a synthetic MM-Fi dataset (exact MM-Fi layout and file formats). "
                       "Deterministic by seed; re-running finishes an interrupted run or does nothing. Presets: "
                       + "; ".join(f"{k}: {v.about}" for k, v in PRESETS.items()))
    p.add_argument("--preset", choices=list(PRESETS), default="demo")
    p.add_argument("--out", default=DEFAULT_DEMO, help=f"dataset root to write (default {DEFAULT_DEMO})")
    p.add_argument("--seed", type=_at_least(0), default=0)
    p.add_argument("--workers", type=_at_least(1), default=None, help="processes (default: one per CPU core)")
    p.add_argument("--force", action="store_true", help="replace a different dataset already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("calibrate", help="joint training on paper 001 Table 3's 11 modality sets, next to Table 3",
                       description="Measure the simulator's realism (or any MM-Fi root's): train the bench's joint-"
                       "training baseline on each modality set of paper 001's Table 3 over seeds (resumable bench "
                       "runs under OUT/runs) and compare each set's MPJPE / PA-MPJPE, as a ratio to the four-"
                       "modality model's, with Table 3's, with the calibration targets of issue 26.")
    p.add_argument("--data", default=DEFAULT_DEMO, help=f"MM-Fi root (default {DEFAULT_DEMO})")
    p.add_argument("--protocol", default="P1")
    p.add_argument("--split", default="S1")
    p.add_argument("--epochs", type=_at_least(1), default=None,
                   help="epochs per run (default: the bench's converged length)")
    _add_epoch_frames(p)
    p.add_argument("--out", default="runs/calibration", help="folder of the runs, calibration.md and .json")
    p.add_argument("--plan", action="store_true", help="list the runs and the time estimate; train nothing")
    _add_run_all_options(p)
    p.set_defaults(func=cmd_calibrate)


    p = sub.add_parser("methods", help="list the balancing methods, with the paper and equation each implements",
                       description="Every registered method (poise's and any a plugin registered), its reference "
                       "optimiser (what `--optimizer auto` uses) and the first paragraph of its documentation.")
    add_plugin(p)
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("train", help="train a multi-modal pose model with a balancing method",
                       description="Train on an MM-Fi root (the synthetic demo by default). Writes a run directory "
                       "(config, per-epoch metrics and contribution scores, plots, checkpoint). Options override "
                       "--config; --resume RUN_DIR continues an interrupted run.")
    add_run_options(p, "TrainConfig keys (see poise/config.py)", "continue this run from its last checkpoint",
                    f"MM-Fi root (default {DEFAULT_DEMO})", "a balancing method (default baseline; `poise methods` "
                    "lists them, with the paper and equation each implements)", "epochs")
    p.add_argument("--rgb-window", dest="rgb_window", type=_at_least(0),
                   help="RGB keypoint frames on each side (temporal context for the paper TCN)")
    p.add_argument("--holdout", type=float,
                   help="fraction of training sequences held out as a validation set (gblending needs one)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log every per-epoch number to RUN_DIR/tensorboard (pip install 'poise[tensorboard]'; "
                        "watch with `tensorboard --logdir RUN_DIR/tensorboard`)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("contrib", help="Shapley contributions of a trained run's modalities, per profit",
                       description="Per-modality Shapley scores of a trained run on its test split, for each "
                       "profit (pearson, neg_mse, neg_mpjpe), and each modality's unimodal MPJPE and output std. "
                       "Writes contrib.json and contrib.png into the run directory.")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_contrib)

    p = sub.add_parser("robust", help="a trained run's test error with every modality subset, and with sensors "
                       "missing at random", description="Evaluates a trained run on its test split with each of the "
                       "15 non-empty modality subsets present (absent modalities as its training defined them), and "
                       "with each modality lost per sample with probability --drop. Prints the table; writes "
                       "robust.json, robust.md and robust.png into the run directory. See docs/robust.md.")
    p.add_argument("run_dir")
    p.add_argument("--drop", type=float, nargs="*", default=[0.3], metavar="P",
                   help="per-sample probabilities of losing each modality (default 0.3; none: --drop with no value)")
    p.add_argument("--seeds", type=_at_least(1), default=5, help="seeds each --drop is averaged over (default 5)")
    p.set_defaults(func=cmd_robust)

    p = sub.add_parser("report", help="one self-contained HTML page of a run or bench (report.html)",
                       description="Write PATH/report.html: images inlined, no network, opens from a file. For a "
                       "`poise train` run: its settings, learning curves, per-epoch Shapley scores and unimodal-"
                       "output spreads, the final metrics, and 3D skeletons of chosen and worst test frames with "
                       "each modality's unimodal prediction (also saved as skeletons.png and unimodal.png; needs "
                       "the run's data). For a `poise continual` run: avg-MPJPE per task, the task matrix, NIS and "
                       "the stream's curves. For a bench directory: its report.md with every plot, and its runs.")
    p.add_argument("path", help="a run directory (poise train / continual) or a bench directory")
    p.add_argument("--frames", type=_at_least(0), nargs="+", metavar="I",
                   help="test-split frame indices to draw (default: two evenly spaced, the same for every run)")
    p.add_argument("--worst", type=_at_least(0), default=2, help="also draw this many worst test frames (default 2)")
    p.add_argument("--no-poses", dest="no_poses", action="store_true",
                   help="do not rebuild the model (no skeletons; for a run whose data is not at hand)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("show", help="draw what every sensor recorded for one frame (PNG) or a range (--gif)",
                       description="Draw one frame of an MM-Fi sequence, real or synthetic: RGB keypoints on the "
                       "640x480 image plane, the ground-truth skeleton, LiDAR and mmWave points (Doppler coloured) "
                       "in their sensor frames, and CSI amplitude and phase as subcarrier x packet heatmaps per "
                       "antenna (raw file values). With --gif, frames --frame..--to every --step as an animation.")
    p.add_argument("root", nargs="?", default=DEFAULT_DEMO, help=f"MM-Fi root (default {DEFAULT_DEMO})")
    p.add_argument("--subject", default="S01", help="S01..S40 (default S01)")
    p.add_argument("--action", default="A17", help="A01..A27 (default A17)")
    p.add_argument("--frame", type=_at_least(1), default=1, help="1-based frame, as the file names (default 1)")
    p.add_argument("--gif", action="store_true", help="an animated GIF of frames --frame..--to")
    p.add_argument("--to", type=_at_least(1), default=None, help="last frame of --gif (default --frame + 30, or the sequence's last)")
    p.add_argument("--step", type=_at_least(1), default=1, help="every STEP-th frame in --gif (default 1)")
    p.add_argument("--out", default=None, help="file to write (default show-SUBJECT-ACTION-FRAME.png or .gif)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_show)

    from poise.continual.config import ABLATIONS, NOISE, RECIPES

    p = sub.add_parser("continual", help="continual learning on a noisy task stream (paper 001, Algorithm 2)",
                       description="Learn the protocol's task stream (P1: 7 tasks, P2: 6) one task after another, "
                       "one modality corrupted in each later task, with NIS, re-learning and adaptive EWC (the recipe "
                       "ours) or a baseline recipe. Writes config.yaml, tasks.json, results.json (avg-MPJPE per task, "
                       "001 Eq. 13; the task x task matrix; forgetting; NIS quality), noise.json and a checkpoint "
                       "after each task; --resume RUN_DIR continues after the last finished task.")
    add_run_options(p, "ContinualConfig keys (see poise/continual/config.py)",
                    "continue this run after its last finished task", "MM-Fi root with every action of the protocol "
                    "(default data/mmfi-continual, from `poise simulate --preset continual`)", "a Setting-1 "
                    "balancing method trained inside every task (default baseline; `poise methods` lists them), "
                    "e.g. --recipe naive --method awc", "epochs per task", protocols=["P1", "P2"])
    p.add_argument("--recipe", choices=list(RECIPES), help="a 001 Table 2 method: its strategies (default ours)")
    p.add_argument("--ablate", nargs="+", choices=list(ABLATIONS), help="switch off parts of ours (001 Table 4)")
    for key, what in (("nis", "noise identification and separation: on / off and its parameters, e.g. "
                              "separate=always gamma=2 compare_gradient_stop=true (001 Fig. 3)"),
                      ("relearn", "re-learning in each task: on / off and its parameters, e.g. relearn_epoch=1"),
                      ("ewc", "EWC: none, generic (the last task), online (every task so far), adaptive (001 Eq. "
                              "8-9), and its parameters, e.g. online lam=5000 per_sample=false"),
                      ("peers", "a second network: none, coteaching, dividemix, and its parameters, e.g. warmup=1")):
        p.add_argument(f"--{key}", nargs="+", metavar="SWITCH|NAME=VALUE",
                       help=f"{what} (as the config key {key}; default: as the recipe says)")
    p.add_argument("--noise", choices=list(NOISE))
    p.add_argument("--noisy-modality", dest="noisy_modality", choices=list(layout.MODALITIES),
                   help="corrupt this modality in every later task (default: one drawn per task from the seed)")
    p.add_argument("--ratio", type=float, help="fraction of a task's samples corrupted (001: 0.2 or 0.4)")
    p.add_argument("--tasks", type=_at_least(1), help="learn only the first N tasks of the stream (default: all)")
    p.set_defaults(func=cmd_continual)

    from poise.bench.presets import PRESETS as BENCH_PRESETS

    p = sub.add_parser("bench", help="compare methods, fusions and modality subsets over seeds (tables + plots)",
                       description="Train every configuration of a preset (each an ordinary run under "
                       "OUT/runs/), then write OUT/report.md (001 Table 1 and Table 3 analogues, mean +- std over "
                       "seeds, findings), OUT/results.csv and plots. Re-running resumes: finished runs are read "
                       "back. Presets: " + "; ".join(f"{k}: {v.about}" for k, v in BENCH_PRESETS.items()))
    p.add_argument("--preset", choices=list(BENCH_PRESETS), default="quick")
    p.add_argument("--data", default=DEFAULT_DEMO, help=f"MM-Fi root (default {DEFAULT_DEMO})")
    p.add_argument("--out", help="output folder (default runs/bench-PRESET)")
    p.add_argument("--protocol", default="P1")
    p.add_argument("--split", default="S1")
    p.add_argument("--plan", action="store_true", help="print the runs the preset would train, and train nothing")
    _add_epoch_frames(p)
    p.add_argument("--variants", nargs="+", metavar="LABEL",
                   help="only these variants of the preset and the baselines they are paired with (with --seeds: "
                        "more seeds where an interval is too wide; the report then covers only these)")
    _add_run_all_options(p)
    add_no_report(p)
    p.set_defaults(func=cmd_bench)

    from poise.bench.continual.presets import PRESETS as CONTINUAL_PRESETS

    p = sub.add_parser("continual-bench", help="compare the continual methods over seeds (001 Tables 2 and 4, plots)",
                       description="Run every continual configuration of a preset (each an ordinary `poise "
                       "continual` run under OUT/runs/; the clean control stream first, whose score drops set "
                       "NIS's naming thresholds, kept in OUT/thresholds.json), then write OUT/report.md (001 Table 2 "
                       "and Table 4 analogues, what NIS names and sees per corrupted modality, task x task matrices, "
                       "findings), OUT/results.csv (a row per run), OUT/nis.csv (a row per task NIS ran on), "
                       "fig5.png and fig3.png. Re-running resumes: finished runs are read back from their small "
                       "files (without the data), unfinished ones continue after their last task. Presets: "
                       + "; ".join(f"{k}: {v.about}" for k, v in CONTINUAL_PRESETS.items()))
    p.add_argument("--preset", choices=list(CONTINUAL_PRESETS), default="small")
    p.add_argument("--data", help="MM-Fi root with the preset's actions (default: the preset's, "
                   + ", ".join(f"{k} {v.data}" for k, v in CONTINUAL_PRESETS.items()) + ")")
    p.add_argument("--out", help="output folder (default runs/continual-bench-PRESET)")
    p.add_argument("--plan", action="store_true", help="list the runs and the time estimate; train nothing")
    _add_run_all_options(p)
    add_no_report(p)
    p.set_defaults(func=cmd_continual_bench)

    p = sub.add_parser("imbalance-bench", help="balancing methods on a task whose optimum is known (docs/imbalance.md)",
                       description="Train each method over seeds on a controlled-imbalance task "
                       "(poise.ImbalanceTask: its Bayes errors, optimal dependence and Shapley values are known "
                       "in closed form), then write OUT/report.md (each number next to its closed form, and in how "
                       "many seeds it beat the baseline's) and OUT/runs.jsonl. A method is NAME or "
                       "NAME:PARAM=VALUE,...; 'alone' trains each modality's encoder without the others. Seconds "
                       "per run. An OUT of the same preset and settings is resumed: only the missing (method, seed) "
                       "runs train.")
    p.add_argument("--preset", choices=IMBALANCE_PRESETS, default="weak-cluttered")
    p.add_argument("--methods", nargs="+", default=["alone", "baseline", "arl", "dgl"], metavar="METHOD")
    p.add_argument("--seeds", type=_at_least(0), nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=_at_least(1), default=30)
    p.add_argument("--n", type=_at_least(16), default=2000, help="training samples per seed")
    p.add_argument("--hidden", type=_at_least(1), default=16, help="encoder width (ImbalanceTask.model)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="the same for every method")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimiser's)")
    p.add_argument("--out", help="output folder (default runs/imbalance-bench-PRESET); its settings.json "
                   "records the settings, and other settings there are refused")
    p.add_argument("--quiet", action="store_true", help="no line per run")
    p.set_defaults(func=cmd_imbalance_bench)

    p = sub.add_parser("info", help="summarise and check an MM-Fi root (real or synthetic)",
                       description="Summarise an MM-Fi root and check it the way training reads it: every frame of "
                       "every modality is read and each damaged file is named (minutes for a large root; --quick "
                       "checks only the structure: folders, file names and sizes).")
    p.add_argument("root", nargs="?", default=DEFAULT_DEMO)
    p.add_argument("--quick", action="store_true", help="structure only: do not read the frames")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_info)
    return parser


def add_run_options(p, config: str, resume: str, data: str, method: str, epochs: str, protocols=None) -> None:
    """The options ``poise train`` and ``poise continual`` share, each a key of their config (a stream's config
    is a TrainConfig too), with the help texts that differ between them."""
    from poise.choices import ENCODERS, FUSIONS, OPTIMIZERS

    p.add_argument("--config", help=f"YAML file of {config}")
    p.add_argument("--resume", metavar="RUN_DIR", help=resume)
    p.add_argument("--data", help=data)
    p.add_argument("--protocol", choices=protocols)
    p.add_argument("--split")
    p.add_argument("--method", metavar="NAME", help=method)
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a hyper-parameter of the --method "
                   "(repeatable)")
    add_plugin(p)
    p.add_argument("--fusion", choices=list(FUSIONS))
    p.add_argument("--encoder", choices=list(ENCODERS), help="encoder size (default lite; paper wants a GPU)")
    p.add_argument("--modalities", nargs="+", choices=list(layout.MODALITIES))
    p.add_argument("--epochs", type=_at_least(1), help=epochs)
    p.add_argument("--batch-size", dest="batch_size", type=_at_least(1))
    p.add_argument("--optimizer", choices=list(OPTIMIZERS),
                   help="auto: the method's reference optimiser (`poise methods` says which)")
    p.add_argument("--lr", type=float, help="learning rate (default: the optimiser's, see poise/optim.py)")
    p.add_argument("--seed", type=_at_least(0))
    p.add_argument("--out", help="parent folder of run directories (default runs)")
    p.add_argument("--name", help="run directory name")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    p.add_argument("--threads", type=_at_least(0), default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_on_error(p, default=None)
    p.add_argument("--rebuild-cache", dest="rebuild_cache", action="store_true",
                   help="build the packed data cache again even if one matches (e.g. after editing files in place)")
    add_no_report(p)


def add_plugin(p) -> None:
    p.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE",
                   help="import MODULE first: its methods register themselves (repeatable; the run's config.yaml "
                        "keeps it, so resume, robust, report and bench import it again)")


def add_no_report(p) -> None:
    p.add_argument("--no-report", dest="no_report", action="store_true",
                   help="do not write report.html at the end (`poise report` writes it later)")


def add_on_error(p, default=None) -> None:
    """``--on-error``: what a command that reads data does with a damaged file."""
    p.add_argument("--on-error", dest="on_error", choices=["raise", "skip"], default=default,
                   help="a damaged data file: raise (name it and stop; the default) or skip (leave its frames out "
                        "and report them per part)")


def _add_run_all_options(p) -> None:
    """The options of a command that runs many configurations over seeds (``poise.bench.run_all``)."""
    p.add_argument("--seeds", type=_at_least(0), nargs="+", help="override the preset's seeds")
    p.add_argument("--jobs", type=_at_least(1), default=None,
                   help="runs at once, in separate processes (default: one per CPU this process may use, one torch "
                        "thread each: on 2 cores 2 runs x 1 thread train 1.3-1.5x more runs an hour than 1 x 2, and a "
                        "two-thread step slows down badly when anything else runs)")
    p.add_argument("--threads", type=_at_least(0), default=0,
                   help="torch threads per run (default: CPU cores / jobs)")
    p.add_argument("--force", action="store_true", help="run again the runs already in OUT")
    add_on_error(p, default="raise")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
