"""Which balancing methods move a model toward the known optimum on an ``ImbalanceTask`` (``docs/imbalance.md``)?

    python benchmarks/imbalance_methods.py [--preset weak-cluttered] [--methods alone baseline arl arl:gamma=0 ...]
        [--seeds 0 1 2 3 4] [--epochs 30] [--n 2000] [--hidden 16] [--optimizer adam] [--lr LR] [--out FILE.jsonl]

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
an encoder learns in those epochs without a competitor. One line of JSON per run (to ``--out`` too), then a
table: each number's mean and sd over seeds and in how many seeds it beat the baseline's. One torch thread.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time

import numpy as np
import torch

import poise
from poise import methods
from poise.tasks import ImbalanceTask

TEST_FRAMES = 4000


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


def train_one(task, name: str, params: dict, seed: int, args) -> dict:
    """One run: data seeds 1 + 10 seed (train) and 2 + 10 seed (test), model seed ``seed``."""
    train, test = task.data(args.n, seed=1 + 10 * seed), task.data(TEST_FRAMES, seed=2 + 10 * seed)
    if name == "alone":
        out = {}
        for m in task.modalities:
            sub = ImbalanceTask({m: task.noise[m]}, dim=task.dim, sees={m: task.sees[m]},
                                nuisance={m: task.nuisance[m]}, nuisance_sd=task.nuisance_sd,
                                input_dims={m: task.input_dims[m]}, seed=task.seed)  # the same sensor and samples
            one = train_one(sub, "baseline", {}, seed, args)
            out[f"probe_{m}"], out[f"uni_{m}"] = one[f"probe_{m}"], one["fused"]
        return out
    model = task.model(hidden=args.hidden, seed=seed)
    settings = dict(epochs=args.epochs, batch_size=64, optimizer=args.optimizer, seed=seed, progress=False,
                    eval_every=10_000, lr_step=10_000, assess_frames=256)
    if args.lr is not None:
        settings["lr"] = args.lr
    if type(methods.get(name)).needs_holdout:
        settings["holdout"] = 0.2
    start = time.perf_counter()
    poise.fit(model, train, name, method_params=params, **settings)
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
            cell = f"{np.mean(values):.4f} ± {np.std(values):.4f}"
            paired = [s for s in runs if s in base and k in runs[s] and k in base[s]]
            if method != "baseline" and paired and not k.startswith(("shap", "dep")):
                cell += f" ({sum(runs[s][k] < base[s][k] for s in paired)}/{len(paired)} below)"
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="weak-cluttered")
    parser.add_argument("--methods", nargs="+", default=["alone", "baseline", "arl", "dgl"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n", type=int, default=2000, help="training samples")
    parser.add_argument("--hidden", type=int, default=16, help="encoder width (ImbalanceTask.model)")
    parser.add_argument("--optimizer", default="adam", help="the same for every method: adam or sgd")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--out", default=None, help="also write the JSON lines here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    task = ImbalanceTask.preset(args.preset)
    rows = []
    sink = open(args.out, "w") if args.out else None
    for spec in args.methods:
        name, params = parse_method(spec)
        for seed in args.seeds:
            row = {"method": spec, "seed": seed, **train_one(task, name, params, seed, args)}
            rows.append(row)
            line = json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()})
            print(line, flush=True)
            if sink:
                sink.write(line + "\n")
                sink.flush()
    print(table(task, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
