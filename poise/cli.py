"""The ``poise`` command. Each subcommand is a thin wrapper around a library function."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time


from poise.data import layout
from poise.errors import PoiseError

DEFAULT_DEMO = "data/mmfi-demo"
DEFAULT_CONTINUAL = "data/mmfi-continual"


def cmd_simulate(args) -> int:
    from poise.data.synth.writer import PRESETS, simulate

    start = time.perf_counter()
    counts = simulate(args.out, preset=args.preset, seed=args.seed, workers=args.workers, force=args.force,
                      progress=not args.quiet)
    took = time.perf_counter() - start
    total = len(PRESETS[args.preset].subjects) * len(PRESETS[args.preset].actions)
    if counts["written"] == 0:
        print(f"{args.out}: the {args.preset} dataset (seed {args.seed}) is already complete; nothing to do "
              f"(--force rewrites it)")
    else:
        print(f"{args.out}: wrote {counts['written']} of {total} sequences of the {args.preset} preset "
              f"(seed {args.seed}) in {took:.1f} s")
    return 0


def cmd_info(args) -> int:
    from poise.data.info import dataset_summary

    text, clean = dataset_summary(args.root, full=not args.quick, progress=not args.quiet)
    print(text)
    return 0 if clean else 1  # a script notices damaged or skipped files


def cmd_calibrate(args) -> int:
    from pathlib import Path

    from poise import calibration
    from poise.bench.presets import CONVERGED_EPOCHS, SHARED
    from poise.bench.runs import plan, plan_text

    seeds = tuple(args.seeds or calibration.SEEDS)
    epochs = args.epochs or CONVERGED_EPOCHS
    settings = {**SHARED, "epoch_frames": args.epoch_frames} if args.epoch_frames else None
    if args.plan:
        preset = calibration.preset(seeds, epochs, settings)
        print(plan_text(preset, plan(preset, args.data, Path(args.out), args.protocol, args.split)))
        return 0
    command = " ".join(["poise calibrate", *([f"--data {args.data}"] if args.data != DEFAULT_DEMO else []),
                        *([f"--seeds {' '.join(map(str, seeds))}"] if args.seeds else []),
                        *([f"--epochs {epochs}"] if args.epochs else []),
                        *([f"--epoch-frames {args.epoch_frames}"] if args.epoch_frames else []),
                        *([f"--out {args.out}"] if args.out != "runs/calibration" else [])])
    report = calibration.calibrate(args.data, args.out, seeds=seeds, epochs=epochs, jobs=args.jobs or 0,
                                   threads=args.threads, force=args.force, progress=not args.quiet,
                                   protocol=args.protocol, split=args.split, on_error=args.on_error, command=command,
                                   settings=settings)
    print(calibration.format_report(report))
    paths = calibration.save(report, args.out)
    print("saved " + ", ".join(str(p) for p in paths))
    return 0


def cmd_train(args) -> int:
    import torch

    from poise import distributed

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tensorboard:  # on every rank, before any of them starts
        from poise.tensorboard import require

        require()
    distributed.init()  # under torchrun: join the process group (gloo, or NCCL on CUDA); otherwise nothing
    try:
        run = _train_or_resume(args)
        main = distributed.is_main()
    finally:
        distributed.close()
    if main:
        last = run.history[-1]
        print(f"{run.dir}: {run.epoch} epochs; test MPJPE {last['test_mpjpe_mm']:.1f} mm, PA-MPJPE "
              f"{last['test_pa_mpjpe_mm']:.1f} mm")
        _report(run.dir, args, run=run)
    return 0


def _report(path, args, run=None) -> None:
    """The HTML report a command writes at its end (``--no-report``: none), and where it is. A report that
    cannot be written is a warning: the training it reports on has finished and is saved."""
    if getattr(args, "no_report", False):
        return
    from poise.report import write_report

    try:
        print(f"report: {write_report(path, run=run)}")
    except (PoiseError, OSError) as err:
        print(f"poise {args.command}: warning: report not written ({err}); write it with `poise report {path}`",
              file=sys.stderr)


def cmd_show(args) -> int:
    from poise.show import show

    path = show(args.root, args.subject, args.action, args.frame, out=args.out, gif=args.gif, to=args.to,
                step=args.step, overwrite=args.overwrite)
    print(f"saved {path}")
    return 0


def cmd_report(args) -> int:
    from poise.report import write_report

    path = write_report(args.path, poses=not args.no_poses, frames=args.frames, worst=args.worst)
    print(f"saved {path}")
    return 0


def _train_or_resume(args):
    from poise.config import TrainConfig
    from poise.train import resume, train

    overrides = {k: getattr(args, k) for k in ("data", "method", "fusion", "encoder", "rgb_window", "modalities",
                                                 "protocol", "split", "epochs", "batch_size", "optimizer", "lr",
                                                 "holdout", "on_error", "seed", "out", "name")}
    if args.resume:
        ignored = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None and k != "epochs"]
        ignored += ["--config"] * bool(args.config) + ["--param"] * bool(args.param)
        ignored += ["--overwrite"] * bool(args.overwrite)
        if ignored:
            raise PoiseError(f"--resume continues {args.resume} with its own config.yaml; {', '.join(ignored)} "
                             f"would change that run: drop them (only --epochs extends it), or start a new run")
        return resume(args.resume, progress=not args.quiet, epochs=args.epochs, rebuild_cache=args.rebuild_cache,
                      tensorboard=args.tensorboard)
    if args.param:
        overrides["method_params"] = dict(_parse_param(p) for p in args.param)
    if args.config:
        config = TrainConfig.load(args.config, **overrides)
    else:
        config = TrainConfig.from_dict({k: v for k, v in overrides.items() if v is not None}, source="command line")
    return train(config, progress=not args.quiet, overwrite=args.overwrite, rebuild_cache=args.rebuild_cache,
                 tensorboard=args.tensorboard)


def cmd_continual(args) -> int:
    import torch

    from poise.continual.config import ContinualConfig
    from poise.continual.runner import resume, run_continual, summary

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {k: getattr(args, k) for k in ("data", "protocol", "split", "recipe", "method", "ablate", "noise",
                                                 "noisy_modality", "ratio", "tasks", "on_error", "epochs", "fusion",
                                                 "seed", "out", "name")}
    overrides.update({k: _strategy(k, getattr(args, k)) for k in STRATEGIES})
    if args.param:
        overrides["method_params"] = dict(_parse_param(p) for p in args.param)
    if args.resume:
        flags = {"method_params": "param"}
        ignored = [f"--{flags.get(k, k).replace('_', '-')}" for k, v in overrides.items() if v is not None]
        ignored += ["--config"] * bool(args.config) + ["--overwrite"] * bool(args.overwrite)
        if ignored:
            raise PoiseError(f"--resume continues {args.resume} with its own config.yaml; {', '.join(ignored)} "
                             f"would change that run: drop them, or start a new run")
        run = resume(args.resume, progress=not args.quiet, rebuild_cache=args.rebuild_cache)
    else:
        if args.config:
            config = ContinualConfig.load(args.config, **overrides)
        else:
            config = ContinualConfig.from_dict({k: v for k, v in overrides.items() if v is not None},
                                               source="command line")
        run = run_continual(config, progress=not args.quiet, overwrite=args.overwrite,
                            rebuild_cache=args.rebuild_cache)
    s = summary(run)
    text = f"{run.dir}: {s['tasks_done']} tasks; avg-MPJPE {s['avg_mpjpe_mm'][-1]:.1f} mm, avg-PA-MPJPE " \
           f"{s['avg_pa_mpjpe_mm'][-1]:.1f} mm, mean forgetting {s['mean_forgetting_mm']:+.1f} mm"
    if "nis_naming_accuracy" in s:
        text += (f"; NIS named the noisy modality in {s['nis_naming_accuracy']:.0%} of tasks, clean precision "
                 f"{s['nis_clean_precision']:.3f}, noisy recall {s['nis_noisy_recall']:.2f}")
    print(text)
    _report(run.dir, args)
    return 0


def cmd_continual_bench(args) -> int:
    from poise.bench.continual import continual_bench

    out = args.out or f"runs/continual-bench-{args.preset}"
    command = " ".join(["poise continual-bench --preset", args.preset,
                        *([f"--data {args.data}"] if args.data != DEFAULT_CONTINUAL else []),
                        *([f"--out {args.out}"] if args.out else []),
                        *([f"--seeds {' '.join(map(str, args.seeds))}"] if args.seeds else []),
                        *([f"--jobs {args.jobs}"] if args.jobs not in (None, 1) else []),
                        *(["--on-error skip"] if args.on_error == "skip" else [])])
    text = continual_bench(args.preset, args.data, out, jobs=args.jobs or 0, threads=args.threads, seeds=args.seeds,
                           force=args.force, progress=not args.quiet, command=command, on_error=args.on_error)
    print(text)
    print(f"saved {out}/report.md, {out}/results.csv and the plots")
    _report(out, args)
    return 0


def cmd_methods(args) -> int:
    import inspect
    import textwrap

    from poise import methods

    for name in methods.available():
        method = type(methods.get(name))
        doc = inspect.getdoc(inspect.getmodule(method)) or inspect.getdoc(method) or ""
        first = " ".join(doc.split("\n\n")[0].split())  # the module's first paragraph: the paper and equation
        optimizer = method.reference_optimizer + (f" {method.reference_lr:g}" if method.reference_lr else "")
        print(f"{name}  [{optimizer}]")
        print(textwrap.fill(first, width=100, initial_indent="    ", subsequent_indent="    "))
    return 0


def cmd_contrib(args) -> int:
    from poise.contrib.report import contribution_report, format_report, save_report
    from poise.train import load_run

    run = load_run(args.run_dir)
    report = contribution_report(run)
    print(format_report(report))
    save_report(report, run.dir)
    print(f"saved {run.dir / 'contrib.json'} and {run.dir / 'contrib.png'}")
    return 0


def cmd_robust(args) -> int:
    from poise.robust import format_robustness, robustness, save_robustness
    from poise.train import load_run

    run = load_run(args.run_dir)
    report = robustness(run, drops=args.drop, seeds=args.seeds)
    print(format_robustness(report))
    paths = save_robustness(report, run.dir)
    print("saved " + ", ".join(str(p) for p in paths))
    return 0


def cmd_bench(args) -> int:
    from poise.bench import bench

    out = args.out or f"runs/bench-{args.preset}"
    command = " ".join(["poise bench --preset", args.preset, *([f"--data {args.data}"] if args.data != DEFAULT_DEMO
                                                                else []),
                        *([f"--protocol {args.protocol}"] if args.protocol != "P1" else []),
                        *([f"--split {args.split}"] if args.split != "S1" else []),
                        *([f"--out {args.out}"] if args.out else []),
                        *([f"--variants {' '.join(args.variants)}"] if args.variants else []),
                        *([f"--seeds {' '.join(map(str, args.seeds))}"] if args.seeds else []),
                        *([f"--epoch-frames {args.epoch_frames}"] if args.epoch_frames else []),
                        *([f"--jobs {args.jobs}"] if args.jobs not in (None, 1) else []),
                        *(["--on-error skip"] if args.on_error == "skip" else [])])
    text = bench(args.preset, args.data, out, jobs=args.jobs or 0, threads=args.threads, seeds=args.seeds,
                 force=args.force, progress=not args.quiet, command=command, protocol=args.protocol, split=args.split,
                 dry_run=args.plan, on_error=args.on_error, variants=args.variants, epoch_frames=args.epoch_frames or 0)
    print(text)
    if not args.plan:
        print(f"saved {out}/report.md, {out}/results.csv and the plots")
        _report(out, args)
    return 0


def _parse_param(text: str, flag: str = "--param"):
    import yaml

    if "=" not in text:
        raise PoiseError(f"{flag} {text!r}: write NAME=VALUE, e.g. --param alpha_s=20000")
    key, value = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise PoiseError(f"{flag} {text!r}: cannot read the value {value!r}; write a number, true/false or a word, "
                         f"e.g. --param alpha_s=20000") from None


STRATEGIES = ("nis", "relearn", "ewc", "peers")  # ContinualConfig's strategy keys, one flag each


def _strategy(key: str, tokens: list | None):
    """``--nis on``, ``--ewc online lam=5000``, ``--nis separate=always``: a switch (on / off, or a mode for ewc
    and peers) and NAME=VALUE parameters, as the config key of the same name takes them."""
    if tokens is None:
        return None
    switch, params = None, {}
    for token in tokens:
        if "=" in token:
            name, value = _parse_param(token, flag=f"--{key}")
            params[name] = value
        elif switch is None:
            switch = {"on": True, "true": True, "off": False, "false": False}.get(token, token) \
                if key in ("nis", "relearn") else token
        else:
            raise PoiseError(f"--{key} {' '.join(tokens)}: one switch at most, then NAME=VALUE parameters")
    if not params:
        return switch
    if switch is not None:
        params["mode" if key in ("ewc", "peers") else "on"] = switch
    return params


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

    from poise.choices import ENCODERS, FUSIONS, OPTIMIZERS

    p = sub.add_parser("methods", help="list the balancing methods, with the paper and equation each implements",
                       description="Every registered method (poise's and any a plugin registered), its reference "
                       "optimiser (what `--optimizer auto` uses) and the first paragraph of its documentation.")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("train", help="train a multi-modal pose model with a balancing method",
                       description="Train on an MM-Fi root (the synthetic demo by default). Writes a run directory "
                       "(config, per-epoch metrics and contribution scores, plots, checkpoint). Options override "
                       "--config; --resume RUN_DIR continues an interrupted run.")
    p.add_argument("--config", help="YAML file of TrainConfig keys (see poise/config.py)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its last checkpoint")
    p.add_argument("--data", help=f"MM-Fi root (default {DEFAULT_DEMO})")
    p.add_argument("--method", metavar="NAME", help="a balancing method (default baseline; `poise methods` lists "
                   "them, with the paper and equation each implements)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a method hyper-parameter (repeatable)")
    p.add_argument("--fusion", choices=list(FUSIONS))
    p.add_argument("--encoder", choices=list(ENCODERS), help="encoder size (default lite; paper wants a GPU)")
    p.add_argument("--rgb-window", dest="rgb_window", type=_at_least(0),
                   help="RGB keypoint frames on each side (temporal context for the paper TCN)")
    p.add_argument("--modalities", nargs="+", choices=list(layout.MODALITIES))
    p.add_argument("--protocol")
    p.add_argument("--split")
    p.add_argument("--epochs", type=_at_least(1))
    p.add_argument("--batch-size", dest="batch_size", type=_at_least(1))
    p.add_argument("--optimizer", choices=list(OPTIMIZERS),
                   help="auto (default): the method's reference optimiser (Adam; SGD for ogm_ge and agm)")
    p.add_argument("--lr", type=float, help="learning rate (default: the optimiser's, see poise/optim.py)")
    p.add_argument("--holdout", type=float,
                   help="fraction of training sequences held out as a validation set (gblending needs one)")
    p.add_argument("--seed", type=_at_least(0))
    p.add_argument("--out", help="parent folder of run directories (default runs)")
    p.add_argument("--name", help="run directory name")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    p.add_argument("--threads", type=_at_least(0), default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_on_error(p, default=None)
    p.add_argument("--rebuild-cache", dest="rebuild_cache", action="store_true",
                   help="build the packed data cache again even if one matches (e.g. after editing files in place)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log every per-epoch number to RUN_DIR/tensorboard (pip install 'poise[tensorboard]'; "
                        "watch with `tensorboard --logdir RUN_DIR/tensorboard`)")
    add_no_report(p)
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
    p.add_argument("--config", help="YAML file of ContinualConfig keys (see poise/continual/config.py)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run after its last finished task")
    p.add_argument("--data", help="MM-Fi root with every action of the protocol (default data/mmfi-continual, "
                   "from `poise simulate --preset continual`)")
    p.add_argument("--protocol", choices=["P1", "P2"])
    p.add_argument("--split")
    p.add_argument("--recipe", choices=list(RECIPES), help="a 001 Table 2 method: its strategies (default ours)")
    p.add_argument("--ablate", nargs="+", choices=list(ABLATIONS), help="switch off parts of ours (001 Table 4)")
    p.add_argument("--method", metavar="NAME", help="a Setting-1 balancing method trained inside every task "
                   "(default baseline; `poise methods` lists them), e.g. --recipe naive --method awc")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="a hyper-parameter of the --method (repeatable)")
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
    p.add_argument("--epochs", type=_at_least(1), help="training epochs per task")
    p.add_argument("--fusion", choices=list(FUSIONS))
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
                       "continual` run under OUT/runs/), then write OUT/report.md (001 Table 2 and Table 4 "
                       "analogues, NIS quality, task x task matrices, findings), OUT/results.csv, fig5.png and "
                       "fig3.png. Re-running resumes: finished runs are read back, unfinished ones continue after "
                       "their last task. Presets: " + "; ".join(f"{k}: {v.about}" for k, v in CONTINUAL_PRESETS.items()))
    p.add_argument("--preset", choices=list(CONTINUAL_PRESETS), default="small")
    p.add_argument("--data", default=DEFAULT_CONTINUAL,
                   help=f"MM-Fi root with every action of the protocols (default {DEFAULT_CONTINUAL}, from "
                        f"`poise simulate --preset continual`)")
    p.add_argument("--out", help="output folder (default runs/continual-bench-PRESET)")
    _add_run_all_options(p)
    add_no_report(p)
    p.set_defaults(func=cmd_continual_bench)

    p = sub.add_parser("info", help="summarise and check an MM-Fi root (real or synthetic)",
                       description="Summarise an MM-Fi root and check it the way training reads it: every frame of "
                       "every modality is read and each damaged file is named (minutes for a large root; --quick "
                       "checks only the structure: folders, file names and sizes).")
    p.add_argument("root", nargs="?", default=DEFAULT_DEMO)
    p.add_argument("--quick", action="store_true", help="structure only: do not read the frames")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_info)
    return parser


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


def _terminated(signum, frame):
    raise KeyboardInterrupt  # SIGTERM ends a command as Ctrl-C does: what finished is said and kept


class _Console(logging.Handler):
    """The library's log (``logging.getLogger("poise")``) on stderr, through tqdm so that progress bars stay whole:
    progress lines as they are, warnings prefixed ``poise: warning:``."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        text = record.getMessage()
        tqdm.write(text if record.levelno < logging.WARNING else f"poise: warning: {text}", file=sys.stderr)


def log_to_console() -> None:
    """What a command line wants: poise's own log, info and up, on stderr (one handler per process). A Python
    user of the library chooses their own handlers (``logging.basicConfig(level=logging.INFO)`` shows the
    progress lines; without any, Python prints warnings only)."""
    logger = logging.getLogger("poise")
    if not any(isinstance(h, _Console) for h in logger.handlers):
        logger.addHandler(_Console())
    logger.setLevel(logging.INFO)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    log_to_console()
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if on_main_thread else None
    try:
        return _run(args)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run(args) -> int:
    try:
        return args.func(args)
    except (PoiseError, OSError) as err:  # a user-fixable problem (OSError: FileExistsError, a missing file, ...)
        print(f"poise {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"poise {args.command}: interrupted; what finished is saved (a run's last epoch or task): continue "
              f"a run with --resume RUN_DIR, and re-run simulate or a bench to finish it", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
