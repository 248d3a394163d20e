"""``poise imbalance-bench``: which balancing methods move a model toward the known optimum on an
``ImbalanceTask`` (``docs/imbalance.md``), over seeds, each number next to its closed form.

Each method (``name`` or ``name:param=value,...``) trains the preset's model with ``poise.fit`` (the same data,
model seed, epochs and optimiser for every method), then, on a fresh test draw of 4000 samples:
- ``fused``: the test MSE, next to the Bayes MSE of all modalities;
- ``probe_<m>``: what encoder m knows, whatever the head does with it: the test MSE of a least-squares readout
  of y from its features (fitted on the training draw), next to the Bayes MSE of m alone;
- ``uni_<m>``: the model's own unimodal output (``decode(features, present=(m,))``, the others zeroed);
- ``dep_<m>``: the model's dependence share, mean |decode({m}) - decode({})| normalised (ARL's d; the decode is
  additive over modalities, so this is the Shapley split), next to ``ImbalanceTask.dependence()``;
- ``shap_<m>``: Shapley values of the trained model with the ``neg_mse`` profit, next to the closed form's.
``alone`` trains each modality's encoder on its own (a one-modality task with the same sensor and samples): what
an encoder learns in those epochs without a competitor. ``OUT/runs.jsonl`` holds one line per run,
``OUT/report.md`` the table: each number's mean and sd over seeds and in how many seeds it beat the baseline's,
``OUT/settings.json`` the preset and settings, so that a rerun with more methods or seeds trains only those.
"""

from __future__ import annotations

import collections
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import poise
from poise import methods
from poise.errors import PoiseError, TrainingDiverged
from poise.tasks import ImbalanceTask

TEST_FRAMES = 4000
# What every run shares beyond Settings; recorded in settings.json, so a folder of runs made otherwise is refused.
RECIPE = {"test_frames": TEST_FRAMES, "batch_size": 64, "assess_frames": 256, "holdout_if_needed": 0.2,
          "data_seeds": "train 1 + 10 seed, test 2 + 10 seed"}


@dataclass(frozen=True)
class Settings:
    """What every run of a bench shares: training samples, epochs, encoder width, optimiser and learning rate."""

    n: int = 2000
    epochs: int = 30
    hidden: int = 16
    optimizer: str = "adam"
    lr: float | None = None


def parse_method(spec: str) -> tuple[str, dict]:
    """``arl:gamma=0,temperature=1`` -> ("arl", {"gamma": 0.0, "temperature": 1.0})."""
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            params[key] = float(value)
        except ValueError:
            params[key] = value
    return name, params


def probe_mse(features_train, y_train, features_test, y_test) -> float:
    """Test MSE of the least-squares readout (with intercept) fitted on the training features."""
    design = np.c_[features_train, np.ones(len(features_train))]
    coef = np.linalg.lstsq(design, y_train, rcond=None)[0]
    return float(np.mean((np.c_[features_test, np.ones(len(features_test))] @ coef - y_test) ** 2))


@torch.no_grad()
def measure(task, model, train, test) -> dict:
    model.eval()
    f_train = model.encode(train.batch(np.arange(len(train))))
    f_test = model.encode(test.batch(np.arange(len(test))))
    y_train, y_test = train.target.double().numpy(), test.target.double().numpy()
    out = {"fused": float(((model.decode(f_test) - test.target) ** 2).mean())}
    for m in task.modalities:
        out[f"probe_{m}"] = probe_mse(f_train[m].double().numpy(), y_train, f_test[m].double().numpy(), y_test)
        out[f"uni_{m}"] = float(((model.decode(f_test, present=(m,)) - test.target) ** 2).mean())
    empty = model.decode(f_test, present=())
    reach = {m: float((model.decode(f_test, present=(m,)) - empty).abs().mean()) for m in task.modalities}
    out.update({f"dep_{m}": v / (sum(reach.values()) or 1.0) for m, v in reach.items()})
    if len(task.modalities) > 1:
        scores = poise.contributions(model, test, profit="neg_mse", frames=len(test)).scores
        out.update({f"shap_{m}": v for m, v in scores.items()})
    return out


def train_one(task, name: str, params: dict, seed: int, settings: Settings) -> dict:
    """One run: data seeds 1 + 10 seed (train) and 2 + 10 seed (test), model seed ``seed``."""
    train, test = task.data(settings.n, seed=1 + 10 * seed), task.data(TEST_FRAMES, seed=2 + 10 * seed)
    if name == "alone":
        out = {"seconds": 0.0}
        for m in task.modalities:
            sub = ImbalanceTask({m: task.noise[m]}, dim=task.dim, sees={m: task.sees[m]},
                                nuisance={m: task.nuisance[m]}, nuisance_sd=task.nuisance_sd,
                                input_dims={m: task.input_dims[m]}, seed=task.seed)  # the same sensor and samples
            one = train_one(sub, "baseline", {}, seed, settings)
            out[f"probe_{m}"], out[f"uni_{m}"] = one[f"probe_{m}"], one["fused"]
            out["seconds"] += one["seconds"]
        return out
    model = task.model(hidden=settings.hidden, seed=seed)
    config = dict(epochs=settings.epochs, batch_size=RECIPE["batch_size"], optimizer=settings.optimizer, seed=seed,
                  progress=False, eval_every=10_000, lr_step=10_000, assess_frames=RECIPE["assess_frames"])
    if settings.lr is not None:
        config["lr"] = settings.lr
    if type(methods.get(name)).needs_holdout:
        config["holdout"] = RECIPE["holdout_if_needed"]
    start = time.perf_counter()
    poise.fit(model, train, name, method_params=params, **config)
    return {**measure(task, model, train, test), "seconds": time.perf_counter() - start}


def table(task, rows: list[dict]) -> str:
    """Mean and sd over seeds of each number, and in how many seeds it is below the baseline's."""
    by = collections.defaultdict(dict)
    for row in rows:
        by[row["method"]][row["seed"]] = row
    base = by.get("baseline", {})
    keys = ["fused", *[f"{k}_{m}" for k in ("probe", "dep", "shap") for m in task.modalities]]
    bayes = {"fused": task.bayes_mse(), **{f"probe_{m}": task.bayes_mse((m,)) for m in task.modalities},
             **{f"shap_{m}": v for m, v in task.shapley().items()},
             **{f"dep_{m}": v for m, v in task.dependence().items()}}
    lines = ["| method | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|",
             "| closed form | " + " | ".join(f"{bayes[k]:.4f}" for k in keys) + " |"]
    for method, runs in by.items():
        cells = []
        for k in keys:
            values = [r[k] for r in runs.values() if k in r]
            if not values:
                cells.append("-")
                continue
            cell = f"{np.mean(values):.4f}" + (f" ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else "")
            paired = [s for s in runs if s in base and k in runs[s] and k in base[s]]
            if method != "baseline" and paired and not k.startswith(("shap", "dep")):
                cell += f" ({sum(runs[s][k] < base[s][k] for s in paired)}/{len(paired)} below)"
            cells.append(cell)
        diverged = sum("diverged" in r for r in runs.values())
        label = f"{method} (diverged in {diverged}/{len(runs)} seeds)" if diverged else method
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def imbalance_bench(preset: str, specs, seeds, settings: Settings, out, command: str = "",
                    progress: bool = True) -> str:
    """Train every method of ``specs`` over ``seeds`` on ``ImbalanceTask.preset(preset)``; write
    ``out/runs.jsonl`` and ``out/report.md``; return the report's Markdown. One torch thread (each run takes
    seconds; a second thread only adds overhead).

    A folder that already holds runs of the same preset and settings is resumed: its runs are read back, only
    the missing (method, seed) pairs are trained and appended, and the report shows every run the folder holds,
    so adding a method to a finished bench costs only that method. Runs of other settings, or of a method whose
    parameters now resolve otherwise, are never mixed in or overwritten: that is an error naming the difference."""
    task = ImbalanceTask.preset(preset)
    parsed = [(spec, *parse_method(spec)) for spec in dict.fromkeys(specs)]
    for spec, name, _ in parsed:
        if name != "alone" and name not in methods.available():
            raise PoiseError(f"--methods {spec}: unknown method {name!r}; choose from alone, "
                             f"{', '.join(methods.available())}")
    out = Path(out)
    held = read_runs(out, {"preset": preset, **asdict(settings), **RECIPE})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    trained = diverged = 0
    try:
        runs = out / "runs.jsonl"
        if runs.is_file() and runs.stat().st_size and not runs.read_bytes().endswith(b"\n"):
            with open(runs, "a") as sink:  # a hand-edited last line: the next run starts a line of its own
                sink.write("\n")
        with open(runs, "a") as sink:
            for spec, name, params in parsed:
                for seed in dict.fromkeys(seeds):
                    if (spec, seed) in held:
                        continue
                    row = {"method": spec, "seed": seed, "params": method_params(name, params)}
                    try:
                        row.update(train_one(task, name, params, seed, settings))
                    except TrainingDiverged as error:  # an outcome of the settings: the table says so
                        row["diverged"] = f"loss {error.loss} in epoch {error.epoch}"
                        diverged += 1
                    row = {k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}  # as stored
                    held[spec, seed] = row
                    trained += 1
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    if progress:
                        print(f"{spec} seed {seed}: " + (f"diverged ({row['diverged']})" if "diverged" in row else
                              f"fused MSE {row['fused']:.4f} ({row['seconds']:.1f} s)"), flush=True)
    finally:
        torch.set_num_threads(threads)
    asked = [(spec, seed) for spec, _, _ in parsed for seed in dict.fromkeys(seeds)]
    rows = [held[key] for key in asked] + [row for key, row in held.items() if key not in asked]  # command order
    seconds = sum(r.get("seconds", 0.0) for r in rows)
    spent = f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
    text = "\n".join([
        f"# poise imbalance-bench: preset `{preset}`", "",
        f"Last command: `{command or 'poise imbalance-bench --preset ' + preset}`", "",
        f"Task: `ImbalanceTask.preset({preset!r})` (noise {task.noise}); {settings.n} training samples, "
        f"{TEST_FRAMES} test samples per seed, {settings.epochs} epochs, encoders of width {settings.hidden}, "
        f"{settings.optimizer}" + (f" lr {settings.lr:g}" if settings.lr is not None else "")
        + f". {plural(len(rows), 'run')} in runs.jsonl ({trained} trained by the last command"
        + (f", {diverged} of them diverged" if diverged else "") + f"); {spent} of training summed "
        "over them (one run at a time, one thread; diverged runs not counted).", "",
        "MSE of the fused model (`fused`), of a least-squares probe of each encoder (`probe_<m>`), the dependence "
        "shares (`dep_<m>`) and the Shapley values of -MSE (`shap_<m>`); the first row is the closed form (Bayes "
        "errors, the optimum's dependence and Shapley values). Mean ± sd over seeds (the sample sd); (k/n "
        "below): in how many seeds the number is below the baseline's of the same seed.", "",
        table(task, rows), ""])
    (out / "report.md").write_text(text)
    return text


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def method_params(name: str, params: dict) -> dict:
    """Every parameter a method runs with (its defaults filled in), as JSON would store them."""
    return {} if name == "alone" else json.loads(json.dumps(methods.get(name, **params).params()))


def read_runs(out: Path, settings: dict) -> dict:
    """The runs ``out`` already holds, keyed by (method, seed), in file order, after checking they were trained
    with ``settings`` (``out/settings.json``) and with the method parameters the code resolves now; a new
    folder gets its settings.json."""
    record, runs = out / "settings.json", out / "runs.jsonl"
    if not record.exists():
        if runs.exists():
            raise PoiseError(f"{runs} exists but {record} does not, so its settings are unknown; give another "
                             f"--out (poise never overwrites a bench's runs), or, if you know how they were "
                             f"trained, write {record} with the keys {', '.join(settings)}")
        out.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(settings, indent=1) + "\n")
        return {}
    try:
        held = json.loads(record.read_text())
    except json.JSONDecodeError as error:
        raise PoiseError(f"{record} is not valid JSON ({error}); give another --out") from None
    if not isinstance(held, dict):
        raise PoiseError(f"{record} holds a {type(held).__name__}, not the settings object this bench writes; "
                         "give another --out")
    changed = [f"{k}: {held.get(k)!r} there, {v!r} now" for k, v in settings.items() if held.get(k) != v]
    if changed:
        raise PoiseError(f"{out} holds runs of other settings ({'; '.join(changed)}); give another --out to keep "
                         "both, or the same settings to add methods or seeds to it")
    done = {}
    for number, line in enumerate(runs.read_text().splitlines() if runs.exists() else [], 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key, name, params, saved = (row["method"], row["seed"]), *parse_method(row["method"]), row["params"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise PoiseError(f"{runs}, line {number}: not a run this bench wrote ({line[:60]!r}); "
                             "remove that line or give another --out") from None
        if name != "alone" and name not in methods.available():
            raise PoiseError(f"{runs}, line {number}: method {name!r} is not registered now; import the module "
                             "that registers it, or give another --out")
        now = method_params(name, params)
        if saved != now:
            diff = ", ".join(f"{k}: {saved.get(k)!r} there, {now.get(k)!r} now" for k in sorted({*saved, *now})
                             if saved.get(k) != now.get(k))
            raise PoiseError(f"{runs}, line {number}: {row['method']} was trained with other parameters than it "
                             f"resolves to now ({diff}); give another --out")
        done[key] = row
    return done
