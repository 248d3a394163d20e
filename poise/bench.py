"""``poise bench``: the papers' comparison on our data, over seeds, as Markdown tables and plots.

- Table 1 analogue (001 Table 1): every method x every fusion, all four modalities; MPJPE / PA-MPJPE (mm) of
  the last epoch on the test split, mean +- std over seeds (sample std, n - 1).
- Table 3 analogue (001 Table 3): joint training (``baseline``, first fusion) on modality subsets: each single
  modality, pairs, the full set.
- Findings computed from those numbers, seed by seed (paired differences): four modalities against RGB +
  LiDAR, each method against joint training, and the std of each modality's unimodal output against the ground
  truth's (a collapsed modality predicts nearly the same pose for every frame).

Every configuration is an ordinary ``poise train`` run under ``OUT/runs/NAME``: a finished run is read back, an
interrupted one resumed, so re-running the same command picks up where it stopped. ``--jobs N`` trains N runs
at once in separate processes (2 processes x 1 thread beat 1 x 2 threads on 2 cores for these small models).
The last epoch is reported, never the best one: picking the best epoch on the test split would be selecting
on the test set.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from poise.data import layout

ALL = tuple(layout.MODALITIES)
SHORT = {"rgb": "R", "lidar": "L", "mmwave": "M", "wifi-csi": "W"}
SINGLES = tuple((m,) for m in ALL)
PAIRS = tuple(itertools.combinations(ALL, 2))
METHODS = ("baseline", "gblending", "ogm_ge", "agm", "modality_resample", "awc", "relearn")


@dataclass(frozen=True)
class Preset:
    methods: tuple
    fusions: tuple
    subsets: tuple  # modality subsets trained with ``baseline`` and the first fusion
    seeds: tuple
    epochs: int
    train: dict = field(default_factory=dict)  # TrainConfig overrides shared by every run
    params: dict = field(default_factory=dict)  # {method: its hyper-parameters}, where not the defaults
    about: str = ""


_SMALL = dict(train_stride=4, dim=64, lidar_points=128, mmwave_points=64, batch_size=32)
PRESETS = {
    "quick": Preset(
        methods=("baseline", "awc", "relearn"), fusions=("concat",),
        subsets=(*SINGLES, ("rgb", "lidar"), ALL), seeds=(0, 1), epochs=8, train=dict(_SMALL, lr_step=5),
        about="the README's main job: joint training, AWC and re-learning, and the subsets that answer "
              "'does fusion lose to RGB + LiDAR', 2 seeds, about 8 minutes on 2 cores"),
    "standard": Preset(
        methods=METHODS, fusions=("concat", "mlp", "attention"), subsets=(*SINGLES, *PAIRS, ALL),
        seeds=(0, 1, 2), epochs=8, train=dict(_SMALL, lr_step=5),
        about="every method x every fusion and every single / pair / full subset, 3 seeds: the numbers in "
              "docs/bench.md (about 60 minutes on 2 cores with --jobs 2)"),
    "tiny": Preset(
        methods=("baseline", "relearn"), fusions=("concat",), subsets=(("rgb",), ALL), seeds=(0, 1), epochs=2,
        train=dict(train_stride=2, dim=16, lidar_points=32, mmwave_points=16, batch_size=64, assess_frames=128,
                   lr_step=1), params={"relearn": {"relearn_epoch": 0}},
        about="a smoke test on `poise simulate --preset tiny` data (seconds)"),
}


def subset_name(modalities) -> str:
    return "all" if tuple(modalities) == ALL else "+".join(SHORT[m] for m in modalities)


def plan(preset: Preset, data: str, out: Path, protocol: str = "P1", split: str = "S1") -> list:
    """The TrainConfigs of a preset, one per (method, fusion, subset, seed), without duplicates."""
    from poise.config import TrainConfig

    cells = [(m, f, ALL) for m in preset.methods for f in preset.fusions]
    cells += [("baseline", preset.fusions[0], tuple(s)) for s in preset.subsets]
    configs, seen = [], set()
    for seed, (method, fusion, modalities) in itertools.product(preset.seeds, cells):  # seed-major: a cut-short
        # bench has whole seeds done, and `--seeds` with those reports them
        name = f"{method}-{fusion}-{subset_name(modalities)}-seed{seed}"
        if name in seen:
            continue
        seen.add(name)
        configs.append(TrainConfig(data=data, method=method, method_params=dict(preset.params.get(method, {})),
                                   fusion=fusion, modalities=list(modalities),
                                   protocol=protocol, split=split, seed=seed, epochs=preset.epochs,
                                   out=str(out / "runs"), name=name, **preset.train))
    return configs


def _summary(config, history: list, run_dir: Path) -> dict:
    last = history[-1]
    row = {"method": config.method, "fusion": config.fusion, "subset": subset_name(config.modalities),
           "seed": config.seed, "epochs": len(history), "test_mpjpe_mm": last["test_mpjpe_mm"],
           "test_pa_mpjpe_mm": last["test_pa_mpjpe_mm"], "gt_std_mm": last.get("gt_std_mm", math.nan),
           "seconds": sum(h["seconds"] for h in history), "run": str(run_dir)}
    for m in config.modalities:
        row[f"shapley_{m}"] = last[f"shapley_{m}"]
        row[f"unimodal_std_mm_{m}"] = last[f"unimodal_std_mm_{m}"]
    return row


def run_one(config, threads: int = 0, force: bool = False) -> dict:
    """Train (or resume, or read back) one configuration; its summary row."""
    import torch

    from poise.config import TrainConfig
    from poise.train import CHECKPOINT, resume, train

    if threads:
        torch.set_num_threads(threads)
    run_dir = Path(config.out) / config.run_name
    metrics = run_dir / "metrics.json"
    if not force and (run_dir / CHECKPOINT).is_file():
        existing = TrainConfig.load(run_dir / "config.yaml")
        if existing != config:
            raise ValueError(f"{run_dir} holds a run with other settings than this bench asks for "
                             f"({settings_diff(existing, config)}); use another --out, or --force to retrain it")
        _check_method_params(run_dir, config)
        history = json.loads(metrics.read_text()) if metrics.is_file() else []
        if len(history) < config.epochs:
            history = resume(run_dir, progress=False).history
    else:
        history = train(config, progress=False, overwrite=True).history
    return _summary(config, history, run_dir)


def settings_diff(existing, asked) -> str:
    """"key: X there, Y asked" for every field where two configs of one dataclass differ."""
    return ", ".join(f"{k}: {getattr(existing, k)!r} there, {getattr(asked, k)!r} asked"
                     for k in vars(asked) if getattr(existing, k) != getattr(asked, k))


def _check_method_params(run_dir: Path, config) -> None:
    """A run is reusable only if its method ran with the hyper-parameters the code would use now (a changed
    default does not show in config.yaml, only in method.json)."""
    from poise import methods

    path = run_dir / "method.json"
    if not path.is_file():
        return
    then = json.loads(path.read_text())["params"]
    now = json.loads(json.dumps(methods.get(config.method, **config.method_params).params()))
    if then != now:
        diff = ", ".join(f"{k}: {then.get(k)!r} there, {now.get(k)!r} now" for k in sorted(set(then) | set(now))
                         if then.get(k) != now.get(k))
        raise ValueError(f"{run_dir} was trained with other {config.method} settings ({diff}); delete it, use "
                         f"another --out, or --force to retrain")


def execute(configs: list, jobs: int = 1, threads: int = 0, force: bool = False, progress: bool = True) -> list:
    """Run every config (``jobs`` at a time, each with ``threads`` torch threads); their summary rows in order."""
    from poise.train import load_datasets

    for modalities in sorted({tuple(c.modalities) for c in configs}):  # build each cache here, not in N workers
        load_datasets(next(c for c in configs if tuple(c.modalities) == modalities), progress=progress)

    def line(config, row) -> str:
        return (f"{config.run_name}: MPJPE {row['test_mpjpe_mm']:.1f} / PA {row['test_pa_mpjpe_mm']:.1f} mm "
                f"({row['seconds']:.0f} s)")

    return run_all(configs, run_one, line, "bench", jobs, threads, force, progress)


def run_all(configs: list, run_one, line, what: str, jobs: int = 1, threads: int = 0, force: bool = False,
            progress: bool = True) -> list:
    """``run_one(config, threads, force)`` for every config, ``jobs`` at a time in spawned processes, with a
    progress bar and ``line(config, row)`` printed as each finishes; the rows in ``configs``' order. The first
    failure stops the pool and names its run."""
    from tqdm import tqdm

    rows: dict = {}
    bar = tqdm(total=len(configs), desc=what, unit="run", disable=not progress)

    def done(config, row):
        rows[config.run_name] = row
        bar.update()
        if progress:
            bar.write(line(config, row))

    if jobs <= 1:
        for config in configs:
            done(config, run_one(config, threads, force))
    else:
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(run_one, c, threads, force): c for c in configs}
            for future in as_completed(futures):
                config = futures[future]
                try:
                    row = future.result()
                except Exception as error:  # stop now instead of after every other run has finished
                    pool.shutdown(cancel_futures=True)
                    raise RuntimeError(f"{what} run {config.run_name} failed: {error}; finished runs are kept, "
                                       f"re-run the same command to resume after fixing it") from error
                done(config, row)
    bar.close()
    return [rows[c.run_name] for c in configs]


# ----------------------------------------------------------------------------------------------------------------
# tables and findings


def mean_sd(values) -> tuple[float, float]:
    values = np.asarray(list(values), dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan


def fmt(values, digits: int = 1) -> str:
    mean, sd = mean_sd(values)
    return f"{mean:.{digits}f}" + ("" if math.isnan(sd) else f" ± {sd:.{digits}f}")


def select(rows, **where) -> list:
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def _by_seed(rows, key: str, **where) -> dict:
    return {r["seed"]: r[key] for r in select(rows, **where)}


def paired(rows, key: str, a: dict, b: dict) -> list:
    """a - b of ``key`` for each seed both have."""
    x, y = _by_seed(rows, key, **a), _by_seed(rows, key, **b)
    return [x[s] - y[s] for s in sorted(set(x) & set(y))]


def methods_table(rows, preset: Preset) -> str:
    head = "| method | " + " | ".join(f"{f} MPJPE | {f} PA-MPJPE" for f in preset.fusions) + " |"
    lines = [head, "|---" * (1 + 2 * len(preset.fusions)) + "|"]
    for method in preset.methods:
        cells = []
        for fusion in preset.fusions:
            sel = select(rows, method=method, fusion=fusion, subset="all")
            cells += [fmt(r["test_mpjpe_mm"] for r in sel), fmt(r["test_pa_mpjpe_mm"] for r in sel)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def subsets_table(rows, preset: Preset) -> str:
    fusion = preset.fusions[0]
    lines = ["| modalities | MPJPE | PA-MPJPE |", "|---|---|---|"]
    for subset in preset.subsets:
        sel = select(rows, method="baseline", fusion=fusion, subset=subset_name(subset))
        label = " + ".join(SHORT[m] for m in subset) if tuple(subset) != ALL else "R + L + M + W (all)"
        lines.append(f"| {label} | {fmt(r['test_mpjpe_mm'] for r in sel)} | {fmt(r['test_pa_mpjpe_mm'] for r in sel)} |")
    return "\n".join(lines)


def collapse_table(rows, preset: Preset) -> str:
    lines = ["| fusion | " + " | ".join(f"{m} std (mm)" for m in ALL) + " | ground truth std (mm) | "
             + " | ".join(f"{m} Shapley" for m in ALL) + " |", "|---" * (2 + 2 * len(ALL)) + "|"]
    for fusion in preset.fusions:
        sel = select(rows, method="baseline", fusion=fusion, subset="all")
        if sel:
            lines.append(f"| {fusion} | " + " | ".join(fmt(r[f"unimodal_std_mm_{m}"] for r in sel) for m in ALL)
                         + f" | {fmt(r['gt_std_mm'] for r in sel)} | "
                         + " | ".join(fmt((r[f"shapley_{m}"] for r in sel), 2) for m in ALL) + " |")
    return "\n".join(lines)


def diff_text(diffs: list) -> str:
    mean, sd = mean_sd(diffs)
    n = len(diffs)
    tail = "" if math.isnan(sd) else f" ± {sd:.1f}"
    return f"{mean:+.1f}{tail} mm (paired over {n} seed{'s' if n != 1 else ''})"


def noise_clause(diffs: list) -> str:
    """Whether a paired difference stands out from seed noise: a two-sided 95 % t-interval on its mean.

    ``""`` when the interval excludes 0, otherwise a clause saying it does not (or that one seed gives no
    estimate of the noise at all).
    """
    n = len(diffs)
    if n < 2:
        return "; one seed: no noise estimate"
    from scipy.stats import t

    mean, sd = mean_sd(diffs)
    half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    if abs(mean) > half:
        return ""
    return f"; within seed noise (95 % t-interval {mean:+.1f} ± {half:.1f} mm includes 0)"


PAPER_ALL_VS_RL = ("paper 000 reports +0.94 mm (53.87 vs 52.93), paper 001 Table 3 reports -0.12 mm "
                   "(52.72 vs 52.84)")


def findings(rows, preset: Preset) -> list[str]:
    """Plain statements from the numbers; each says what it compares, by how much, and whether it beats noise."""
    out = []
    fusion = preset.fusions[0]
    base = dict(method="baseline", fusion=fusion)
    rl = subset_name(("rgb", "lidar"))
    d = paired(rows, "test_mpjpe_mm", dict(subset="all", **base), dict(subset=rl, **base))
    if d:
        mean = float(np.mean(d))
        verdict = "loses to" if mean > 0 else "beats" if mean < 0 else "ties with"
        out.append(f"Four-modality joint training ({fusion}) {verdict} RGB + LiDAR: MPJPE difference "
                   f"all - (R + L) = {diff_text(d)}{noise_clause(d)}; {PAPER_ALL_VS_RL}.")
    if all(s in preset.subsets for s in SINGLES):  # "best single modality" needs all four
        means = {m: [r["test_mpjpe_mm"] for r in select(rows, subset=subset_name((m,)), **base)] for m in ALL}
        if all(means.values()):
            best = min(means, key=lambda m: np.mean(means[m]))
            d = paired(rows, "test_mpjpe_mm", dict(subset="all", **base), dict(subset=subset_name((best,)), **base))
            if d:
                out.append(f"Against its best single modality ({best}) the four-modality model differs by "
                           f"{diff_text(d)}{noise_clause(d)}.")
    sel = select(rows, subset="all", **base)
    if sel:
        gt = np.mean([r["gt_std_mm"] for r in sel])
        parts = [f"{m} {np.mean([r[f'unimodal_std_mm_{m}'] for r in sel]):.1f} mm "
                 f"({np.mean([r[f'unimodal_std_mm_{m}'] for r in sel]) / gt:.0%})" for m in ALL]
        out.append(f"Unimodal-output std in joint training ({fusion}), against the ground truth's {gt:.1f} mm: "
                   + ", ".join(parts) + ". A collapsed modality's share is near 0 %.")
    for fusion_ in preset.fusions:
        for method in preset.methods:
            if method == "baseline":
                continue
            d = paired(rows, "test_mpjpe_mm", dict(method=method, fusion=fusion_, subset="all"),
                       dict(method="baseline", fusion=fusion_, subset="all"))
            if d:
                mean = float(np.mean(d))
                word = "better" if mean < 0 else "worse" if mean > 0 else "no different"
                out.append(f"{method} vs joint training ({fusion_}): {diff_text(d)} MPJPE, {word}{noise_clause(d)}.")
    return out


def report(rows, preset: Preset, name: str, out: Path, command: str, seconds: float, data: str) -> str:
    """Write ``results.csv``, the plots and ``report.md`` into ``out``; return the Markdown."""
    keys = list(rows[0]) + sorted({k for r in rows for k in r} - set(rows[0]))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(rows)
    plots = plot_bench(rows, preset, out)
    settings = ", ".join(f"{k}={v}" for k, v in preset.train.items())
    md = [f"# poise bench: preset `{name}`", "",
          f"Command: `{command}`", "",
          f"Preset: {preset.about}. Data: {data}.", "",
          f"{len(rows)} runs, {preset.epochs} epochs each, seeds {list(preset.seeds)}; {settings}. Last-epoch test "
          f"MPJPE / PA-MPJPE in mm, mean ± std over seeds. Wall time of this invocation {seconds / 60:.1f} min "
          f"(runs already finished are read back, not retrained); training time "
          f"{sum(r['seconds'] for r in rows) / 60:.1f} min summed over runs.", "",
          *([f"Method settings other than the defaults: {preset.params}.", ""] if preset.params else []),
          "## Methods x fusion (001 Table 1 analogue)", "", methods_table(rows, preset), "",
          f"## Modality subsets, joint training, {preset.fusions[0]} fusion (001 Table 3 analogue)", "",
          subsets_table(rows, preset), "",
          "## Weak-modality collapse: unimodal-output std and Shapley-Pearson scores, joint training", "",
          collapse_table(rows, preset), "",
          "## Findings", "", *[f"- {line}" for line in findings(rows, preset)], "",
          "## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    text = "\n".join(md)
    (out / "report.md").write_text(text)
    return text


def plot_bench(rows, preset: Preset, out: Path) -> list[Path]:
    from poise.plots import plt

    paths = []
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(preset.methods) * len(preset.fusions) ** 0.5), 3.8))
    width = 0.8 / len(preset.fusions)
    for i, fusion in enumerate(preset.fusions):
        stats = [mean_sd(r["test_mpjpe_mm"] for r in select(rows, method=m, fusion=fusion, subset="all"))
                 for m in preset.methods]
        ax.bar(np.arange(len(preset.methods)) + i * width, [s[0] for s in stats], width,
               yerr=[0 if math.isnan(s[1]) else s[1] for s in stats], capsize=3, label=fusion)
    ax.set_xticks(np.arange(len(preset.methods)) + width * (len(preset.fusions) - 1) / 2, preset.methods,
                  rotation=20)
    ax.set_ylabel("test MPJPE (mm)")
    ax.set_title("methods x fusion, mean ± std over seeds")
    ax.legend()
    save_figure(fig, out / "methods.png", paths)

    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(preset.subsets)), 3.5))
    names = [subset_name(s) for s in preset.subsets]
    stats = [mean_sd(r["test_mpjpe_mm"] for r in select(rows, method="baseline", fusion=preset.fusions[0],
                                                         subset=n)) for n in names]
    ax.bar(range(len(names)), [s[0] for s in stats], yerr=[0 if math.isnan(s[1]) else s[1] for s in stats],
           capsize=3, color="tab:gray")
    ax.set_xticks(range(len(names)), names, rotation=30)
    ax.set_ylabel("test MPJPE (mm)")
    ax.set_title(f"modality subsets, joint training ({preset.fusions[0]})")
    save_figure(fig, out / "subsets.png", paths)

    shown = [m for m in preset.methods if select(rows, method=m, fusion=preset.fusions[0], subset="all",
                                                  seed=preset.seeds[0])]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3), sharey=True, squeeze=False)
    for ax, method in zip(axes[0], shown):
        run = Path(select(rows, method=method, fusion=preset.fusions[0], subset="all", seed=preset.seeds[0])[0]["run"])
        history = json.loads((run / "metrics.json").read_text())
        for m in ALL:
            ax.plot([h["epoch"] for h in history], [h[f"shapley_{m}"] for h in history], label=m)
        ax.set_title(method)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("Shapley-Pearson score")
    axes[0][-1].legend(fontsize=7)
    save_figure(fig, out / "contributions.png", paths)
    return paths


def save_figure(fig, path: Path, paths: list) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    from poise.plots import plt

    plt.close(fig)
    paths.append(path)


def bench(preset_name: str, data: str, out, jobs: int = 1, threads: int = 0, seeds=None, force: bool = False,
          progress: bool = True, command: str = "", protocol: str = "P1", split: str = "S1") -> str:
    """Run a preset (optionally with other ``seeds``) into ``out``; returns the report's Markdown."""
    if preset_name not in PRESETS:
        raise ValueError(f"unknown bench preset {preset_name!r}: choose one of {', '.join(PRESETS)}")
    preset = PRESETS[preset_name]
    if seeds:
        preset = replace(preset, seeds=tuple(seeds))
    if not Path(data).is_dir():
        raise FileNotFoundError(f"{data}: no such MM-Fi root; write the synthetic one with "
                                f"`poise simulate --preset demo --out {data}`")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = threads or max(1, (os.cpu_count() or 1) // max(jobs, 1))
    start = time.perf_counter()
    rows = execute(plan(preset, data, out, protocol, split), jobs=jobs, threads=threads, force=force, progress=progress)
    return report(rows, preset, preset_name, out, command or f"poise bench --preset {preset_name}",
                  time.perf_counter() - start, f"`{data}`, protocol {protocol}, split {split}")
