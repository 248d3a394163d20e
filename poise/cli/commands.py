"""The subcommands: each a thin wrapper around a library function, importing it when run (so that building
the parser stays light)."""

from __future__ import annotations

import sys
import time

from poise.errors import PoiseError

DEFAULT_DEMO = "data/mmfi-demo"


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

    overrides = config_options(args, TrainConfig)
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

    from poise.continual.config import SWITCH_DEFAULTS, ContinualConfig
    from poise.continual.runner import resume, run_continual, summary

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {**config_options(args, ContinualConfig),
                 **{k: _strategy(k, getattr(args, k)) for k in SWITCH_DEFAULTS}}
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
                        *([f"--data {args.data}"] if args.data else []),
                        *([f"--out {args.out}"] if args.out else []),
                        *([f"--seeds {' '.join(map(str, args.seeds))}"] if args.seeds else []),
                        *([f"--jobs {args.jobs}"] if args.jobs not in (None, 1) else []),
                        *(["--on-error skip"] if args.on_error == "skip" else [])])
    text = continual_bench(args.preset, args.data, out, jobs=args.jobs or 0, threads=args.threads, seeds=args.seeds,
                           force=args.force, progress=not args.quiet, command=command, on_error=args.on_error,
                           dry_run=args.plan)
    print(text)
    if args.plan:
        return 0
    print(f"saved {out}/report.md, {out}/results.csv, {out}/nis.csv and the plots")
    _report(out, args)
    return 0


def cmd_imbalance_bench(args) -> int:
    from poise.bench.imbalance import Settings, imbalance_bench

    out = args.out or f"runs/imbalance-bench-{args.preset}"
    command = " ".join(["poise imbalance-bench --preset", args.preset, "--methods", *args.methods,
                        "--seeds", *map(str, args.seeds), f"--epochs {args.epochs} --n {args.n} --hidden {args.hidden}",
                        f"--optimizer {args.optimizer}", *([f"--lr {args.lr:g}"] if args.lr is not None else [])])
    settings = Settings(n=args.n, epochs=args.epochs, hidden=args.hidden, optimizer=args.optimizer, lr=args.lr)
    print(imbalance_bench(args.preset, args.methods, args.seeds, settings, out, command, progress=not args.quiet))
    print(f"saved {out}/report.md and {out}/runs.jsonl")
    return 0


def cmd_methods(args) -> int:
    import inspect
    import textwrap

    from poise import methods

    methods.import_plugins(args.plugins or [])
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


def config_options(args, config_class) -> dict:
    """The command-line options that are keys of ``config_class`` (a TrainConfig or ContinualConfig), each as
    given or None: an option is a config key by having its name, so no list of keys is kept here."""
    import dataclasses

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class) if hasattr(args, f.name)}


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


def _strategy(key: str, tokens: list | None):
    """``--nis on``, ``--ewc online lam=5000``, ``--nis separate=always``: a switch (on / off, or a mode for ewc
    and peers) and NAME=VALUE parameters, as the config key of the same name takes them."""
    from poise.continual.config import MODE_KEYS, SWITCH_KEY

    if tokens is None:
        return None
    switch, params = None, {}
    for token in tokens:
        if "=" in token:
            name, value = _parse_param(token, flag=f"--{key}")
            params[name] = value
        elif switch is None:
            switch = token if key in MODE_KEYS else {"on": True, "true": True, "off": False,
                                                     "false": False}.get(token, token)
        else:
            raise PoiseError(f"--{key} {' '.join(tokens)}: one switch at most, then NAME=VALUE parameters")
    if not params:
        return switch
    if switch is not None:
        params[SWITCH_KEY[key]] = switch
    return params
